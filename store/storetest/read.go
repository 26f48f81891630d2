package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

// filterLog appends a log with varied topics, kinds, aggregates and times
// and returns it in append order, Position and Version set.
func filterLog(t *testing.T, st store.Store) []store.Record {
	t.Helper()
	topics := []string{"user.registered", "user.email.changed", "user", "order.created", "order.item.added", "users.registered", "userx", "user.registered.v2"}
	kinds := []string{store.KindDomain, store.KindSystem, store.KindIntegration}
	aggs := []string{"u1", "u2", "", "o1", ""}
	var log []store.Record
	for i := range 40 {
		r := newRecord(fmt.Sprintf("f-%02d", i))
		r.Topic = topics[i%len(topics)]
		r.Kind = kinds[i%len(kinds)]
		r.AggregateID = aggs[i%len(aggs)]
		r.Time = base.Add(time.Duration(i) * time.Minute)
		if i == 33 {
			r.Time = base.Add(-time.Hour) // older than its position suggests
		}
		log = append(log, r)
	}
	// Several batches of different sizes.
	for _, cut := range [][2]int{{0, 1}, {1, 8}, {8, 9}, {9, 25}, {25, 40}} {
		mustAppend(t, st, log[cut[0]:cut[1]])
	}
	return log
}

func (s suite) testReadFilters(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	log := filterLog(t, st)
	since := base.Add(10 * time.Minute)
	after := log[4]
	got := readAll(t, st, store.Query{Limit: 1})
	after.Cursor = got[4].Cursor

	queries := []store.Query{
		{},
		{Topic: "user.registered"},
		{Topic: "user"},
		{Topic: "user.*"},
		{Topic: "user.>"},
		{Topic: "user.*.changed"},
		{Topic: "*.created"},
		{Topic: "*.*.>"},
		{Topic: "*"},
		{Topic: ">"},
		{Topic: "order.>"},
		{Topic: "users.registered"},
		{Topic: "nothing.matches"},
		{AggregateID: "u1"},
		{AggregateID: "o1"},
		{AggregateID: "unknown"},
		{Kind: store.KindSystem},
		{Kind: "no-such-kind"},
		{Since: since},
		{Since: since.Add(time.Second)},
		{After: after.Cursor},
		{Topic: "user.>", Kind: store.KindDomain, Since: since},
		{Topic: "user.*", AggregateID: "u2", After: after.Cursor},
	}
	for _, q := range queries {
		var want []string
		for i, r := range log {
			if store.MatchTopic(q.Topic, r.Topic) &&
				(q.AggregateID == "" || r.AggregateID == q.AggregateID) &&
				(q.Kind == "" || r.Kind == q.Kind) &&
				(q.Since.IsZero() || !r.Time.Before(q.Since)) &&
				(q.After == "" || i > 4) {
				want = append(want, r.ID)
			}
		}
		name := fmt.Sprintf("%+v", q)
		if q.After != "" {
			name = fmt.Sprintf("%+v", store.Query{Topic: q.Topic, AggregateID: q.AggregateID, Kind: q.Kind, Since: q.Since}) + " after f-04"
		}
		// In one page.
		q.Limit = 100
		page, _, err := st.Read(t.Context(), q)
		if err != nil {
			t.Fatalf("Read(%s): %v", name, err)
		}
		checkIDs(t, "Read "+name, page, want)
		checkOrdered(t, "Read "+name, page)

		// In pages of 3, each as full as the remaining matches allow: the
		// log is far smaller than the stretch of it that a filtered read
		// may stop after (see testReadSparse).
		q.Limit = 3
		var paged []store.Record
		for range 100 {
			page, next, err := st.Read(t.Context(), q)
			if err != nil {
				t.Fatalf("Read(%s): %v", name, err)
			}
			if wantN := min(3, len(want)-len(paged)); len(page) != wantN {
				t.Fatalf("Read(%s) with Limit 3 after %d matches returned %d records, want %d: a page must fill up to Limit while matches remain",
					name, len(paged), len(page), wantN)
			}
			paged = append(paged, page...)
			if len(page) == 0 {
				break
			}
			q.After = next
		}
		checkIDs(t, "paged Read "+name, paged, want)
	}
}

