package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

// Tests of store.Grouper: leases, fencing, fair shares and partition reads.

// claim calls Claim and fails the test on error.
func claim(tb testing.TB, g store.Grouper, group, member string, ttl time.Duration) store.Assignment {
	tb.Helper()
	a, err := g.Claim(tb.Context(), group, member, ttl)
	if err != nil {
		tb.Fatalf("Claim(%s, %s): %v", group, member, err)
	}
	if !slices.IsSortedFunc(a.Leases, func(x, y store.Lease) int { return x.Partition - y.Partition }) {
		tb.Fatalf("Claim(%s, %s): leases not in partition order: %v", group, member, a.Leases)
	}
	return a
}

func parts(a store.Assignment) []int {
	out := make([]int, len(a.Leases))
	for i, l := range a.Leases {
		out[i] = l.Partition
	}
	return out
}

// settle has the members claim in turn, releasing what exceeds their
// share, until every partition is held and no member holds more than its
// share; it returns each member's last assignment.
func settle(tb testing.TB, g store.Grouper, group string, members []string, ttl time.Duration) map[string]store.Assignment {
	tb.Helper()
	n := g.Partitions()
	for round := 0; round < 10; round++ {
		got := map[string]store.Assignment{}
		held := map[int]string{}
		for _, m := range members {
			a := claim(tb, g, group, m, ttl)
			if len(a.Leases) > a.Share {
				extra := parts(a)[a.Share:]
				if err := g.Release(tb.Context(), group, m, extra...); err != nil {
					tb.Fatalf("Release(%v): %v", extra, err)
				}
				a.Leases = a.Leases[:a.Share]
			}
			got[m] = a
		}
		// Claims made later in the round may have taken partitions that
		// earlier members released: ask again without changing anything.
		total := 0
		ok := true
		for _, m := range members {
			a := claim(tb, g, group, m, ttl)
			got[m] = a
			for _, p := range parts(a) {
				if o, dup := held[p]; dup {
					tb.Fatalf("partition %d held by both %s and %s", p, o, m)
				}
				held[p] = m
			}
			total += len(a.Leases)
			ok = ok && len(a.Leases) <= a.Share && a.Members == len(members)
		}
		if ok && total == n {
			return got
		}
	}
	tb.Fatalf("members %v did not settle on a fair split of %d partitions in 10 rounds", members, n)
	return nil
}

func (s suite) testGroupClaim(t *testing.T) {
	t.Parallel()
	_, g := openAs[store.Grouper](s, t)
	n := g.Partitions()
	if n < 1 || n > store.MaxPartitions {
		t.Fatalf("Partitions() = %d, want 1 to %d", n, store.MaxPartitions)
	}
	a := claim(t, g, "g", "a", time.Minute)
	if len(a.Leases) != n || a.Members != 1 || a.Share != n {
		t.Fatalf("lone member's Claim: %d leases, %d members, share %d; want all %d partitions, 1 member", len(a.Leases), a.Members, a.Share, n)
	}
	for i, l := range a.Leases {
		if l.Partition != i || l.Cursor != "" {
			t.Fatalf("lease %d = %+v, want partition %d from the start of the log", i, l, i)
		}
	}
	// Renewing keeps the leases and their tokens.
	again := claim(t, g, "g", "a", time.Minute)
	if !slices.Equal(again.Leases, a.Leases) {
		t.Fatalf("renewing Claim changed the leases:\n%v\nwant\n%v", again.Leases, a.Leases)
	}
	// A second member gets nothing while the first holds everything, and
	// both are told the share of two.
	b := claim(t, g, "g", "b", time.Minute)
	if len(b.Leases) != 0 || b.Members != 2 || b.Share != store.Share(n, 2) {
		t.Fatalf("second member's Claim: %d leases, %d members, share %d; want none, 2, %d", len(b.Leases), b.Members, b.Share, store.Share(n, 2))
	}
	// Another group is independent.
	if o := claim(t, g, "other", "b", time.Minute); len(o.Leases) != n {
		t.Fatalf("Claim in another group got %d partitions, want %d", len(o.Leases), n)
	}
	got := settle(t, g, "g", []string{"a", "b", "c"}, time.Minute)
	for m, a := range got {
		if want := store.Share(n, 3); a.Share != want {
			t.Errorf("member %s: share %d, want %d", m, a.Share, want)
		}
	}
	info, err := g.Group(t.Context(), "g")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Partitions) != n || len(info.Members) != 3 {
		t.Fatalf("Group: %d partitions and %d members, want %d and 3", len(info.Partitions), len(info.Members), n)
	}
	for _, m := range info.Members {
		if m.Partitions != len(got[m.ID].Leases) {
			t.Errorf("Group: member %s holds %d partitions, Claim said %d", m.ID, m.Partitions, len(got[m.ID].Leases))
		}
	}
	for _, p := range info.Partitions {
		if !slices.Contains(parts(got[p.Owner]), p.Partition) {
			t.Errorf("Group: partition %d owned by %q, which does not hold it", p.Partition, p.Owner)
		}
	}
}

