package storetest

import (
	"errors"
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
}

func (s suite) testDeadLetters(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	dl, ok := st.(store.DeadLetterStore)
	if !ok {
		t.Skip("store does not implement store.DeadLetterStore")
	}
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
			g, w := got[i], want[i]
			if g.Subscription != w.Subscription || g.Record.ID != w.Record.ID {
				t.Fatalf("%s: dead letter %d is (%s, %s), want (%s, %s)", what, i, g.Subscription, g.Record.ID, w.Subscription, w.Record.ID)
			}
			if g.Error != w.Error || g.Attempts != w.Attempts || !g.Time.Equal(w.Time) || g.Time.Location() != time.UTC {
				t.Fatalf("%s: dead letter (%s, %s) = error %q attempts %d time %v; want %q, %d, %v in UTC",
					what, w.Subscription, w.Record.ID, g.Error, g.Attempts, g.Time, w.Error, w.Attempts, w.Time)
			}
			checkRecord(t, what, g.Record, w.Record)
		}
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

	// Replacing keeps one dead letter per subscription and event.
	again := letters[0]
	again.Error, again.Attempts, again.Time = "smtp: 550 rejected", 9, at(4*time.Second)
	if err := dl.PutDeadLetter(ctx, again); err != nil {
		t.Fatal(err)
	}
	check("DeadLetters(mailer) after replacing", list("mailer", 0), letters[2], again)

	if err := dl.DeleteDeadLetter(ctx, "billing", recs[1].ID); err != nil {
		t.Fatalf("DeleteDeadLetter: %v", err)
	}
	check("DeadLetters(all) after deleting", list("", 0), letters[2], letters[3], again)
	err := dl.DeleteDeadLetter(ctx, "billing", recs[1].ID)
	checkErr(t, "deleting a deleted dead letter", err, store.ErrNotFound)
	err = dl.DeleteDeadLetter(ctx, "nobody", recs[0].ID)
	checkErr(t, "deleting an unknown dead letter", err, store.ErrNotFound)
	if errors.Is(err, store.ErrClosed) {
		t.Fatal("unexpected ErrClosed")
	}
}
