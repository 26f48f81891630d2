package storetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

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
	letters := []store.DeadLetterRecord{
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
	check := func(what string, got []store.DeadLetterRecord, want ...store.DeadLetterRecord) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d dead letters, want %d", what, len(got), len(want))
		}
		for i := range want {
			checkDeadLetter(t, fmt.Sprintf("%s: dead letter %d", what, i), got[i], want[i])
		}
	}
	lookup := func(want store.DeadLetterRecord) {
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
	list := func(sub string, limit int) []store.DeadLetterRecord {
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
func checkDeadLetter(tb testing.TB, what string, got, want store.DeadLetterRecord) {
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
	kept := store.DeadLetterRecord{Subscription: "kept", Record: r, Error: "first failure", Attempts: 3, Time: base.Add(time.Hour)}
	if err := dl.PutDeadLetter(ctx, kept); err != nil {
		t.Fatalf("PutDeadLetter(%s, %s): %v", kept.Subscription, r.ID, err)
	}

	cases := []struct {
		name  string
		edit  func(d *store.DeadLetterRecord)
		field string // what the error must name
	}{
		{"empty subscription", func(d *store.DeadLetterRecord) { d.Subscription = "" }, "subscription"},
		{"a NUL byte in the subscription", func(d *store.DeadLetterRecord) { d.Subscription = "mail\x00er" }, "subscription"},
		{"invalid UTF-8 in the subscription", func(d *store.DeadLetterRecord) { d.Subscription = "mail\xffer" }, "subscription"},
		{"a NUL byte in the error", func(d *store.DeadLetterRecord) { d.Error = "bad \x00 bytes" }, "error"},
		{"invalid UTF-8 in the error", func(d *store.DeadLetterRecord) { d.Error = "bad \xc3 bytes" }, "error"},
		{"negative attempts", func(d *store.DeadLetterRecord) { d.Attempts = -1 }, "attempts"},
		{"zero time", func(d *store.DeadLetterRecord) { d.Time = time.Time{} }, "time"},
		{"record without ID", func(d *store.DeadLetterRecord) { d.Record.ID = "" }, "ID"},
		{"record with a NUL byte in its ID", func(d *store.DeadLetterRecord) { d.Record.ID = "d\x00v" }, "ID"},
		{"record with an invalid topic", func(d *store.DeadLetterRecord) { d.Record.Topic = "user.*" }, "topic"},
		{"record with invalid UTF-8 in its topic", func(d *store.DeadLetterRecord) { d.Record.Topic = "user.\xff" }, "topic"},
		{"record with zero time", func(d *store.DeadLetterRecord) { d.Record.Time = time.Time{} }, "zero time"},
		{"record with a NUL byte in its kind", func(d *store.DeadLetterRecord) { d.Record.Kind = "do\x00main" }, "kind"},
		{"record with invalid UTF-8 in its aggregate ID", func(d *store.DeadLetterRecord) { d.Record.AggregateID = "\xff" }, "aggregate ID"},
		{"record with a NUL byte in its payload type", func(d *store.DeadLetterRecord) { d.Record.PayloadType = "\x00" }, "payload type"},
		{"record with invalid UTF-8 in its content type", func(d *store.DeadLetterRecord) { d.Record.ContentType = "\xfe" }, "content type"},
		{"record with a NUL byte in a metadata key", func(d *store.DeadLetterRecord) { d.Record.Metadata = map[string]string{"k\x00": "v"} }, "metadata key"},
		{"record with invalid UTF-8 in a metadata value", func(d *store.DeadLetterRecord) { d.Record.Metadata = map[string]string{"k": "\xff"} }, "metadata value"},
		{"record with a negative version", func(d *store.DeadLetterRecord) { d.Record.Version = -1 }, "version"},
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
	zero := store.DeadLetterRecord{Subscription: "new", Record: r, Attempts: 0, Time: base.Add(2 * time.Hour)}
	if err := dl.PutDeadLetter(ctx, zero); err != nil {
		t.Fatalf("PutDeadLetter with zero attempts and no error text: %v", err)
	}
	d, err := store.FindDeadLetter(ctx, dl, "new", r.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkDeadLetter(t, "dead letter with zero attempts", d, zero)
}
