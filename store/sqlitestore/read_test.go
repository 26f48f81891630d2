package sqlitestore_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

// fill appends n records of topic "common.event" straight into the log
// table: a large log in milliseconds rather than seconds of Appends. Their
// partitions, which SQLite cannot compute, come from Go as a JSON array.
func fill(t *testing.T, s *sqlitestore.Store, n int) {
	t.Helper()
	ctx := t.Context()
	var from int64
	if err := s.DB().QueryRowContext(ctx, `SELECT coalesce(max(position), 0) FROM event_log`).Scan(&from); err != nil {
		t.Fatal(err)
	}
	parts := make([]int, n)
	for i := range parts {
		parts[i] = store.Partition("", fmt.Sprintf("fill-%d", from+1+int64(i)), s.Partitions())
	}
	list, err := json.Marshal(parts)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.DB().ExecContext(ctx, `INSERT INTO event_log (id, topic, kind, version, time_us, payload_type, content_type, payload, part)
		SELECT 'fill-' || (? + key), 'common.event', 'domain', 0, ?, '', 'application/json', X'7B7D', value FROM json_each(?) ORDER BY key`,
		from+1, t0.UnixMicro(), string(list))
	if err != nil {
		t.Fatalf("filling the log: %v", err)
	}
}

// rare appends one record of topic "rare.found" and kind "rare".
func rare(t *testing.T, s *sqlitestore.Store, id string) {
	t.Helper()
	r := rec(id)
	r.Topic, r.Kind = "rare.found", "rare"
	if err := s.Append(t.Context(), []store.Record{r}); err != nil {
		t.Fatal(err)
	}
}

type page struct {
	ids  []string
	next store.Cursor
}

// pages reads q page by page to the end and returns each page's IDs and
// cursor.
func pages(t *testing.T, s *sqlitestore.Store, q store.Query) []page {
	t.Helper()
	var out []page
	for range 1000 {
		recs, next, err := s.Read(t.Context(), q)
		if err != nil {
			t.Fatalf("Read after %q: %v", q.After, err)
		}
		if q.Limit > 0 && len(recs) > q.Limit {
			t.Fatalf("Read with Limit %d returned %d records", q.Limit, len(recs))
		}
		p := page{next: next}
		for _, r := range recs {
			p.ids = append(p.ids, r.ID)
		}
		if next == q.After {
			if len(recs) > 0 {
				t.Fatalf("Read after %q returned records without moving the cursor", q.After)
			}
			return out
		}
		out = append(out, p)
		q.After = next
	}
	t.Fatal("Read did not reach the end in 1000 calls")
	return nil
}

func allIDs(ps []page) []string {
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ids...)
	}
	return ids
}

// TestSparseReadIsBounded checks that a filtered read of a large log looks
// at no more than 10,000 positions per call: a pattern that matches nothing
// there returns an empty page with a cursor to continue from, and paging on
// finds every match once.
func TestSparseReadIsBounded(t *testing.T) {
	t.Parallel()
	s := open(t)
	rare(t, s, "m1") // position 1
	fill(t, s, 10500)
	rare(t, s, "m2") // position 10502
	for _, q := range []store.Query{{Topic: "rare.*", Limit: 1}, {Kind: "rare", Limit: 1}, {Topic: "*.found", Since: t0, Limit: 1}} {
		got := pages(t, s, q)
		want := []page{
			{[]string{"m1"}, "p1"},
			{nil, "p10001"},            // an empty page, which is not the end
			{[]string{"m2"}, "p10502"}, // the end of the log, not of the walk
		}
		if !slices.EqualFunc(got, want, func(a, b page) bool { return slices.Equal(a.ids, b.ids) && a.next == b.next }) {
			t.Errorf("Read(%+v) pages = %v, want %v", q, got, want)
		}
	}
	// A large limit looks 10 times as far.
	recs, next, err := s.Read(t.Context(), store.Query{Topic: "rare.*", Limit: 1100})
	if err != nil || len(recs) != 2 || next != "p10502" {
		t.Errorf("Read with Limit 1100 = %d records, cursor %q, %v; want both matches and p10502", len(recs), next, err)
	}
	// Reads by exact topic, with a kind or not, or without a filter still
	// fill their pages.
	for _, q := range []store.Query{{Topic: "rare.found", Limit: 2}, {Topic: "rare.found", Kind: "rare", Limit: 2}, {Limit: 10}} {
		recs, _, err := s.Read(t.Context(), q)
		if err != nil || len(recs) != q.Limit {
			t.Errorf("Read(%+v) = %d records, %v; want %d", q, len(recs), err, q.Limit)
		}
	}
}

