package storetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

func (s suite) testCheckpoint(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	c, err := st.Checkpoint(ctx, "projector")
	if err != nil || c != "" {
		t.Fatalf("Checkpoint of an unknown name = %q, %v; want the zero cursor and no error", c, err)
	}
	mustAppend(t, st, newRecords("k", 4))
	page, _, err := st.Read(ctx, store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetCheckpoint(ctx, "projector", page[1].Cursor); err != nil {
		t.Fatalf("SetCheckpoint: %v", err)
	}
	if err := st.SetCheckpoint(ctx, "mailer", page[0].Cursor); err != nil {
		t.Fatalf("SetCheckpoint: %v", err)
	}
	c, err = st.Checkpoint(ctx, "projector")
	if err != nil || c != page[1].Cursor {
		t.Fatalf("Checkpoint(projector) = %q, %v; want %q", c, err, page[1].Cursor)
	}
	got := readAll(t, st, store.Query{After: c})
	checkIDs(t, "Read from the saved checkpoint", got, []string{"k-2", "k-3"})

	// Replace.
	if err := st.SetCheckpoint(ctx, "projector", page[3].Cursor); err != nil {
		t.Fatal(err)
	}
	if c, _ := st.Checkpoint(ctx, "projector"); c != page[3].Cursor {
		t.Fatalf("Checkpoint after replacing = %q, want %q", c, page[3].Cursor)
	}
	if c, _ := st.Checkpoint(ctx, "mailer"); c != page[0].Cursor {
		t.Fatalf("Checkpoint(mailer) = %q, want %q; names must be independent", c, page[0].Cursor)
	}
	// Back to the start.
	if err := st.SetCheckpoint(ctx, "mailer", ""); err != nil {
		t.Fatalf("SetCheckpoint to the zero cursor: %v", err)
	}
	if c, err := st.Checkpoint(ctx, "mailer"); err != nil || c != "" {
		t.Fatalf("Checkpoint after resetting = %q, %v; want the zero cursor", c, err)
	}
	if c, _ := st.Checkpoint(ctx, "Projector"); c != "" {
		t.Fatalf("Checkpoint(Projector) = %q; names are case-sensitive", c)
	}
	// A cursor the store did not make would fail only later, when a
	// reader resumes from it: refuse it now and keep the saved one.
	for _, bad := range []store.Cursor{"not a cursor", "\x00\xff"} {
		err := st.SetCheckpoint(ctx, "projector", bad)
		checkErr(t, fmt.Sprintf("SetCheckpoint to %q", bad), err, store.ErrInvalidCursor)
	}
	if c, _ := st.Checkpoint(ctx, "projector"); c != page[3].Cursor {
		t.Fatalf("Checkpoint after refused updates = %q, want %q", c, page[3].Cursor)
	}
}

func (s suite) testDeadLetters(t *testing.T) {
	t.Parallel()
	st, dl := openAs[store.DeadLetterStore](s, t)
	ctx := t.Context()
	recs := inAggregate("a", newRecords("d", 3))
	recs[0].Metadata = map[string]string{"correlation_id": "c"}
	recs[1].Payload = []byte{0, 0xff, 0}
	recs[2].Payload = nil
	mustAppend(t, st, recs)

	at := func(d time.Duration) time.Time { return base.Add(time.Hour + d) }
	letters := []store.DeadLetter{
		{Subscription: "mailer", Record: recs[0], Error: "smtp: 451 try again", Attempts: 5, Time: at(0)},
		{Subscription: "billing", Record: recs[1], Error: "panic: nil map", Attempts: 1, Time: at(time.Second)},
		{Subscription: "mailer", Record: recs[2], Error: "timeout", Attempts: 3, Time: at(2 * time.Second)},
		{Subscription: "billing", Record: recs[0], Error: "other", Attempts: 2, Time: at(3 * time.Second)},
	}
	// Put out of time order: listing is by Time, oldest first.
	for _, i := range []int{2, 0, 3, 1} {
		if err := dl.PutDeadLetter(ctx, letters[i]); err != nil {
			t.Fatalf("PutDeadLetter(%s, %s): %v", letters[i].Subscription, letters[i].Record.ID, err)
		}
	}
	check := func(what string, got []store.DeadLetter, want ...store.DeadLetter) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d dead letters, want %d", what, len(got), len(want))
		}
		for i := range want {
			checkDeadLetter(t, fmt.Sprintf("%s: dead letter %d", what, i), got[i], want[i])
		}
	}
	lookup := func(want store.DeadLetter) {
		t.Helper()
		got, err := store.FindDeadLetter(ctx, dl, want.Subscription, want.Record.ID)
		if err != nil {
			t.Fatalf("DeadLetter(%s, %s): %v", want.Subscription, want.Record.ID, err)
		}
		checkDeadLetter(t, "DeadLetter", got, want)
	}
	absent := func(what, sub, id string) {
		t.Helper()
		_, err := store.FindDeadLetter(ctx, dl, sub, id)
		checkErr(t, fmt.Sprintf("DeadLetter(%s, %s) of %s", sub, id, what), err, store.ErrNotFound)
	}
	list := func(sub string, limit int) []store.DeadLetter {
		t.Helper()
		got, err := dl.DeadLetters(ctx, sub, limit)
		if err != nil {
			t.Fatalf("DeadLetters(%q, %d): %v", sub, limit, err)
		}
		return got
	}
	check("DeadLetters(mailer)", list("mailer", 0), letters[0], letters[2])
	check("DeadLetters(billing)", list("billing", 0), letters[1], letters[3])
	check("DeadLetters(all)", list("", 0), letters...)
	check("DeadLetters(all, 3)", list("", 3), letters[:3]...)
	check("DeadLetters(mailer, 1)", list("mailer", 1), letters[0])
	check("DeadLetters(unknown)", list("unknown", 0))

	// Lookup by subscription and event ID: the same event failed in two
	// subscriptions has a dead letter in each.
	for _, l := range letters {
		lookup(l)
	}
	absent("an event without one in this subscription", "mailer", recs[1].ID)
	absent("an unknown subscription", "unknown", recs[0].ID)
	absent("an unknown event", "mailer", "no-such-event")

	// Replacing keeps one dead letter per subscription and event.
	again := letters[0]
	again.Error, again.Attempts, again.Time = "smtp: 550 rejected", 9, at(4*time.Second)
	if err := dl.PutDeadLetter(ctx, again); err != nil {
		t.Fatal(err)
	}
	check("DeadLetters(mailer) after replacing", list("mailer", 0), letters[2], again)
	lookup(again)
	lookup(letters[3])

	if err := dl.DeleteDeadLetter(ctx, "billing", recs[1].ID); err != nil {
		t.Fatalf("DeleteDeadLetter: %v", err)
	}
	check("DeadLetters(all) after deleting", list("", 0), letters[2], letters[3], again)
	absent("a deleted dead letter", "billing", recs[1].ID)
	err := dl.DeleteDeadLetter(ctx, "billing", recs[1].ID)
	checkErr(t, "deleting a deleted dead letter", err, store.ErrNotFound)
	err = dl.DeleteDeadLetter(ctx, "nobody", recs[0].ID)
	checkErr(t, "deleting an unknown dead letter", err, store.ErrNotFound)
	if errors.Is(err, store.ErrClosed) {
		t.Fatal("unexpected ErrClosed")
	}
}

