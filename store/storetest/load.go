package storetest

import (
	"fmt"
	"testing"

	"github.com/ncore-io/event/store"
)

func (s suite) testLoadAggregate(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	a := inAggregate("a", newRecords("a", 5))
	b := inAggregate("b", newRecords("b", 2))
	mustAppend(t, st, []store.Record{a[0], b[0], a[1]})
	mustAppend(t, st, []store.Record{newRecord("none")})
	mustAppend(t, st, []store.Record{a[2], a[3], b[1], a[4]})

	for from, want := range map[int64][]string{
		0: {"a-0", "a-1", "a-2", "a-3", "a-4"},
		1: {"a-0", "a-1", "a-2", "a-3", "a-4"},
		3: {"a-2", "a-3", "a-4"},
		5: {"a-4"},
		6: nil,
	} {
		got, err := st.LoadAggregate(ctx, "a", from)
		if err != nil {
			t.Fatalf("LoadAggregate(a, %d): %v", from, err)
		}
		checkIDs(t, fmt.Sprintf("LoadAggregate(a, %d)", from), got, want)
		for i, r := range got {
			if wantV := max(from, 1) + int64(i); r.Version != wantV {
				t.Fatalf("LoadAggregate(a, %d): %s has version %d, want %d", from, r.ID, r.Version, wantV)
			}
		}
		checkOrdered(t, "LoadAggregate", got)
	}
	got, err := st.LoadAggregate(ctx, "b", 0)
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "LoadAggregate(b, 0)", got, []string{"b-0", "b-1"})
}

func (s suite) testNotFound(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	mustAppend(t, st, []store.Record{newRecord("present")})
	_, err := st.Load(ctx, "absent")
	checkErr(t, "Load(absent)", err, store.ErrNotFound)
	recs, err := st.LoadAggregate(ctx, "no-such-aggregate", 0)
	if err != nil || len(recs) != 0 {
		t.Errorf("LoadAggregate of an unknown aggregate = %d records, %v; want none and no error", len(recs), err)
	}
	// A record without aggregate does not belong to the aggregate "".
	recs, err = st.LoadAggregate(ctx, "", 0)
	if err == nil && len(recs) != 0 {
		t.Errorf("LoadAggregate(\"\") returned %s; records without aggregate are not an aggregate", idList(recs))
	}
}
