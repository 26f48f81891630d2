package storetest

import (
	"fmt"
	"testing"

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
