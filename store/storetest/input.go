package storetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

func (s suite) testBadInput(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	good := newRecord("good")
	with := func(f func(r *store.Record)) []store.Record {
		r := newRecord("bad")
		f(&r)
		return []store.Record{good, r}
	}
	type badAppend struct {
		name   string
		recs   []store.Record
		expect []store.Expect
		field  string // what the error must name, if set
	}
	cases := []badAppend{
		{"empty batch", nil, nil, ""},
		{"empty batch with expectation", []store.Record{}, []store.Expect{{AggregateID: "a"}}, ""},
		{"empty topic", with(func(r *store.Record) { r.Topic = "" }), nil, ""},
		{"wildcard topic", with(func(r *store.Record) { r.Topic = "user.*" }), nil, ""},
		{"full wildcard topic", with(func(r *store.Record) { r.Topic = ">" }), nil, ""},
		{"topic with an empty segment", with(func(r *store.Record) { r.Topic = "user..x" }), nil, ""},
		{"empty ID", with(func(r *store.Record) { r.ID = "" }), nil, ""},
		{"zero time", with(func(r *store.Record) { r.Time = time.Time{} }), nil, ""},
		{"duplicate ID in batch", []store.Record{good, newRecord("x"), good}, nil, ""},
		{"expectation without aggregate", []store.Record{good}, []store.Expect{{Version: 1}}, ""},
		{"negative expectation", []store.Record{good}, []store.Expect{{AggregateID: "a", Version: -1}}, ""},
		{"two expectations for one aggregate", []store.Record{good}, []store.Expect{{AggregateID: "a"}, {AggregateID: "a", Version: 1}}, ""},
		{"oversize payload", with(func(r *store.Record) { r.Payload = make([]byte, store.DefaultMaxPayloadSize+1) }), nil, ""},
	}
	// Text that PostgreSQL cannot keep in a text column, in every text
	// field: every store refuses it alike.
	for _, bad := range []struct{ name, v string }{{"invalid UTF-8", "x\xff"}, {"a NUL byte", "x\x00y"}} {
		for _, f := range []struct {
			field string
			set   func(r *store.Record)
		}{
			{"topic", func(r *store.Record) { r.Topic = "user." + bad.v }},
			{"ID", func(r *store.Record) { r.ID = bad.v }},
			{"kind", func(r *store.Record) { r.Kind = bad.v }},
			{"aggregate ID", func(r *store.Record) { r.AggregateID = bad.v }},
			{"payload type", func(r *store.Record) { r.PayloadType = bad.v }},
			{"content type", func(r *store.Record) { r.ContentType = bad.v }},
			{"metadata key", func(r *store.Record) { r.Metadata = map[string]string{"ok": "v", bad.v: "v"} }},
			{"metadata value", func(r *store.Record) { r.Metadata = map[string]string{"ok": "v", "k": bad.v} }},
		} {
			cases = append(cases, badAppend{bad.name + " in the " + f.field, with(f.set), nil, f.field})
		}
	}
	cases = append(cases, badAppend{"a NUL byte in an expectation's aggregate ID", []store.Record{good}, []store.Expect{{AggregateID: "a\x00"}}, "aggregate ID"})
	for _, c := range cases {
		err := st.Append(ctx, c.recs, c.expect...)
		if err == nil {
			t.Errorf("Append with %s: no error", c.name)
			continue
		}
		if !errors.Is(err, store.ErrInvalidRecord) {
			t.Errorf("Append with %s: %q does not match ErrInvalidRecord", c.name, err)
		}
		if c.field != "" && !strings.Contains(err.Error(), c.field) {
			t.Errorf("Append with %s: error %q does not name the %s", c.name, err, c.field)
		}
	}
	for _, pattern := range []string{"user..x", "user.>.x", "user.reg*", "a b"} {
		_, _, err := st.Read(ctx, store.Query{Topic: pattern})
		if !errors.Is(err, store.ErrInvalidTopic) {
			t.Errorf("Read with pattern %q: got %v, want an error matching store.ErrInvalidTopic", pattern, err)
		}
	}
	if got := readAll(t, st, store.Query{}); len(got) != 0 {
		t.Fatalf("rejected appends stored %s", idList(got))
	}
	for _, id := range []string{"good", "bad", "x"} {
		if _, err := st.Load(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Load(%s) after rejected appends = %v, want ErrNotFound", id, err)
		}
	}
	// The store still works, and the default payload limit is not lower
	// than documented.
	big := newRecord("big")
	big.Payload = make([]byte, store.DefaultMaxPayloadSize)
	mustAppend(t, st, []store.Record{good, big})
	got, err := st.Load(ctx, "big")
	if err != nil || len(got.Payload) != store.DefaultMaxPayloadSize {
		t.Fatalf("Load(big) = %d-byte payload, %v; want %d bytes", len(got.Payload), err, store.DefaultMaxPayloadSize)
	}
}

func (s suite) testPayloadLimit(t *testing.T) {
	t.Parallel()
	const limit = 64
	st := s.h.Open(t, limit)
	ctx := t.Context()
	over := newRecord("over")
	over.Payload = []byte(strings.Repeat("x", limit+1))
	err := st.Append(ctx, []store.Record{newRecord("a"), over})
	if !errors.Is(err, store.ErrInvalidRecord) {
		t.Fatalf("Append of a %d-byte payload to a store limited to %d: %v, want ErrInvalidRecord", limit+1, limit, err)
	}
	at := newRecord("at")
	at.Payload = []byte(strings.Repeat("x", limit))
	mustAppend(t, st, []store.Record{at})
	checkIDs(t, "log", readAll(t, st, store.Query{}), []string{"at"})
}

