package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

func (s suite) testRetention(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	cut := base.Add(time.Hour)
	recs := inAggregate("r", newRecords("r", 10))
	for i := range 5 {
		recs[i].Time = cut.Add(time.Duration(i-10) * time.Minute)
	}
	recs[5].Time = cut.Add(-time.Microsecond) // last one deleted
	recs[6].Time = cut                        // first one kept
	for i := 7; i < 10; i++ {
		recs[i].Time = cut.Add(time.Duration(i) * time.Minute)
	}
	mustAppend(t, st, recs[:3])
	mustAppend(t, st, recs[3:])
	before := readAll(t, st, store.Query{Limit: 1})
	if err := st.SetCheckpoint(ctx, "kept", before[2].Cursor); err != nil {
		t.Fatal(err)
	}

	n, err := st.DeleteBefore(ctx, cut)
	if err != nil {
		t.Fatalf("DeleteBefore: %v", err)
	}
	if n != 6 {
		t.Fatalf("DeleteBefore deleted %d records, want 6 (those with Time before the cut)", n)
	}
	checkIDs(t, "Read from the zero cursor after retention", readAll(t, st, store.Query{}), []string{"r-6", "r-7", "r-8", "r-9"})
	for i := range 5 {
		_, _, err := st.Read(ctx, store.Query{After: before[i].Cursor})
		checkErr(t, fmt.Sprintf("Read after the cursor of deleted record r-%d", i), err, store.ErrCursorExpired)
	}
	checkIDs(t, "Read after the last deleted record", readAll(t, st, store.Query{After: before[5].Cursor}), []string{"r-6", "r-7", "r-8", "r-9"})
	checkIDs(t, "Read after a retained record", readAll(t, st, store.Query{After: before[7].Cursor}), []string{"r-8", "r-9"})
	checkIDs(t, "filtered Read from the zero cursor", readAll(t, st, store.Query{AggregateID: "r"}), []string{"r-6", "r-7", "r-8", "r-9"})
	_, _, err = st.Read(ctx, store.Query{After: before[1].Cursor, Topic: "nothing.*"})
	checkErr(t, "filtered Read after an expired cursor", err, store.ErrCursorExpired)

	for i := range 6 {
		if _, err := st.Load(ctx, recs[i].ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Load(%s) after retention = %v, want ErrNotFound", recs[i].ID, err)
		}
	}
	agg, err := st.LoadAggregate(ctx, "r", 0)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "LoadAggregate after retention", agg, []string{"r-6", "r-7", "r-8", "r-9"})
	if agg[0].Version != 7 {
		t.Fatalf("first retained record has version %d, want 7", agg[0].Version)
	}
	if c, _ := st.Checkpoint(ctx, "kept"); c != before[2].Cursor {
		t.Fatalf("checkpoint changed by retention: %q, want %q", c, before[2].Cursor)
	}
	if n, err := st.DeleteBefore(ctx, cut); err != nil || n != 0 {
		t.Fatalf("DeleteBefore again = %d, %v; want 0, nil", n, err)
	}
}

// testRetentionKeepsNumbering checks that deleting records renumbers
// nothing: versions continue and positions are not reused.
func (s suite) testRetentionKeepsNumbering(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	old := inAggregate("n", newRecords("old", 3))
	mustAppend(t, st, old)
	lastPos := old[2].Position
	n, err := st.DeleteBefore(ctx, base.Add(time.Hour))
	if err != nil || n != 3 {
		t.Fatalf("DeleteBefore = %d, %v; want 3", n, err)
	}
	err = st.Append(ctx, inAggregate("n", newRecords("new", 1)), store.Expect{AggregateID: "n", Version: 0})
	var vc *store.VersionConflictError
	if !errors.As(err, &vc) || vc.Actual != 3 {
		t.Fatalf("Expect n@0 after deleting its records: %v; want a conflict with actual version 3", err)
	}
	next := inAggregate("n", newRecords("new", 2))
	mustAppend(t, st, next, store.Expect{AggregateID: "n", Version: 3})
	if next[0].Version != 4 || next[1].Version != 5 {
		t.Fatalf("versions after retention: %d, %d; want 4, 5", next[0].Version, next[1].Version)
	}
	if next[0].Position <= lastPos {
		t.Fatalf("position %d after retention reuses a deleted position (last was %d)", next[0].Position, lastPos)
	}
	checkIDs(t, "log", readAll(t, st, store.Query{}), []string{"new-0", "new-1"})
}

func (s suite) testRetentionManyRecords(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	const old = 2345
	recs := newRecords("o", old)
	for i := 0; i < old; i += 500 {
		mustAppend(t, st, recs[i:min(i+500, old)])
	}
	keep := newRecords("k", 3)
	for i := range keep {
		keep[i].Time = base.Add(24 * time.Hour)
	}
	mustAppend(t, st, keep)
	n, err := st.DeleteBefore(t.Context(), base.Add(time.Hour))
	if err != nil || n != old {
		t.Fatalf("DeleteBefore = %d, %v; want %d", n, err, old)
	}
	checkIDs(t, "log after retention", readAll(t, st, store.Query{}), []string{"k-0", "k-1", "k-2"})
}

// testRetentionOutOfTimeOrder checks that retention deletes a prefix of the
// log: an old record behind a newer one stays until the newer one is old
// too, so that a reader from the start pages through what remains without
// meeting an expired cursor.
func (s suite) testRetentionOutOfTimeOrder(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	cut := base.Add(time.Hour)
	recs := newRecords("t", 5) // all at base, before the cut
	recs[1].Time = cut.Add(time.Hour)
	recs[4].Time = cut.Add(3 * time.Hour)
	mustAppend(t, st, recs)

	n, err := st.DeleteBefore(ctx, cut)
	if err != nil || n != 1 {
		t.Fatalf("DeleteBefore = %d, %v; want 1: only t-0 comes before the newer t-1", n, err)
	}
	// readAll pages one record at a time, so it reads from every cursor.
	checkIDs(t, "Read one by one after retention", readAll(t, st, store.Query{Limit: 1}), []string{"t-1", "t-2", "t-3", "t-4"})
	if _, err := st.Load(ctx, "t-2"); err != nil {
		t.Fatalf("Load of an old record behind a newer one: %v", err)
	}

	n, err = st.DeleteBefore(ctx, cut.Add(2*time.Hour))
	if err != nil || n != 3 {
		t.Fatalf("DeleteBefore later = %d, %v; want 3 (t-1 to t-3)", n, err)
	}
	checkIDs(t, "Read after the second retention", readAll(t, st, store.Query{Limit: 1}), []string{"t-4"})
}
