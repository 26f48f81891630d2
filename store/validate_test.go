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
		{name: "first and last microseconds", recs: []store.Record{
			{ID: "a", Topic: "t", Time: time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC)},
			{ID: "b", Topic: "t", Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		}},
		{name: "year 10000", recs: with(func(r *store.Record) { r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }),
			want: "record 1 (e1): time 10000-01-01T00:00:00Z is outside the years 1 to 9999 UTC that a store keeps"},
		{name: "year 10000 in UTC", recs: with(func(r *store.Record) {
			r.Time = time.Date(9999, 12, 31, 20, 0, 0, 0, time.FixedZone("", -5*3600))
		}), want: "time 9999-12-31T20:00:00-05:00 is outside the years 1 to 9999 UTC"},
		{name: "year 0", recs: with(func(r *store.Record) { r.Time = time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC) }), want: "time 0000-12-31T00:00:00Z is outside"},
		{name: "within the zero Time's microsecond", recs: with(func(r *store.Record) { r.Time = time.Time{}.Add(999) }), want: "is outside the years 1 to 9999"},
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

func TestValidateDeadLetter(t *testing.T) {
	t.Parallel()
	valid := func() store.DeadLetterRecord {
		r := validRecord("e1")
		r.Position, r.Version, r.AggregateID = 7, 2, "u1"
		return store.DeadLetterRecord{Subscription: "mailer", Record: r, Error: "smtp: 451", Attempts: 3, Time: time.Unix(1700000100, 0)}
	}
	tests := []struct {
		name     string
		edit     func(d *store.DeadLetterRecord)
		want     string // "" means valid
		wantName bool   // the error also matches ErrInvalidName
	}{
		{name: "valid", edit: func(*store.DeadLetterRecord) {}},
		{name: "zero attempts, no error text", edit: func(d *store.DeadLetterRecord) { d.Attempts, d.Error = 0, "" }},
		{name: "payload beyond the default limit", edit: func(d *store.DeadLetterRecord) { d.Record.Payload = make([]byte, store.DefaultMaxPayloadSize+1) }},
		{name: "empty subscription", edit: func(d *store.DeadLetterRecord) { d.Subscription = "" }, want: "dead letter of event e1: invalid name: empty subscription", wantName: true},
		{name: "NUL in subscription", edit: func(d *store.DeadLetterRecord) { d.Subscription = "a\x00" }, want: `subscription "a\x00" contains a NUL byte`, wantName: true},
		{name: "invalid UTF-8 in error", edit: func(d *store.DeadLetterRecord) { d.Error = "\xff" }, want: `dead letter of event e1 for mailer: error "\xff" is not valid UTF-8`},
		{name: "negative attempts", edit: func(d *store.DeadLetterRecord) { d.Attempts = -2 }, want: "negative attempts -2"},
		{name: "zero time", edit: func(d *store.DeadLetterRecord) { d.Time = time.Time{} }, want: "for mailer: zero time"},
		{name: "time in year 300000", edit: func(d *store.DeadLetterRecord) { d.Time = time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC) }, want: "for mailer: time 300000-01-01T00:00:00Z is outside the years 1 to 9999 UTC"},
		{name: "record of year -1", edit: func(d *store.DeadLetterRecord) { d.Record.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }, want: "record: time -0001-01-01T00:00:00Z is outside"},
		{name: "record without ID", edit: func(d *store.DeadLetterRecord) { d.Record.ID = "" }, want: "dead letter for mailer: record: empty ID"},
		{name: "record with zero time", edit: func(d *store.DeadLetterRecord) { d.Record.Time = time.Time{} }, want: "record: zero time"},
		{name: "record with wildcard topic", edit: func(d *store.DeadLetterRecord) { d.Record.Topic = "user.>" }, want: "record: invalid topic"},
		{name: "record with NUL in metadata key", edit: func(d *store.DeadLetterRecord) { d.Record.Metadata = map[string]string{"\x00": ""} }, want: "record: metadata key"},
		{name: "record with negative version", edit: func(d *store.DeadLetterRecord) { d.Record.Version = -1 }, want: "record has negative version -1"},
		{name: "record with negative position", edit: func(d *store.DeadLetterRecord) { d.Record.Position = -1 }, want: "record has negative position -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := valid()
			tt.edit(&d)
			err := store.ValidateDeadLetter(d)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ValidateDeadLetter = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateDeadLetter = nil, want an error mentioning %q", tt.want)
			}
			if !errors.Is(err, store.ErrInvalidRecord) {
				t.Errorf("error %v does not match ErrInvalidRecord", err)
			}
			if errors.Is(err, store.ErrInvalidName) != tt.wantName {
				t.Errorf("error %v: matches ErrInvalidName = %t, want %t", err, !tt.wantName, tt.wantName)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, want string }{
		{"projector", ""},
		{"user.>", ""},
		{"ü ✓", ""},
		{"", "invalid name: empty checkpoint name"},
		{"a\x00b", `invalid name: checkpoint name "a\x00b" contains a NUL byte`},
		{"\xc3", `invalid name: checkpoint name "\xc3" is not valid UTF-8`},
	} {
		err := store.ValidateName("checkpoint name", tt.name)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("ValidateName(%q) = %v, want nil", tt.name, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want || !errors.Is(err, store.ErrInvalidName)):
			t.Errorf("ValidateName(%q) = %v, want %q matching ErrInvalidName", tt.name, err, tt.want)
		}
	}
}

func TestValidateRecordsNamesPrintableIDsOnly(t *testing.T) {
	t.Parallel()
	r := validRecord("a\x00")
	err := store.ValidateRecords([]store.Record{r}, nil, 0)
	if want := `invalid record: record 0: ID "a\x00" contains a NUL byte`; err == nil || err.Error() != want {
		t.Fatalf("ValidateRecords = %v, want %q", err, want)
	}
}

func TestClampTime(t *testing.T) {
	t.Parallel()
	first := time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC)
	end := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	inRange := time.Date(2024, 5, 6, 7, 8, 9, 10, time.FixedZone("", 3600))
	for _, tt := range []struct{ in, want time.Time }{
		{time.Time{}, time.Time{}},
		{inRange, inRange},
		{first, first},
		{time.Time{}.Add(1), first},
		{time.Date(-284555, 1, 1, 0, 0, 0, 0, time.UTC), first},
		{time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		{end, end},
		{time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC), end},
	} {
		if got := store.ClampTime(tt.in); !got.Equal(tt.want) || got.IsZero() != tt.want.IsZero() {
			t.Errorf("ClampTime(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