// methods calls every method of st (and of store.DeadLetterStore, when st
// implements it) with valid arguments and returns their errors by name.
func methods(ctx context.Context, st store.Store, cursor store.Cursor) map[string]error {
	errs := map[string]error{}
	errs["Append"] = st.Append(ctx, []store.Record{newRecord("new")})
	_, errs["Load"] = st.Load(ctx, "present")
	_, errs["LoadAggregate"] = st.LoadAggregate(ctx, "a", 0)
	_, _, errs["Read"] = st.Read(ctx, store.Query{})
	_, _, errs["Read after cursor"] = st.Read(ctx, store.Query{After: cursor, Topic: "storetest.*"})
	_, errs["Checkpoint"] = st.Checkpoint(ctx, "c")
	errs["SetCheckpoint"] = st.SetCheckpoint(ctx, "c2", cursor)
	_, errs["DeleteBefore"] = st.DeleteBefore(ctx, base.Add(time.Hour))
	if dl, ok := st.(store.DeadLetterStore); ok {
		errs["PutDeadLetter"] = dl.PutDeadLetter(ctx, store.DeadLetterRecord{Subscription: "s2", Record: newRecord("present"), Error: "x", Attempts: 1, Time: base})
		_, errs["DeadLetters"] = dl.DeadLetters(ctx, "", 0)
		_, errs["DeadLetter"] = store.FindDeadLetter(ctx, dl, "s", "present")
		errs["DeleteDeadLetter"] = dl.DeleteDeadLetter(ctx, "s", "present")
	}
	return errs
}

// seed gives st one record, a checkpoint and a dead letter, so that the
// methods have something to act on, and returns the record's cursor.
func seed(t *testing.T, st store.Store) store.Cursor {
	t.Helper()
	ctx := t.Context()
	r := newRecord("present")
	r.AggregateID = "a"
	mustAppend(t, st, []store.Record{r})
	page, _, err := st.Read(ctx, store.Query{})
	if err != nil || len(page) != 1 {
		t.Fatalf("Read: %d records, %v", len(page), err)
	}
	if err := st.SetCheckpoint(ctx, "c", page[0].Cursor); err != nil {
		t.Fatal(err)
	}
	if dl, ok := st.(store.DeadLetterStore); ok {
		if err := dl.PutDeadLetter(ctx, store.DeadLetterRecord{Subscription: "s", Record: page[0], Error: "x", Attempts: 1, Time: base}); err != nil {
			t.Fatal(err)
		}
	}
	return page[0].Cursor
}

func (s suite) testCancelledContext(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	cursor := seed(t, st)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, err := range methods(ctx, st, cursor) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: got %v, want an error matching context.Canceled", name, err)
		}
	}
	// Refused before it began: certainly not stored.
	if err := st.Append(ctx, []store.Record{newRecord("new")}); errors.Is(err, store.ErrMaybeStored) {
		t.Errorf("Append with a cancelled context: %v, which matches ErrMaybeStored, but it cannot have been stored", err)
	}
	// Nothing changed.
	checkIDs(t, "log", readAll(t, st, store.Query{}), []string{"present"})
	if c, err := st.Checkpoint(t.Context(), "c2"); err != nil || c != "" {
		t.Fatalf("checkpoint set with a cancelled context: %q, %v", c, err)
	}
	if dl, ok := st.(store.DeadLetterStore); ok {
		got, err := dl.DeadLetters(t.Context(), "", 0)
		if err != nil || len(got) != 1 || got[0].Subscription != "s" {
			t.Fatalf("dead letters changed by calls with a cancelled context: %+v, %v", got, err)
		}
	}
	ctx, cancel = context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	if err := st.Append(ctx, []store.Record{newRecord("late")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Append with an expired deadline: got %v, want an error matching context.DeadlineExceeded", err)
	}
}

func (s suite) testClosed(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	cursor := seed(t, st)
	if !closeStore(t, st) {
		t.Skip("store does not implement io.Closer")
	}
	for name, err := range methods(t.Context(), st, cursor) {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s on a closed store: got %v, want an error matching store.ErrClosed", name, err)
		}
	}
	// Closing twice is harmless.
	if err := st.(interface{ Close() error }).Close(); err != nil && !errors.Is(err, store.ErrClosed) {
		t.Errorf("second Close: %v, want nil or ErrClosed", err)
	}

	t.Run("WhileAppending", func(t *testing.T) {
		t.Parallel()
		st := s.open(t)
		if _, ok := st.(io.Closer); !ok {
			t.Skip("store does not implement io.Closer")
		}
		const appenders = 8
		var wg sync.WaitGroup
		final := make([]error, appenders)
		started := make(chan struct{}, appenders)
		for g := range appenders {
			wg.Go(func() {
				for i := 0; ; i++ {
					err := st.Append(context.WithoutCancel(t.Context()), newRecords(fmt.Sprintf("w%d-%d", g, i), 2))
					if i == 0 {
						started <- struct{}{}
					}
					if err != nil {
						final[g] = err
						return
					}
				}
			})
		}
		for range appenders {
			waitFor(t, "first append of each appender", started, 30*time.Second)
		}
		closeStore(t, st)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		waitFor(t, "appenders returning after Close", done, 30*time.Second)
		for g, err := range final {
			if !errors.Is(err, store.ErrClosed) {
				t.Errorf("appender %d: Append after Close returned %v, want ErrClosed", g, err)
			}
		}
	})
}