// TestSparseReadLimitScales checks the bound of 10 times the limit, with
// the floor lowered, and that every match is found once, in order.
func TestSparseReadLimitScales(t *testing.T) {
	t.Parallel()
	s := open(t)
	sqlitestore.SetMinScan(s, 10)
	fill(t, s, 50)
	rare(t, s, "m0") // position 51
	rare(t, s, "m1")
	fill(t, s, 6)
	rare(t, s, "m8") // position 59
	fill(t, s, 41)
	got := pages(t, s, store.Query{Topic: "rare.>", Limit: 3})
	want := []page{{nil, "p30"}, {[]string{"m0", "m1", "m8"}, "p59"}, {nil, "p89"}, {nil, "p100"}}
	if !slices.EqualFunc(got, want, func(a, b page) bool { return slices.Equal(a.ids, b.ids) && a.next == b.next }) {
		t.Fatalf("pages = %v, want %v", got, want)
	}
	got = pages(t, s, store.Query{Topic: "rare.>", Limit: 1})
	if ids := allIDs(got); !slices.Equal(ids, []string{"m0", "m1", "m8"}) {
		t.Fatalf("paging with Limit 1 found %v, want [m0 m1 m8]", ids)
	}
}

// TestSparseReadAfterRetention checks that a bounded walk from the start of
// a log whose oldest records were deleted starts at the first record left:
// a cursor inside the deleted range would have expired.
func TestSparseReadAfterRetention(t *testing.T) {
	t.Parallel()
	s := open(t)
	sqlitestore.SetMinScan(s, 10)
	fill(t, s, 30)
	rare(t, s, "late") // position 31
	if _, err := s.DB().ExecContext(t.Context(), `UPDATE event_log SET time_us = ? WHERE id = 'late'`, t0.Add(time.Hour).UnixMicro()); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteBefore(t.Context(), t0.Add(time.Minute)); err != nil || n != 30 {
		t.Fatalf("DeleteBefore = %d, %v; want 30", n, err)
	}
	recs, next, err := s.Read(t.Context(), store.Query{Topic: "rare.*", Limit: 1})
	if err != nil || len(recs) != 1 || recs[0].ID != "late" || next != "p31" {
		t.Fatalf("Read from the start = %d records, cursor %q, %v; want [late] and p31", len(recs), next, err)
	}
}

// TestWildcardTopicsWithGlobCharacters checks patterns over topics holding
// the characters that GLOB treats specially.
func TestWildcardTopicsWithGlobCharacters(t *testing.T) {
	t.Parallel()
	s := open(t)
	topics := []string{"a[b].x", "ab.x", "a?.y", "aa.y", "q.[.]", "q.x.]", "q.[", "a[b].x.z"}
	var log []store.Record
	for i, topic := range topics {
		r := rec(string(rune('a' + i)))
		r.Topic = topic
		log = append(log, r)
	}
	if err := s.Append(t.Context(), log); err != nil {
		t.Fatal(err)
	}
	for _, pattern := range []string{"a[b].*", "a[b].>", "a?.*", "*.y", "q.*.]", "q.[.*", "q.>", "*.[", "*.x", "x.*"} {
		var want []string
		for _, r := range log {
			if store.MatchTopic(pattern, r.Topic) {
				want = append(want, r.ID)
			}
		}
		var got []string
		for r, err := range store.All(t.Context(), s, store.Query{Topic: pattern}) {
			if err != nil {
				t.Fatalf("Read(%q): %v", pattern, err)
			}
			got = append(got, r.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("Read(%q) = %v, want %v", pattern, got, want)
		}
	}
}

// TestSparseReadStopsBeforeOpenTransaction checks that the cursor a bounded
// walk returns does not pass a record that an open outbox transaction has
// appended but not committed: once it commits, reading on finds it.
func TestSparseReadStopsBeforeOpenTransaction(t *testing.T) {
	t.Parallel()
	s := open(t)
	sqlitestore.SetMinScan(s, 10)
	fill(t, s, 5)
	tx, err := s.DB().BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	pending := rec("pending")
	pending.Topic = "rare.found"
	if err := s.AppendTx(t.Context(), tx, []store.Record{pending}); err != nil {
		t.Fatal(err)
	}
	q := store.Query{Topic: "rare.>", Limit: 5}
	recs, next, err := s.Read(t.Context(), q)
	if err != nil || len(recs) != 0 || next != "p5" {
		t.Fatalf("Read while the append is uncommitted = %d records, cursor %q, %v; want none and p5, not past position %d",
			len(recs), next, err, pending.Position)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	q.After = next
	recs, _, err = s.Read(t.Context(), q)
	if err != nil || len(recs) != 1 || recs[0].ID != "pending" {
		t.Fatalf("Read after the commit = %v, %v; want the committed record", recs, err)
	}
}
