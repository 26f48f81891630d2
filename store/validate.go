package store

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxIDLen, MaxAggregateIDLen and MaxKindLen bound the identifying fields of a
// [Record], in bytes.
const (
	MaxIDLen          = 128
	MaxAggregateIDLen = 255
	MaxKindLen        = 64
)

// minTime and maxTime are the first and last instants a store keeps: the
// years 1 to 9999 in UTC. RFC 3339, and so time.Time's JSON encoding, cannot
// write other years, and events are served as JSON; a driver's own limits
// (SQLite's int64 microseconds since 1970 wrap around in the year 294247)
// lie beyond them, so every store refuses the same times. The first instant
// of year 1 is the zero Time, which means "not set": minTime is the next
// one that a store's microseconds can tell from it.
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// ClampTime returns t limited to the range of times a store keeps (the
// years 1 to 9999 UTC): a time before year 1 becomes its first instant, a
// time after year 9999 the first instant of year 10000. Every stored time
// compares to the result as it does to t, so drivers pass [Query].Since and
// the time of [Store.DeleteBefore] through it rather than hand their
// database a time it cannot hold. The zero Time stays zero.
func ClampTime(t time.Time) time.Time {
	switch {
	case t.IsZero():
		return t
	case t.Before(minTime):
		return minTime
	case t.After(maxTime):
		return maxTime.Add(time.Nanosecond)
	}
	return t
}

// checkTime reports a time that is zero or outside the range a store keeps.
func checkTime(field string, t time.Time) error {
	switch {
	case t.IsZero():
		return fmt.Errorf("zero %s", field)
	case t.Before(minTime) || t.After(maxTime):
		return fmt.Errorf("%s %s is outside the years 1 to 9999 UTC that a store keeps", field, t.Format(time.RFC3339Nano))
	}
	return nil
}

// ValidateRecords checks a batch for [Store.Append]: it must be non-empty,
// every record needs an ID, a valid topic and a Time in the years 1 to 9999
// UTC (at least a microsecond after the zero Time, which is the first
// instant of year 1; see [ClampTime]), identifying
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
		if err := checkRecord(r, maxPayload); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalidRecord, recordName(i, r), err)
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

// ValidateDeadLetter checks a dead letter for
// [DeadLetterStore.PutDeadLetter]. Its Subscription must be a valid name
// (see [ValidateName]); its Record must be one that [ValidateRecords]
// accepts, without the payload limit (the event was stored already), with
// a Version and Position that are not negative; Error must be valid UTF-8
// without NUL bytes; Attempts must not be negative (0 is an event never
// attempted, such as one a closing bus gave up on); and Time must be in the
// years 1 to 9999 UTC, as a record's. Errors match [ErrInvalidRecord], those about the subscription
// [ErrInvalidName] too, and say which field is at fault.
//
// Implementations of DeadLetterStore call it first in PutDeadLetter and
// store nothing when it fails, so that every store refuses the same dead
// letters.
func ValidateDeadLetter(d DeadLetterRecord) error {
	r := &d.Record
	what := "dead letter"
	if printable(r.ID) {
		what += " of event " + r.ID
	}
	if err := ValidateName("subscription", d.Subscription); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidRecord, what, err)
	}
	what += " for " + d.Subscription
	if err := checkRecord(r, 0); err != nil {
		return fmt.Errorf("%w: %s: record: %w", ErrInvalidRecord, what, err)
	}
	switch {
	case r.Version < 0:
		return fmt.Errorf("%w: %s: record has negative version %d", ErrInvalidRecord, what, r.Version)
	case r.Position < 0:
		return fmt.Errorf("%w: %s: record has negative position %d", ErrInvalidRecord, what, r.Position)
	case d.Attempts < 0:
		return fmt.Errorf("%w: %s: negative attempts %d", ErrInvalidRecord, what, d.Attempts)
	}
	if err := checkTime("time", d.Time); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidRecord, what, err)
	}
	if err := checkText("error", d.Error); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidRecord, what, err)
	}
	return nil
}

// ValidateName checks a name that a store method looks something up by: a
// checkpoint name, a subscription, an aggregate ID or an event ID. It must
// not be empty, must be valid UTF-8 and must not contain a NUL byte. field
// says what name is, for the error message ("checkpoint name"). Errors
// match [ErrInvalidName].
//
// Drivers call it before touching the database, so that every store
// refuses the same names with the same error, whatever its database would
// have made of them.
func ValidateName(field, name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalidName, field)
	}
	if err := checkText(field, name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidName, err)
	}
	return nil
}