func (s suite) testGroupReleaseAndFence(t *testing.T) {
	t.Parallel()
	st, g := openAs[store.Grouper](s, t)
	ctx := t.Context()
	n := g.Partitions()
	mustAppend(t, st, newRecords("f", 3))
	page, _, err := st.Read(ctx, store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	a := claim(t, g, "g", "a", time.Minute)
	l := a.Leases[0]
	if err := g.Commit(ctx, "g", "a", store.Checkpoint{Partition: l.Partition, Token: l.Token, Cursor: page[1].Cursor}); err != nil {
		t.Fatalf("Commit by the holder: %v", err)
	}
	if err := g.Commit(ctx, "g", "a", store.Checkpoint{Partition: l.Partition, Token: l.Token + 1, Cursor: page[2].Cursor}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("Commit with a wrong token: %v, want ErrLeaseLost", err)
	}
	if err := g.Commit(ctx, "g", "b", store.Checkpoint{Partition: l.Partition, Token: l.Token, Cursor: page[2].Cursor}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("Commit by a member that does not hold the partition: %v, want ErrLeaseLost", err)
	}
	// Leaving releases everything at once, checkpoints kept.
	if err := g.Release(ctx, "g", "a"); err != nil {
		t.Fatal(err)
	}
	b := claim(t, g, "g", "b", time.Minute)
	if len(b.Leases) != n || b.Members != 1 {
		t.Fatalf("after a left, b got %d partitions with %d members, want %d and 1", len(b.Leases), b.Members, n)
	}
	if b.Leases[0].Cursor != page[1].Cursor {
		t.Fatalf("b resumes partition %d from %q, want a's checkpoint %q", l.Partition, b.Leases[0].Cursor, page[1].Cursor)
	}
	if b.Leases[0].Token == l.Token {
		t.Fatal("the partition's token did not change with its owner")
	}
	for _, l := range b.Leases {
		if l.TakenOver {
			t.Fatalf("partition %d, released by a, is marked taken over", l.Partition)
		}
	}
	// a's stale lease is fenced, and nothing it writes lands.
	var lost *store.LeaseLostError
	err = g.Commit(ctx, "g", "a", store.Checkpoint{Partition: l.Partition, Token: l.Token, Cursor: page[2].Cursor})
	if !errors.As(err, &lost) || !slices.Equal(lost.Partitions, []int{l.Partition}) {
		t.Fatalf("Commit by a member that left: %v, want a LeaseLostError naming partition %d", err, l.Partition)
	}
	if again := claim(t, g, "g", "b", time.Minute); again.Leases[0].Cursor != page[1].Cursor {
		t.Fatalf("a fenced Commit changed the checkpoint to %q", again.Leases[0].Cursor)
	}
	// Releasing some partitions leaves the rest held.
	if err := g.Release(ctx, "g", "b", 0, 1); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, g, "g", "c", time.Minute); !slices.Equal(parts(got), []int{0, 1}) && n > 2 {
		t.Fatalf("c claimed %v after b released 0 and 1, want [0 1]", parts(got))
	}
}

