package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

func validRecord(id string) store.Record {
	return store.Record{ID: id, Topic: "user.registered", Time: time.Unix(1700000000, 0), Payload: []byte(`{}`)}
}

func TestValidateRecords(t *testing.T) {
	t.Parallel()
	with := func(f func(r *store.Record)) []store.Record {
		r := validRecord("e1")
		f(&r)
		return []store.Record{validRecord("e0"), r}
	}
	tests := []struct {
		name       string
		recs       []store.Record
		expect     []store.Expect
		maxPayload int
		want       string // "" means valid
	}{
		{name: "valid", recs: []store.Record{validRecord("a"), validRecord("b")}},
		{name: "valid with expectations", recs: []store.Record{validRecord("a")}, expect: []store.Expect{{AggregateID: "x", Version: 0}, {AggregateID: "y", Version: 3}}},
		{name: "payload at limit", recs: with(func(r *store.Record) { r.Payload = make([]byte, 8) }), maxPayload: 8},
		{name: "no limit", recs: with(func(r *store.Record) { r.Payload = make([]byte, 1<<21) })},
		{name: "identifying fields at limits", recs: with(func(r *store.Record) {
			r.ID = strings.Repeat("i", store.MaxIDLen)
			r.AggregateID = strings.Repeat("a", store.MaxAggregateIDLen)
			r.Kind = strings.Repeat("k", store.MaxKindLen)
		})},
		{name: "empty batch", recs: nil, want: "empty batch"},
		{name: "empty ID", recs: with(func(r *store.Record) { r.ID = "" }), want: "record 1: empty ID"},
		{name: "long ID", recs: with(func(r *store.Record) { r.ID = strings.Repeat("i", store.MaxIDLen+1) }), want: "ID is 129 bytes"},
		{name: "long aggregate", recs: with(func(r *store.Record) { r.AggregateID = strings.Repeat("a", store.MaxAggregateIDLen+1) }), want: "aggregate ID is 256 bytes"},
		{name: "long kind", recs: with(func(r *store.Record) { r.Kind = strings.Repeat("k", store.MaxKindLen+1) }), want: "kind is 65 bytes"},
		{name: "zero time", recs: with(func(r *store.Record) { r.Time = time.Time{} }), want: "record 1 (e1): zero time"},
		{name: "oversize payload", recs: with(func(r *store.Record) { r.Payload = make([]byte, 9) }), maxPayload: 8, want: "payload is 9 bytes, larger than the 8-byte limit"},
		{name: "empty topic", recs: with(func(r *store.Record) { r.Topic = "" }), want: "empty topic"},
		{name: "wildcard topic", recs: with(func(r *store.Record) { r.Topic = "user.*" }), want: "wildcard"},
		{name: "NUL in aggregate ID", recs: with(func(r *store.Record) { r.AggregateID = "a\x00b" }), want: "aggregate ID \"a\\x00b\" contains a NUL byte"},
		{name: "invalid UTF-8 in kind", recs: with(func(r *store.Record) { r.Kind = "\xff" }), want: "kind \"\\xff\" is not valid UTF-8"},
		{name: "NUL in metadata value", recs: with(func(r *store.Record) { r.Metadata = map[string]string{"k": "\x00"} }), want: "metadata value of k"},
		{name: "invalid UTF-8 in payload type", recs: with(func(r *store.Record) { r.PayloadType = "\xc3" }), want: "payload type"},
		{name: "NUL in expectation aggregate", recs: []store.Record{validRecord("a")}, expect: []store.Expect{{AggregateID: "x\x00"}}, want: "expectation: aggregate ID"},
		{name: "duplicate ID", recs: []store.Record{validRecord("a"), validRecord("b"), validRecord("a")}, want: "record 2: ID a appears twice"},
		{name: "expectation without aggregate", recs: []store.Record{validRecord("a")}, expect: []store.Expect{{Version: 1}}, want: "empty aggregate ID"},
		{name: "negative expectation", recs: []store.Record{validRecord("a")}, expect: []store.Expect{{AggregateID: "x", Version: -1}}, want: "negative version -1"},
		{name: "two expectations", recs: []store.Record{validRecord("a")}, expect: []store.Expect{{AggregateID: "x"}, {AggregateID: "x", Version: 2}}, want: `two expectations for aggregate "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := store.ValidateRecords(tt.recs, tt.expect, tt.maxPayload)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ValidateRecords = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateRecords = nil, want an error mentioning %q", tt.want)
			}
			if !errors.Is(err, store.ErrInvalidRecord) {
				t.Errorf("error %v does not match ErrInvalidRecord", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestValidateRecordsTopicErrorMatchesBoth(t *testing.T) {
	t.Parallel()
	r := validRecord("a")
	r.Topic = "a..b"
	err := store.ValidateRecords([]store.Record{r}, nil, 0)
	if !errors.Is(err, store.ErrInvalidRecord) || !errors.Is(err, store.ErrInvalidTopic) {
		t.Fatalf("error %v should match both ErrInvalidRecord and ErrInvalidTopic", err)
	}
}

func TestVersionConflictError(t *testing.T) {
	t.Parallel()
	var err error = &store.VersionConflictError{AggregateID: "u1", Expected: 2, Actual: 5}
	wrapped := errors.Join(errors.New("context"), err)
	if !errors.Is(wrapped, store.ErrVersionConflict) {
		t.Fatal("VersionConflictError does not match ErrVersionConflict")
	}
	var vc *store.VersionConflictError
	if !errors.As(wrapped, &vc) || vc.Actual != 5 || vc.Expected != 2 {
		t.Fatalf("errors.As gave %+v", vc)
	}
	if errors.Is(err, store.ErrDuplicateID) {
		t.Fatal("VersionConflictError matches ErrDuplicateID")
	}
	if want := `version conflict on aggregate "u1": expected version 2, actual 5`; err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestPageLimit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want int }{
		{0, store.DefaultReadLimit}, {1, 1}, {store.MaxReadLimit, store.MaxReadLimit}, {store.MaxReadLimit + 1, store.MaxReadLimit},
	} {
		if got, err := store.PageLimit(tt.in); err != nil || got != tt.want {
			t.Errorf("PageLimit(%d) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	if _, err := store.PageLimit(-1); err == nil {
		t.Error("PageLimit(-1) succeeded")
	}
}
