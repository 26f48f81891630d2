package storetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

// testTimeRange checks that a store keeps the times of the years 1 to 9999
// UTC (what RFC 3339, and so JSON, can carry), refuses any other time in a
// record or dead letter alike and stores nothing then, and that a Read's
// Since and DeleteBefore take any time and treat one outside the range as
// before or after every record.
func (s suite) testTimeRange(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	first := time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC) // a microsecond after the zero Time
	last := time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	early := []time.Time{
		first.Add(-time.Nanosecond), // not zero, but a store's microseconds would make it so
		time.Date(0, 6, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-284555, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1, 1, 1, 0, 30, 0, 0, time.FixedZone("UTC+1", 3600)), // year 0 in UTC
	}
	late := []time.Time{
		last.Add(time.Microsecond),
		time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("UTC-5", -5*3600)), // year 10000 in UTC
	}
	dl, isDL := st.(store.DeadLetterStore)
	refused := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		if !errors.Is(err, store.ErrInvalidRecord) {
			t.Errorf("%s: %q does not match ErrInvalidRecord", what, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "time") || !strings.Contains(msg, "9999") {
			t.Errorf("%s: error %q does not name the time and the allowed range", what, err)
		}
	}
	for _, bad := range append(append([]time.Time{}, early...), late...) {
		r := newRecord("bad")
		r.Time = bad
		refused(fmt.Sprintf("Append of a record of %v", bad), st.Append(ctx, []store.Record{newRecord("good"), r}))
		if isDL {
			d := store.DeadLetterRecord{Subscription: "s", Record: newRecord("good"), Error: "x", Attempts: 1, Time: bad}
			refused(fmt.Sprintf("PutDeadLetter dead-lettered at %v", bad), dl.PutDeadLetter(ctx, d))
			d.Record, d.Time = r, base
			refused(fmt.Sprintf("PutDeadLetter of a record of %v", bad), dl.PutDeadLetter(ctx, d))
		}
	}
	if got := readAll(t, st, store.Query{}); len(got) != 0 {
		t.Fatalf("refused appends stored %s", idList(got))
	}
	if isDL {
		if got, err := dl.DeadLetters(ctx, "", 0); err != nil || len(got) != 0 {
			t.Fatalf("refused dead letters: DeadLetters = %d, %v; want none", len(got), err)
		}
	}

	// The first and last instants of the range round-trip.
	lo, hi := newRecord("first"), newRecord("last")
	lo.Time, hi.Time = first, last
	mustAppend(t, st, []store.Record{lo, hi})
	for _, want := range []store.Record{lo, hi} {
		got, err := st.Load(ctx, want.ID)
		if err != nil {
			t.Fatalf("Load(%s): %v", want.ID, err)
		}
		if !got.Time.Equal(want.Time) {
			t.Errorf("Load(%s): Time = %v, want %v", want.ID, got.Time, want.Time)
		}
	}

	for _, since := range early {
		checkIDs(t, fmt.Sprintf("Read since %v", since), readAll(t, st, store.Query{Since: since}), []string{"first", "last"})
	}
	checkIDs(t, fmt.Sprintf("Read since %v", last), readAll(t, st, store.Query{Since: last}), []string{"last"})
	for _, since := range late {
		checkIDs(t, fmt.Sprintf("Read since %v", since), readAll(t, st, store.Query{Since: since}), nil)
	}

	for _, before := range early {
		if n, err := st.DeleteBefore(ctx, before); err != nil || n != 0 {
			t.Fatalf("DeleteBefore(%v) = %d, %v; want 0 deleted", before, n, err)
		}
	}
	checkIDs(t, "log after deleting before the range", readAll(t, st, store.Query{}), []string{"first", "last"})
	if n, err := st.DeleteBefore(ctx, late[1]); err != nil || n != 2 {
		t.Fatalf("DeleteBefore(%v) = %d, %v; want 2 deleted", late[1], n, err)
	}
}