// ValidateDeadLetterKey checks the subscription and event ID that name a
// dead letter, as [ValidateName] does. Drivers call it in DeadLetter and
// DeleteDeadLetter.
func ValidateDeadLetterKey(subscription, eventID string) error {
	if err := ValidateName("subscription", subscription); err != nil {
		return err
	}
	return ValidateName("event ID", eventID)
}

// checkRecord reports what makes r unstorable, apart from its place in a
// batch. maxPayload 0 means no limit.
func checkRecord(r *Record, maxPayload int) error {
	switch {
	case r.ID == "":
		return errors.New("empty ID")
	case len(r.ID) > MaxIDLen:
		return fmt.Errorf("ID is %d bytes, longer than %d", len(r.ID), MaxIDLen)
	case maxPayload > 0 && len(r.Payload) > maxPayload:
		return fmt.Errorf("payload is %d bytes, larger than the %d-byte limit", len(r.Payload), maxPayload)
	}
	if err := checkTime("time", r.Time); err != nil {
		return err
	}
	if err := checkEnvelope(r.AggregateID, r.Kind, r.Metadata); err != nil {
		return err
	}
	for _, f := range [...]struct{ name, v string }{
		{"ID", r.ID}, {"payload type", r.PayloadType}, {"content type", r.ContentType},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return err
		}
	}
	return ValidateTopic(r.Topic)
}

// ValidateEnvelope checks the fields of an event that a publisher chooses
// and [ValidateRecords] limits: the aggregate ID and kind (their lengths,
// valid UTF-8 without NUL bytes) and the metadata keys and values
// (likewise); [ValidateTime] checks its time. The event bus calls them on
// every publish, with a store or without, so that a program never depends
// on events that no store could keep. Errors match [ErrInvalidRecord] and
// name the field.
func ValidateEnvelope(aggregateID, kind string, metadata map[string]string) error {
	if err := checkEnvelope(aggregateID, kind, metadata); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	return nil
}

// ValidateTime checks an event's time as [ValidateRecords] does: not zero,
// and within the years 1 to 9999 UTC, to the microsecond. Errors match
// [ErrInvalidRecord].
func ValidateTime(t time.Time) error {
	if err := checkTime("time", t); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	return nil
}

func checkEnvelope(aggregateID, kind string, metadata map[string]string) error {
	switch {
	case len(aggregateID) > MaxAggregateIDLen:
		return fmt.Errorf("aggregate ID is %d bytes, longer than %d", len(aggregateID), MaxAggregateIDLen)
	case len(kind) > MaxKindLen:
		return fmt.Errorf("kind is %d bytes, longer than %d", len(kind), MaxKindLen)
	}
	if err := checkText("aggregate ID", aggregateID); err != nil {
		return err
	}
	if err := checkText("kind", kind); err != nil {
		return err
	}
	if len(metadata) == 0 {
		return nil // ranging over a nil map is not free, and most events have none
	}
	for k, v := range metadata {
		if err := checkText("metadata key", k); err != nil {
			return err
		}
		if err := checkText("metadata value of "+k, v); err != nil {
			return err
		}
	}
	return nil
}

// recordName names the ith record of a batch in an error, with its ID when
// the ID is fit to print.
func recordName(i int, r *Record) string {
	if !printable(r.ID) {
		return fmt.Sprintf("record %d", i)
	}
	return fmt.Sprintf("record %d (%s)", i, r.ID)
}

// printable reports whether an event ID is valid, so that an error message
// can quote it as it is.
func printable(id string) bool {
	return id != "" && len(id) <= MaxIDLen && checkText("", id) == nil
}

// checkText reports invalid UTF-8 or a NUL byte in the value of a field.
func checkText(field, v string) error {
	// Most text is short ASCII, checked here in one pass; the event bus
	// checks every publish's aggregate ID and kind.
	ascii := true
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == 0 || c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return nil
	}
	switch {
	case !utf8.ValidString(v):
		return fmt.Errorf("%s %q is not valid UTF-8", field, v)
	case strings.IndexByte(v, 0) >= 0:
		return fmt.Errorf("%s %q contains a NUL byte", field, v)
	}
	return nil
}