// checkDeadLetter fails unless got is want, its Time in UTC.
func checkDeadLetter(tb testing.TB, what string, got, want store.DeadLetter) {
	tb.Helper()
	if got.Subscription != want.Subscription || got.Record.ID != want.Record.ID {
		tb.Fatalf("%s is (%s, %s), want (%s, %s)", what, got.Subscription, got.Record.ID, want.Subscription, want.Record.ID)
	}
	if got.Error != want.Error || got.Attempts != want.Attempts || !got.Time.Equal(want.Time) || got.Time.Location() != time.UTC {
		tb.Fatalf("%s (%s, %s) = error %q attempts %d time %v; want %q, %d, %v in UTC",
			what, want.Subscription, want.Record.ID, got.Error, got.Attempts, got.Time, want.Error, want.Attempts, want.Time)
	}
	checkRecord(tb, what, got.Record, want.Record)
}

// testDeadLetterValidation checks that PutDeadLetter refuses what
// store.ValidateDeadLetter refuses, and stores nothing then: not a new
// dead letter, and no change to the one it would have replaced.
func (s suite) testDeadLetterValidation(t *testing.T) {
	t.Parallel()
	st, dl := openAs[store.DeadLetterStore](s, t)
	ctx := t.Context()
	r := newRecord("dv")
	r.AggregateID = "a"
	r.Metadata = map[string]string{"correlation_id": "c"}
	mustAppend(t, st, []store.Record{r})
	kept := store.DeadLetter{Subscription: "kept", Record: r, Error: "first failure", Attempts: 3, Time: base.Add(time.Hour)}
	if err := dl.PutDeadLetter(ctx, kept); err != nil {
		t.Fatalf("PutDeadLetter(%s, %s): %v", kept.Subscription, r.ID, err)
	}

	cases := []struct {
		name  string
		edit  func(d *store.DeadLetter)
		field string // what the error must name
	}{
		{"empty subscription", func(d *store.DeadLetter) { d.Subscription = "" }, "subscription"},
		{"a NUL byte in the subscription", func(d *store.DeadLetter) { d.Subscription = "mail\x00er" }, "subscription"},
		{"invalid UTF-8 in the subscription", func(d *store.DeadLetter) { d.Subscription = "mail\xffer" }, "subscription"},
		{"a NUL byte in the error", func(d *store.DeadLetter) { d.Error = "bad \x00 bytes" }, "error"},
		{"invalid UTF-8 in the error", func(d *store.DeadLetter) { d.Error = "bad \xc3 bytes" }, "error"},
		{"negative attempts", func(d *store.DeadLetter) { d.Attempts = -1 }, "attempts"},
		{"zero time", func(d *store.DeadLetter) { d.Time = time.Time{} }, "time"},
		{"record without ID", func(d *store.DeadLetter) { d.Record.ID = "" }, "ID"},
		{"record with a NUL byte in its ID", func(d *store.DeadLetter) { d.Record.ID = "d\x00v" }, "ID"},
		{"record with an invalid topic", func(d *store.DeadLetter) { d.Record.Topic = "user.*" }, "topic"},
		{"record with invalid UTF-8 in its topic", func(d *store.DeadLetter) { d.Record.Topic = "user.\xff" }, "topic"},
		{"record with zero time", func(d *store.DeadLetter) { d.Record.Time = time.Time{} }, "zero time"},
		{"record with a NUL byte in its kind", func(d *store.DeadLetter) { d.Record.Kind = "do\x00main" }, "kind"},
		{"record with invalid UTF-8 in its aggregate ID", func(d *store.DeadLetter) { d.Record.AggregateID = "\xff" }, "aggregate ID"},
		{"record with a NUL byte in its payload type", func(d *store.DeadLetter) { d.Record.PayloadType = "\x00" }, "payload type"},
		{"record with invalid UTF-8 in its content type", func(d *store.DeadLetter) { d.Record.ContentType = "\xfe" }, "content type"},
		{"record with a NUL byte in a metadata key", func(d *store.DeadLetter) { d.Record.Metadata = map[string]string{"k\x00": "v"} }, "metadata key"},
		{"record with invalid UTF-8 in a metadata value", func(d *store.DeadLetter) { d.Record.Metadata = map[string]string{"k": "\xff"} }, "metadata value"},
		{"record with a negative version", func(d *store.DeadLetter) { d.Record.Version = -1 }, "version"},
	}
	for _, c := range cases {
		for _, sub := range []string{"kept", "new"} {
			d := kept
			d.Subscription, d.Error = sub, "second failure"
			d.Record.Metadata = map[string]string{"correlation_id": "c"}
			c.edit(&d)
			err := dl.PutDeadLetter(ctx, d)
			if err == nil {
				t.Errorf("PutDeadLetter with %s (subscription %q): no error", c.name, sub)
				continue
			}
			if !errors.Is(err, store.ErrInvalidRecord) {
				t.Errorf("PutDeadLetter with %s: %q does not match ErrInvalidRecord", c.name, err)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Errorf("PutDeadLetter with %s: error %q does not name the %s", c.name, err, c.field)
			}
			if c.field == "subscription" && !errors.Is(err, store.ErrInvalidName) {
				t.Errorf("PutDeadLetter with %s: %q does not match ErrInvalidName", c.name, err)
			}
		}
	}
	got, err := dl.DeadLetters(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("after refused dead letters, DeadLetters lists %d, want only the one stored before", len(got))
	}
	checkDeadLetter(t, "the dead letter that refused ones would have replaced", got[0], kept)

	// Zero attempts (an event a closing bus never tried) and an empty
	// error are valid.
	zero := store.DeadLetter{Subscription: "new", Record: r, Attempts: 0, Time: base.Add(2 * time.Hour)}
	if err := dl.PutDeadLetter(ctx, zero); err != nil {
		t.Fatalf("PutDeadLetter with zero attempts and no error text: %v", err)
	}
	d, err := store.FindDeadLetter(ctx, dl, "new", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkDeadLetter(t, "dead letter with zero attempts", d, zero)
}

// testInvalidNames checks that every method that looks something up by
// name refuses an empty name, and one that is not valid UTF-8 or holds a
// NUL byte, with store.ErrInvalidName, and changes nothing.
func (s suite) testInvalidNames(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	cursor := seed(t, st) // record "present" of aggregate "a", checkpoint "c", dead letter ("s", "present")
	dl, isDL := st.(store.DeadLetterStore)
	for _, name := range []string{"", "c\x00", "\xff"} {
		calls := map[string]error{}
		_, calls["Checkpoint"] = st.Checkpoint(ctx, name)
		calls["SetCheckpoint"] = st.SetCheckpoint(ctx, name, cursor)
		_, calls["LoadAggregate"] = st.LoadAggregate(ctx, name, 0)
		if isDL {
			_, calls["DeadLetter by subscription"] = store.FindDeadLetter(ctx, dl, name, "present")
			_, calls["DeadLetter by event ID"] = store.FindDeadLetter(ctx, dl, "s", name)
			calls["DeleteDeadLetter by subscription"] = dl.DeleteDeadLetter(ctx, name, "present")
			calls["DeleteDeadLetter by event ID"] = dl.DeleteDeadLetter(ctx, "s", name)
			calls["PutDeadLetter"] = dl.PutDeadLetter(ctx, store.DeadLetter{Subscription: name, Record: newRecord("present"), Error: "x", Attempts: 1, Time: base})
			if name != "" { // the empty subscription lists them all
				_, calls["DeadLetters"] = dl.DeadLetters(ctx, name, 0)
			}
		}
		for call, err := range calls {
			checkErr(t, fmt.Sprintf("%s with name %q", call, name), err, store.ErrInvalidName)
		}
	}
	if c, err := st.Checkpoint(ctx, "c"); err != nil || c != cursor {
		t.Errorf("Checkpoint(c) = %q, %v after refused calls; want %q", c, err, cursor)
	}
	if recs, err := st.LoadAggregate(ctx, "a", 0); err != nil || len(recs) != 1 {
		t.Errorf("LoadAggregate(a) = %d records, %v; want 1", len(recs), err)
	}
	if isDL {
		got, err := dl.DeadLetters(ctx, "", 0)
		if err != nil || len(got) != 1 || got[0].Subscription != "s" || got[0].Record.ID != "present" {
			t.Errorf("dead letters after refused calls: %+v, %v; want only (s, present)", got, err)
		}
	}
}
