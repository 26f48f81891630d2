package store_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

// pager is a Store whose Read serves fixed pages, to test how All walks
// them. Only Read is used.
type pager struct {
	store.Store
	pages map[store.Cursor]page
	calls int
}

type page struct {
	recs []store.Record
	next store.Cursor
	err  error
}

func (p *pager) Read(_ context.Context, q store.Query) ([]store.Record, store.Cursor, error) {
	p.calls++
	pg, ok := p.pages[q.After]
	if !ok {
		return nil, q.After, nil
	}
	return pg.recs, pg.next, pg.err
}

func recs(ids ...int) []store.Record {
	var out []store.Record
	for _, id := range ids {
		out = append(out, store.Record{ID: strconv.Itoa(id), Topic: "t", Time: time.Unix(0, 0)})
	}
	return out
}

func collect(t *testing.T, s store.Store, q store.Query) ([]string, error) {
	t.Helper()
	var ids []string
	for r, err := range store.All(context.Background(), s, q) {
		if err != nil {
			return ids, err
		}
		ids = append(ids, r.ID)
	}
	return ids, nil
}

func TestAllPages(t *testing.T) {
	t.Parallel()
	p := &pager{pages: map[store.Cursor]page{
		"":   {recs: recs(1, 2), next: "c2"},
		"c2": {recs: nil, next: "c5"}, // skipped non-matching records
		"c5": {recs: recs(6), next: "c6"},
	}}
	ids, err := collect(t, p, store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids) != "[1 2 6]" {
		t.Fatalf("got %v, want [1 2 6]", ids)
	}
	if p.calls != 4 {
		t.Fatalf("Read called %d times, want 4 (the last one finds nothing)", p.calls)
	}
}

func TestAllStopsOnBreak(t *testing.T) {
	t.Parallel()
	p := &pager{pages: map[store.Cursor]page{"": {recs: recs(1, 2), next: "c2"}, "c2": {recs: recs(3), next: "c3"}}}
	for r, err := range store.All(context.Background(), p, store.Query{}) {
		if err != nil || r.ID != "1" {
			t.Fatalf("first = %v, %v", r.ID, err)
		}
		break
	}
	if p.calls != 1 {
		t.Fatalf("Read called %d times after break, want 1", p.calls)
	}
}

func TestAllYieldsError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	p := &pager{pages: map[store.Cursor]page{"": {recs: recs(1), next: "c1"}, "c1": {err: boom}}}
	ids, err := collect(t, p, store.Query{})
	if !errors.Is(err, boom) || fmt.Sprint(ids) != "[1]" {
		t.Fatalf("got %v, %v; want [1], boom", ids, err)
	}
}

func TestAllRejectsStuckCursor(t *testing.T) {
	t.Parallel()
	p := &pager{pages: map[store.Cursor]page{"c": {recs: recs(1), next: "c"}}}
	_, err := collect(t, p, store.Query{After: "c"})
	if err == nil {
		t.Fatal("All looped on a store that does not advance its cursor; want an error")
	}
}