func (s suite) testReadLimits(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	const n = store.MaxReadLimit + 50
	all := newRecords("l", n)
	for i := 0; i < n; i += 1000 {
		mustAppend(t, st, all[i:min(i+1000, n)])
	}
	ctx := t.Context()
	page, _, err := st.Read(ctx, store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != store.DefaultReadLimit {
		t.Fatalf("Read with Limit 0 returned %d records, want DefaultReadLimit (%d)", len(page), store.DefaultReadLimit)
	}
	for _, limit := range []int{store.MaxReadLimit, 1 << 30} {
		page, next, err := st.Read(ctx, store.Query{Limit: limit})
		if err != nil {
			t.Fatalf("Read with Limit %d: %v", limit, err)
		}
		if len(page) != store.MaxReadLimit {
			t.Fatalf("Read with Limit %d returned %d records, want MaxReadLimit (%d)", limit, len(page), store.MaxReadLimit)
		}
		checkIDs(t, "first page", page[:2], []string{"l-0", "l-1"})
		rest, _, err := st.Read(ctx, store.Query{After: next, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(rest) != 50 || rest[0].ID != fmt.Sprintf("l-%d", store.MaxReadLimit) {
			t.Fatalf("page after a clamped page starts at %v with %d records, want l-%d with 50", ids(rest[:min(1, len(rest))]), len(rest), store.MaxReadLimit)
		}
	}
}

func (s suite) testReadPaging(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	const n = 1234
	all := newRecords("p", n)
	for i, size := 0, 1; i < n; i, size = i+size, size%47+1 {
		mustAppend(t, st, all[i:min(i+size, n)])
	}
	want := ids(all)
	for _, limit := range []int{5, 100, 499, 0} {
		var got []store.Record
		q := store.Query{Limit: limit}
		for {
			page, next, err := st.Read(t.Context(), q)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if len(page) == 0 {
				if next != q.After {
					t.Fatalf("empty page at the end moved the cursor from %q to %q", q.After, next)
				}
				break
			}
			got = append(got, page...)
			q.After = next
		}
		checkIDs(t, fmt.Sprintf("paging with Limit %d", limit), got, want)
		checkOrdered(t, "paging", got)
		for i, r := range got {
			if r.Position != all[i].Position {
				t.Fatalf("record %s read at position %d, appended at %d", r.ID, r.Position, all[i].Position)
			}
		}
	}
}

// testReadRecordCursor checks that each returned record's Cursor resumes
// right after it, with and without a filter.
func (s suite) testReadRecordCursor(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	filterLog(t, st)
	for _, q := range []store.Query{{}, {Topic: "user.>"}, {AggregateID: "u2"}} {
		page, _, err := st.Read(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) < 2 {
			t.Fatalf("Read(%+v) returned %d records, the fixture has more", q, len(page))
		}
		for i, r := range page {
			if r.Cursor == "" {
				t.Fatalf("record %s has no Cursor", r.ID)
			}
			q2 := q
			q2.After, q2.Limit = r.Cursor, 1
			next, _, err := st.Read(t.Context(), q2)
			if err != nil {
				t.Fatalf("Read after %s's cursor: %v", r.ID, err)
			}
			var want []string
			if i+1 < len(page) {
				want = []string{page[i+1].ID}
			}
			checkIDs(t, fmt.Sprintf("Read(%+v) after %s's cursor", q, r.ID), next, want)
		}
	}
}

// testReadAtEnd checks what Read returns when there is nothing more yet,
// and that reading on from there sees later appends.
func (s suite) testReadAtEnd(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()

	page, next, err := st.Read(ctx, store.Query{})
	if err != nil || len(page) != 0 || next != "" {
		t.Fatalf("Read of an empty store = %d records, cursor %q, %v; want none, the zero cursor, nil", len(page), next, err)
	}
	mustAppend(t, st, newRecords("e", 3))
	page, c, err := st.Read(ctx, store.Query{})
	if err != nil || len(page) != 3 {
		t.Fatalf("Read = %d records, %v; want 3", len(page), err)
	}
	page, next, err = st.Read(ctx, store.Query{After: c})
	if err != nil || len(page) != 0 || next != c {
		t.Fatalf("Read at the end = %d records, cursor %q, %v; want none and the same cursor %q", len(page), next, err, c)
	}

	// A filter that matches nothing may move the cursor past what it
	// scanned, but reading on with it must not miss a later match.
	sparse := store.Query{Topic: "rare.event"}
	page, skip, err := st.Read(ctx, sparse)
	if err != nil || len(page) != 0 {
		t.Fatalf("Read(%+v) = %d records, %v; want none", sparse, len(page), err)
	}
	more := newRecords("m", 3)
	more[1].Topic = "rare.event"
	mustAppend(t, st, more)
	sparse.After = skip
	got := readAll(t, st, sparse)
	checkIDs(t, "sparse read after appends", got, []string{"m-1"})
	got = readAll(t, st, store.Query{After: c})
	checkIDs(t, "read after appends", got, []string{"m-0", "m-1", "m-2"})
}

// testReadSparse pages with filters that match a few records of a log
// larger than the stretch a driver may look at in one call (ours look at
// 10,000 records at most with a small limit): a page short of its limit,
// even an empty one, is not the end while the cursor moves, and reading on
// finds every match once, in order, without passing the end of the log.
func (s suite) testReadSparse(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	const n = store.MaxReadLimit + 2500
	all := newRecords("s", n)
	var want []string
	for _, i := range []int{3, 4, n - 2} {
		all[i].Topic, all[i].Kind = "rare.found", store.KindSystem
		want = append(want, all[i].ID)
	}
	for i := 0; i < n; i += 1000 {
		mustAppend(t, st, all[i:min(i+1000, n)])
	}
	for i, q := range []store.Query{
		{Topic: "rare.*", Limit: 1},
		{Topic: "*.found", Limit: 2},
		{Kind: store.KindSystem},
		{Topic: "rare.found", Kind: store.KindSystem, Limit: 1},
		{Topic: "rare.>", Since: base},
	} {
		name := fmt.Sprintf("%+v", q)
		var got []store.Record
		for calls := 0; ; calls++ {
			if calls > n {
				t.Fatalf("Read(%s): no end after %d calls", name, calls)
			}
			page, next, err := st.Read(ctx, q)
			if err != nil {
				t.Fatalf("Read(%s) after %d records: %v", name, len(got), err)
			}
			if q.Limit > 0 && len(page) > q.Limit {
				t.Fatalf("Read(%s) returned %d records", name, len(page))
			}
			got = append(got, page...)
			if next == q.After {
				if len(page) > 0 {
					t.Fatalf("Read(%s) returned records without moving the cursor", name)
				}
				break
			}
			q.After = next
		}
		checkIDs(t, "paged sparse Read "+name, got, want)

		// The cursor where reading ended is not past the end of the log:
		// a later match is found from it.
		late := newRecord(fmt.Sprintf("late-%d", i))
		late.Topic, late.Kind = "rare.found", store.KindSystem
		mustAppend(t, st, []store.Record{late})
		want = append(want, late.ID)
		checkIDs(t, "sparse Read "+name+" after a later append", readAll(t, st, q), []string{late.ID})
	}
}

func (s suite) testInvalidCursor(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	mustAppend(t, st, newRecords("c", 3))
	page, _, err := st.Read(ctx, store.Query{Limit: 2})
	if err != nil || len(page) != 2 {
		t.Fatalf("Read: %d records, %v", len(page), err)
	}
	real := page[0].Cursor
	bad := []store.Cursor{
		"not a cursor",
		"-1",
		"x:1",
		"\x00",
		"🙂",
		real + "!",
		"!" + real,
		real + " ",
		store.Cursor(string(real) + string(real)),
	}
	for _, c := range bad {
		if c == real {
			continue
		}
		_, _, err := st.Read(ctx, store.Query{After: c})
		if !errors.Is(err, store.ErrInvalidCursor) {
			t.Errorf("Read after cursor %q: got %v, want an error matching ErrInvalidCursor", c, err)
		}
	}
	// The real cursor still works.
	got, _, err := st.Read(ctx, store.Query{After: real})
	if err != nil {
		t.Fatal(err)
	}
	checkIDs(t, "Read after the first record", got, []string{"c-1", "c-2"})
}