func (s suite) testGroupExpiry(t *testing.T) {
	t.Parallel()
	_, g := openAs[store.Grouper](s, t)
	ctx := t.Context()
	n := g.Partitions()
	const ttl = 300 * time.Millisecond
	a := claim(t, g, "g", "a", ttl)
	if len(a.Leases) != n {
		t.Fatalf("a got %d partitions, want %d", len(a.Leases), n)
	}
	start := time.Now()
	var b store.Assignment
	taken := map[int]bool{}
	for {
		b = claim(t, g, "g", "b", time.Minute)
		for _, l := range b.Leases {
			if l.TakenOver {
				taken[l.Partition] = true
			}
		}
		if len(b.Leases) == n {
			break
		}
		if len(b.Leases) != 0 && time.Since(start) < ttl/2 {
			t.Fatalf("b took %d partitions while a's lease of %v was fresh", len(b.Leases), ttl)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("b holds %d of %d partitions 10s after a stopped renewing a %v lease", len(b.Leases), n, ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e := time.Since(start); e < ttl-50*time.Millisecond {
		t.Fatalf("b took over after %v, before a's %v lease ran out", e, ttl)
	}
	if b.Members != 1 {
		t.Errorf("after a's expiry, Claim counts %d members, want 1", b.Members)
	}
	if len(taken) != n {
		t.Errorf("b's claims marked %d of the %d partitions of the expired a as taken over", len(taken), n)
	}
	for _, l := range claim(t, g, "g", "b", time.Minute).Leases {
		if l.TakenOver {
			t.Fatalf("a renewal marks partition %d taken over again", l.Partition)
		}
	}
	l := a.Leases[0]
	if err := g.Commit(ctx, "g", "a", store.Checkpoint{Partition: l.Partition, Token: l.Token}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("Commit by the expired member: %v, want ErrLeaseLost", err)
	}
	if again := claim(t, g, "g", "a", ttl); len(again.Leases) != 0 {
		t.Fatalf("the expired member got back %v while b holds them", parts(again))
	}
}

func (s suite) testGroupStartsAtCheckpoint(t *testing.T) {
	t.Parallel()
	st, g := openAs[store.Grouper](s, t)
	ctx := t.Context()
	mustAppend(t, st, newRecords("c", 2))
	page, _, err := st.Read(ctx, store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetCheckpoint(ctx, "orders", page[0].Cursor); err != nil {
		t.Fatal(err)
	}
	for _, l := range claim(t, g, "orders", "a", time.Minute).Leases {
		if l.Cursor != page[0].Cursor {
			t.Fatalf("partition %d of a new group starts at %q, want the subscription's checkpoint %q", l.Partition, l.Cursor, page[0].Cursor)
		}
	}
}

// readPartitions pages through the partitions from their cursors with
// the given limit, and returns what it read and the cursors it ended at.
func readPartitions(tb testing.TB, g store.Grouper, from []store.PartitionCursor, limit int) ([]store.Record, []store.PartitionCursor) {
	tb.Helper()
	from = slices.Clone(from)
	asked := map[int]bool{}
	for _, f := range from {
		asked[f.Partition] = true
	}
	var out []store.Record
	for round := 0; ; round++ {
		page, next, err := g.ReadPartitions(tb.Context(), from, limit)
		if err != nil {
			tb.Fatalf("ReadPartitions: %v", err)
		}
		if len(page) > limit || len(next) != len(from) {
			tb.Fatalf("ReadPartitions(limit %d, %d partitions) = %d records, %d cursors", limit, len(from), len(page), len(next))
		}
		for _, r := range page {
			if p := store.Partition(r.AggregateID, r.ID, g.Partitions()); !asked[p] {
				tb.Fatalf("ReadPartitions returned %s of partition %d, not asked for", r.ID, p)
			}
		}
		out = append(out, page...)
		for i := range from {
			from[i].After = next[i]
		}
		if len(page) == 0 {
			return out, from
		}
		if round > 1000 {
			tb.Fatal("ReadPartitions does not reach the end")
		}
	}
}

func (s suite) testReadPartitions(t *testing.T) {
	t.Parallel()
	st, g := openAs[store.Grouper](s, t)
	ctx := t.Context()
	n := g.Partitions()
	var recs []store.Record
	for i := range 300 {
		r := newRecord(fmt.Sprintf("p-%d", i))
		if i%3 != 0 {
			r.AggregateID = fmt.Sprintf("agg-%d", i%40)
		}
		recs = append(recs, r)
	}
	mustAppend(t, st, recs[:150])
	mustAppend(t, st, recs[150:])
	all := readAll(t, st, store.Query{})
	every := make([]store.PartitionCursor, n)
	var even []store.PartitionCursor
	var wantEven []string
	for p := range every {
		every[p].Partition = p
		if p%2 == 0 {
			even = append(even, store.PartitionCursor{Partition: p})
		}
	}
	for _, r := range all {
		if store.Partition(r.AggregateID, r.ID, n)%2 == 0 {
			wantEven = append(wantEven, r.ID)
		}
	}
	got, end := readPartitions(t, g, every, 7)
	checkIDs(t, "ReadPartitions of every partition, 7 at a time", got, ids(all))
	gotEven, endEven := readPartitions(t, g, even, 5)
	checkIDs(t, "ReadPartitions of the even partitions, 5 at a time", gotEven, wantEven)
	// From where the reads ended, only new records come, each once.
	more := newRecords("q", 20)
	mustAppend(t, st, more)
	got, _ = readPartitions(t, g, end, 3)
	checkIDs(t, "ReadPartitions after the end", got, ids(more))
	got, _ = readPartitions(t, g, endEven, 1000)
	var wantMore []string
	for _, r := range more {
		if store.Partition("", r.ID, n)%2 == 0 {
			wantMore = append(wantMore, r.ID)
		}
	}
	checkIDs(t, "ReadPartitions of the even partitions after the end", got, wantMore)
	// A global cursor is a valid start for any partition.
	mid := all[len(all)/2]
	p := store.Partition(mid.AggregateID, mid.ID, n)
	got, _ = readPartitions(t, g, []store.PartitionCursor{{Partition: p, After: mid.Cursor}}, 1000)
	var want []string
	for _, r := range append(all[len(all)/2+1:], readAll(t, st, store.Query{After: all[len(all)-1].Cursor})...) {
		if store.Partition(r.AggregateID, r.ID, n) == p {
			want = append(want, r.ID)
		}
	}
	checkIDs(t, "ReadPartitions from a global cursor", got, want)
	if _, _, err := g.ReadPartitions(ctx, []store.PartitionCursor{{Partition: n}}, 1); err == nil {
		t.Error("ReadPartitions of partition n: no error")
	}
	if _, _, err := g.ReadPartitions(ctx, []store.PartitionCursor{{Partition: 0, After: "bogus"}}, 1); !errors.Is(err, store.ErrInvalidCursor) {
		t.Errorf("ReadPartitions with a bogus cursor: %v, want ErrInvalidCursor", err)
	}
}

func (s suite) testGroupLag(t *testing.T) {
	t.Parallel()
	st, g := openAs[store.Grouper](s, t)
	ctx := t.Context()
	n := g.Partitions()
	if info, err := g.Group(ctx, "never"); err != nil || len(info.Partitions) != 0 || len(info.Members) != 0 {
		t.Fatalf("Group of a group never joined = %+v, %v; want it empty", info, err)
	}
	recs := inAggregate("one", newRecords("l", 5))
	mustAppend(t, st, recs)
	p := store.Partition("one", "", n)
	a := claim(t, g, "g", "a", time.Minute)
	page, _, err := g.ReadPartitions(ctx, []store.PartitionCursor{{Partition: p}}, 2)
	if err != nil || len(page) != 2 {
		t.Fatalf("ReadPartitions = %d records, %v", len(page), err)
	}
	if err := g.Commit(ctx, "g", "a", store.Checkpoint{Partition: p, Token: a.Leases[p].Token, Cursor: page[1].Cursor}); err != nil {
		t.Fatal(err)
	}
	info, err := g.Group(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	for _, pi := range info.Partitions {
		want := int64(0)
		if pi.Partition == p {
			want = 3
		}
		if pi.Lag != want || pi.Owner != "a" || pi.Expires.IsZero() {
			t.Errorf("partition %d: %+v, want lag %d owned by a with an expiry", pi.Partition, pi, want)
		}
	}
	if pi := info.Partitions[p]; pi.Cursor != page[1].Cursor {
		t.Errorf("partition %d: cursor %q, want %q", p, pi.Cursor, page[1].Cursor)
	}
}

func (s suite) testGroupBadInput(t *testing.T) {
	t.Parallel()
	_, g := openAs[store.Grouper](s, t)
	ctx := t.Context()
	if _, err := g.Claim(ctx, "", "a", time.Second); !errors.Is(err, store.ErrInvalidName) {
		t.Errorf("Claim with an empty group: %v, want ErrInvalidName", err)
	}
	if _, err := g.Claim(ctx, "g", "a\x00", time.Second); !errors.Is(err, store.ErrInvalidName) {
		t.Errorf("Claim with a bad member: %v, want ErrInvalidName", err)
	}
	if _, err := g.Claim(ctx, "g", "a", 0); err == nil {
		t.Error("Claim with a zero TTL: no error")
	}
	if err := g.Release(ctx, "g", "a", -1); err == nil {
		t.Error("Release of partition -1: no error")
	}
	if err := g.Commit(ctx, "g", "a", store.Checkpoint{Partition: g.Partitions()}); err == nil {
		t.Error("Commit of partition n: no error")
	}
	if err := g.Commit(ctx, "g", "a", store.Checkpoint{Partition: 0, Cursor: "bogus"}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Errorf("Commit of a bogus cursor: %v, want ErrInvalidCursor", err)
	}
	if info, err := g.Group(ctx, "g"); err != nil || len(info.Members) != 0 {
		t.Errorf("bad input left members behind: %+v, %v", info, err)
	}
}
