package store

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxIDLen, MaxAggregateIDLen and MaxKindLen bound the identifying fields of a
// [Record], in bytes.
const (
	MaxIDLen          = 128
	MaxAggregateIDLen = 255
	MaxKindLen        = 64
)

// ValidateRecords checks a batch for [Store.Append]: it must be non-empty,
// every record needs an ID, a valid topic and a non-zero Time, identifying
// fields must fit their limits, payloads must not exceed maxPayload bytes, IDs
// must be unique within the batch, and every Expect must name an aggregate
// with a non-negative version, at most once. Text fields (ID, Kind,
// AggregateID, PayloadType, ContentType, metadata keys and values) must be
// valid UTF-8 without NUL bytes, which databases such as PostgreSQL cannot
// store in text columns. Errors match [ErrInvalidRecord]
// and name the record and field at fault. Drivers call it before touching
// the database, so a bad batch writes nothing.
func ValidateRecords(recs []Record, expect []Expect, maxPayload int) error {
	if len(recs) == 0 {
		return fmt.Errorf("%w: empty batch", ErrInvalidRecord)
	}
	seen := make(map[string]struct{}, len(recs))
	for i := range recs {
		r := &recs[i]
		switch {
		case r.ID == "":
			return fmt.Errorf("%w: record %d: empty ID", ErrInvalidRecord, i)
		case len(r.ID) > MaxIDLen:
			return fmt.Errorf("%w: record %d: ID is %d bytes, longer than %d", ErrInvalidRecord, i, len(r.ID), MaxIDLen)
		case len(r.AggregateID) > MaxAggregateIDLen:
			return fmt.Errorf("%w: record %d (%s): aggregate ID is %d bytes, longer than %d", ErrInvalidRecord, i, r.ID, len(r.AggregateID), MaxAggregateIDLen)
		case len(r.Kind) > MaxKindLen:
			return fmt.Errorf("%w: record %d (%s): kind is %d bytes, longer than %d", ErrInvalidRecord, i, r.ID, len(r.Kind), MaxKindLen)
		case r.Time.IsZero():
			return fmt.Errorf("%w: record %d (%s): zero time", ErrInvalidRecord, i, r.ID)
		case maxPayload > 0 && len(r.Payload) > maxPayload:
			return fmt.Errorf("%w: record %d (%s): payload is %d bytes, larger than the %d-byte limit", ErrInvalidRecord, i, r.ID, len(r.Payload), maxPayload)
		}
		if err := validText(r); err != nil {
			return fmt.Errorf("%w: record %d (%s): %w", ErrInvalidRecord, i, r.ID, err)
		}
		if err := ValidateTopic(r.Topic); err != nil {
			return fmt.Errorf("%w: record %d (%s): %w", ErrInvalidRecord, i, r.ID, err)
		}
		if _, dup := seen[r.ID]; dup {
			return fmt.Errorf("%w: record %d: ID %s appears twice in the batch", ErrInvalidRecord, i, r.ID)
		}
		seen[r.ID] = struct{}{}
	}
	agg := make(map[string]struct{}, len(expect))
	for _, e := range expect {
		switch {
		case e.AggregateID == "":
			return fmt.Errorf("%w: expectation with empty aggregate ID", ErrInvalidRecord)
		case e.Version < 0:
			return fmt.Errorf("%w: expectation for aggregate %q has negative version %d", ErrInvalidRecord, e.AggregateID, e.Version)
		}
		if err := checkText("aggregate ID", e.AggregateID); err != nil {
			return fmt.Errorf("%w: expectation: %w", ErrInvalidRecord, err)
		}
		if _, dup := agg[e.AggregateID]; dup {
			return fmt.Errorf("%w: two expectations for aggregate %q", ErrInvalidRecord, e.AggregateID)
		}
		agg[e.AggregateID] = struct{}{}
	}
	return nil
}

// checkText reports invalid UTF-8 or a NUL byte in the value of a field.
func checkText(field, v string) error {
	switch {
	case !utf8.ValidString(v):
		return fmt.Errorf("%s %q is not valid UTF-8", field, v)
	case strings.IndexByte(v, 0) >= 0:
		return fmt.Errorf("%s %q contains a NUL byte", field, v)
	}
	return nil
}

// validText checks a record's text fields for invalid UTF-8 and NUL bytes.
func validText(r *Record) error {
	check := checkText
	for _, f := range [...]struct{ name, v string }{
		{"ID", r.ID}, {"kind", r.Kind}, {"aggregate ID", r.AggregateID},
		{"payload type", r.PayloadType}, {"content type", r.ContentType},
	} {
		if err := check(f.name, f.v); err != nil {
			return err
		}
	}
	for k, v := range r.Metadata {
		if err := check("metadata key", k); err != nil {
			return err
		}
		if err := check("metadata value of "+k, v); err != nil {
			return err
		}
	}
	return nil
}
