package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
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
// share, until every partition is held, each member holds its Share and
// the shares are fair: they differ by at most one and add up to the
// partitions. It returns each member's last assignment.
func settle(tb testing.TB, g store.Grouper, group string, members []string, ttl time.Duration) map[string]store.Assignment {
	tb.Helper()
	n := g.Partitions()
	var counts map[string]int
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
		total, least, most := 0, n, 0
		ok := true
		counts = map[string]int{}
		for _, m := range members {
			a := claim(tb, g, group, m, ttl)
			got[m] = a
			for _, p := range parts(a) {
				if o, dup := held[p]; dup {
					tb.Fatalf("partition %d held by both %s and %s", p, o, m)
				}
				held[p] = m
			}
			k := len(a.Leases)
			counts[m] = k
			total, least, most = total+k, min(least, k), max(most, k)
			ok = ok && k == a.Share && a.Members == len(members)
		}
		if ok && total == n && most-least <= 1 {
			return got
		}
	}
	tb.Fatalf("members did not settle on a fair split of %d partitions in 10 rounds (each holding its share, shares differing by at most one): they hold %v", n, counts)
	return nil
}

// rank returns the rank of member among members by the byte order of
// their IDs, which decides its share (see store.MemberShare).
func rank(members []string, member string) int {
	r := 0
	for _, m := range members {
		if m < member {
			r++
		}
	}
	return r
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
	// is told its share of two.
	b := claim(t, g, "g", "b", time.Minute)
	if want := store.MemberShare(n, 2, 1); len(b.Leases) != 0 || b.Members != 2 || b.Share != want {
		t.Fatalf("second member's Claim: %d leases, %d members, share %d; want none, 2, %d", len(b.Leases), b.Members, b.Share, want)
	}
	// Another group is independent.
	if o := claim(t, g, "other", "b", time.Minute); len(o.Leases) != n {
		t.Fatalf("Claim in another group got %d partitions, want %d", len(o.Leases), n)
	}
	members := []string{"a", "b", "c"}
	got := settle(t, g, "g", members, time.Minute)
	for m, a := range got {
		if want := store.MemberShare(n, 3, rank(members, m)); a.Share != want {
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

// testGroupFairShares settles groups of several sizes, among them sizes
// where shares of ceil(partitions / members) would leave members without
// any (9 members of 64 partitions: eight of 8 cover them all) or short
// (10 members: nine of 7 and one of 1), and one more member than
// partitions, and checks each member's share.
func (s suite) testGroupFairShares(t *testing.T) {
	t.Parallel()
	_, g := openAs[store.Grouper](s, t)
	n := g.Partitions()
	for _, size := range []int{1, 2, 3, 9, 10, 12, 17, n + 1} {
		// Members join in the reverse of their IDs' order, so that the
		// order of joining does not decide the shares.
		members := make([]string, size)
		for i := range members {
			members[i] = fmt.Sprintf("m%04d", size-1-i)
		}
		group := fmt.Sprintf("fair-%d", size)
		got := settle(t, g, group, members, time.Minute)
		for m, a := range got {
			if want := store.MemberShare(n, size, rank(members, m)); a.Share != want || len(a.Leases) != want {
				t.Errorf("%d members of %d partitions: member %s holds %d with share %d, want %d", size, n, m, len(a.Leases), a.Share, want)
			}
		}
		info, err := g.Group(t.Context(), group)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range info.Partitions {
			if p.Owner == "" {
				t.Errorf("%d members of %d partitions: partition %d has no owner after settling", size, n, p.Partition)
			}
		}
	}
}

// testGroupConcurrentClaims has members claim at once, from goroutines,
// each releasing what exceeds its share and now and then leaving the
// group, and checks that no partition ever has two holders: no Claim
// returns a partition that another member holds and has not begun to
// release, a member's Claim keeps the leases it holds, and Group names as
// a partition's owner the member that held it all through the call.
func (s suite) testGroupConcurrentClaims(t *testing.T) {
	t.Parallel()
	_, g := openAs[store.Grouper](s, t)
	ctx := t.Context()
	const members, rounds = 6, 25
	// A hold is a member's hold on a partition, from the return of the
	// Claim that granted it to the end of the Release that gave it up.
	type hold struct {
		member    string
		token     int64
		releasing bool // the member has called Release
	}
	var mu sync.Mutex
	holds := map[int]*hold{}
	errs := make(chan error, members+1)
	var racers sync.WaitGroup
	for i := range members {
		m := fmt.Sprintf("racer-%d", i)
		racers.Go(func() {
			mine := map[int]*hold{}
			release := func(ps ...int) error {
				mu.Lock()
				for _, p := range ps {
					mine[p].releasing = true
				}
				mu.Unlock()
				if err := g.Release(ctx, "g", m, ps...); err != nil {
					return fmt.Errorf("Release(%s, %v): %w", m, ps, err)
				}
				mu.Lock()
				for _, p := range ps {
					if holds[p] == mine[p] {
						delete(holds, p)
					}
					delete(mine, p)
				}
				mu.Unlock()
				return nil
			}
			for round := range rounds {
				a, err := g.Claim(ctx, "g", m, time.Minute)
				if err != nil {
					errs <- fmt.Errorf("Claim(%s): %w", m, err)
					return
				}
				got := map[int]store.Lease{}
				for _, l := range a.Leases {
					got[l.Partition] = l
				}
				mu.Lock()
				for p, h := range mine {
					if l, ok := got[p]; !ok || l.Token != h.token {
						mu.Unlock()
						if !ok {
							errs <- fmt.Errorf("Claim by %s left out partition %d, which it held (token %d) and did not release", m, p, h.token)
						} else {
							errs <- fmt.Errorf("Claim by %s renewed its lease of partition %d with token %d, want its token %d", m, p, l.Token, h.token)
						}
						return
					}
				}
				for _, l := range a.Leases {
					if mine[l.Partition] != nil {
						continue
					}
					if h := holds[l.Partition]; h != nil && !h.releasing {
						mu.Unlock()
						errs <- fmt.Errorf("Claim by %s returned partition %d, which %s holds and has not released", m, l.Partition, h.member)
						return
					}
					h := &hold{member: m, token: l.Token}
					holds[l.Partition], mine[l.Partition] = h, h
				}
				mu.Unlock()
				var give []int
				switch {
				case round%8 == 7 && len(a.Leases) > 0:
					give = parts(a) // leave the group, and join again next round
				case len(a.Leases) > a.Share:
					give = parts(a)[a.Share:]
				}
				if len(give) > 0 {
					if err := release(give...); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	// Meanwhile, Group must agree with what the members hold.
	done := make(chan struct{})
	var watcher sync.WaitGroup
	checkGroup := func() error {
		mu.Lock()
		before := map[int]*hold{}
		for p, h := range holds {
			if !h.releasing {
				before[p] = h
			}
		}
		mu.Unlock()
		info, err := g.Group(ctx, "g")
		if err != nil {
			return fmt.Errorf("Group: %w", err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, p := range info.Partitions {
			if h := before[p.Partition]; h != nil && holds[p.Partition] == h && !h.releasing && p.Owner != h.member {
				return fmt.Errorf("Group says partition %d is owned by %q while %s held it all through the call", p.Partition, p.Owner, h.member)
			}
		}
		return nil
	}
	watcher.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := checkGroup(); err != nil {
				errs <- err
				return
			}
		}
	})
	racers.Wait()
	close(done)
	watcher.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	info, err := g.Group(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range info.Partitions {
		want := ""
		if h := holds[p.Partition]; h != nil {
			want = h.member
		}
		if p.Owner != want {
			t.Errorf("after the race, Group says partition %d is owned by %q; the members' claims say %q", p.Partition, p.Owner, want)
		}
	}
}

// waitUnowned waits until Group shows no partition of group owned and no
// member live: until the leases of its members have run out.
func waitUnowned(tb testing.TB, g store.Grouper, group string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := g.Group(tb.Context(), group)
		if err != nil {
			tb.Fatal(err)
		}
		owned := 0
		for _, p := range info.Partitions {
			if p.Owner != "" {
				owned++
			}
		}
		if owned == 0 && len(info.Members) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("group %s still has %d partitions owned and %d members 10s after its members stopped claiming", group, owned, len(info.Members))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testGroupRenewExpired checks the tokens of leases that ran out. A
// member that claims again before another took its partitions renews
// them, with their tokens, not taken over; a member that takes them from
// one whose leases ran out gets new tokens, taken over; and a member that
// gets them back after another held them gets new tokens again.
func (s suite) testGroupRenewExpired(t *testing.T) {
	t.Parallel()
	_, g := openAs[store.Grouper](s, t)
	ctx := t.Context()
	n := g.Partitions()
	const ttl = 100 * time.Millisecond
	a := claim(t, g, "g", "a", ttl)
	if len(a.Leases) != n {
		t.Fatalf("a got %d partitions, want %d", len(a.Leases), n)
	}
	waitUnowned(t, g, "g")
	renewed := claim(t, g, "g", "a", time.Minute)
	if !slices.Equal(renewed.Leases, a.Leases) {
		t.Fatalf("a's Claim after its leases ran out, nobody having taken them, changed them:\n%v\nwant\n%v", renewed.Leases, a.Leases)
	}
	// The leases were renewed, not only handed back.
	if b := claim(t, g, "g", "b", time.Minute); len(b.Leases) != 0 {
		t.Fatalf("b took %v after a renewed its leases for a minute", parts(b))
	}

	// In another group, b takes a's partitions when a's leases run out.
	a = claim(t, g, "h", "a", ttl)
	waitUnowned(t, g, "h")
	b := claim(t, g, "h", "b", time.Minute)
	if len(b.Leases) != n || b.Members != 1 {
		t.Fatalf("b got %d partitions with %d members after a's leases ran out, want %d and 1", len(b.Leases), b.Members, n)
	}
	for i, l := range b.Leases {
		if l.Token == a.Leases[i].Token || !l.TakenOver {
			t.Fatalf("b took partition %d from a, whose lease ran out, as %+v; want a token other than a's %d, taken over", l.Partition, l, a.Leases[i].Token)
		}
	}
	l := a.Leases[0]
	if err := g.Commit(ctx, "h", "a", store.Checkpoint{Partition: l.Partition, Token: l.Token}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("Commit by a after b took its partitions: %v, want ErrLeaseLost", err)
	}
	if err := g.Release(ctx, "h", "b"); err != nil {
		t.Fatal(err)
	}
	back := claim(t, g, "h", "a", time.Minute)
	if len(back.Leases) != n {
		t.Fatalf("a got %d partitions back after b left, want %d", len(back.Leases), n)
	}
	for i, l := range back.Leases {
		if l.Token == a.Leases[i].Token || l.Token == b.Leases[i].Token || l.TakenOver {
			t.Fatalf("a got partition %d back, released by b, as %+v; want a token other than a's %d and b's %d, not taken over", l.Partition, l, a.Leases[i].Token, b.Leases[i].Token)
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
	if n < 3 {
		return
	}
	// A Commit of partitions held and lost saves the held ones and names
	// the lost ones only.
	err = g.Commit(ctx, "g", "b",
		store.Checkpoint{Partition: 0, Token: b.Leases[0].Token, Cursor: page[2].Cursor},
		store.Checkpoint{Partition: 2, Token: b.Leases[2].Token, Cursor: page[2].Cursor})
	if !errors.As(err, &lost) || !slices.Equal(lost.Partitions, []int{0}) {
		t.Fatalf("Commit of a held and a released partition: %v, want a LeaseLostError naming partition 0", err)
	}
	info, err := g.Group(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Partitions[2].Cursor; got != page[2].Cursor {
		t.Fatalf("the held partition's checkpoint is %q after a Commit that also named a lost one, want %q", got, page[2].Cursor)
	}
	if got := info.Partitions[0].Cursor; got != page[1].Cursor {
		t.Fatalf("the lost partition's checkpoint changed to %q", got)
	}
}

func (s suite) testGroupExpiry(t *testing.T) {
	t.Parallel()
	_, g := openAs[store.Grouper](s, t)
	ctx := t.Context()
	n := g.Partitions()
	const ttl = 300 * time.Millisecond
	// The lease runs from within the claim: timed from before it, as a
	// member times its own, a claim slow to return under load cannot make
	// a takeover at the right time look early.
	start := time.Now()
	a := claim(t, g, "g", "a", ttl)
	if len(a.Leases) != n {
		t.Fatalf("a got %d partitions, want %d", len(a.Leases), n)
	}
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
		before := slices.Clone(from)
		page, err := g.ReadPartitions(tb.Context(), from, limit)
		if err != nil {
			tb.Fatalf("ReadPartitions: %v", err)
		}
		if len(page) > limit {
			tb.Fatalf("ReadPartitions(limit %d, %d partitions) = %d records", limit, len(from), len(page))
		}
		for i := range from {
			if from[i].Partition != before[i].Partition {
				tb.Fatalf("ReadPartitions changed the partition of cursor %d from %d to %d", i, before[i].Partition, from[i].Partition)
			}
		}
		for _, r := range page {
			if p := store.Partition(r.AggregateID, r.ID, g.Partitions()); !asked[p] {
				tb.Fatalf("ReadPartitions returned %s of partition %d, not asked for", r.ID, p)
			}
		}
		out = append(out, page...)
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
	// Partitions at different places, some of them at one place, in no
	// order: each gets its records after its own cursor.
	places := []int{-1, 10, 10, 99, 150, 151, 298}
	var mixed []store.PartitionCursor
	at := map[int]int{} // partition: index in all of its cursor's record, -1 for the start
	for p := n - 1; p >= 0; p -= 1 + p%2 {
		k := places[(p*5)%len(places)]
		if p%3 == 0 {
			k = 10 // most of them at one place
		}
		c := store.Cursor("")
		if k >= 0 {
			c = all[k].Cursor
		}
		mixed = append(mixed, store.PartitionCursor{Partition: p, After: c})
		at[p] = k
	}
	want = nil
	for i, r := range append(slices.Clone(all), more...) {
		if k, ok := at[store.Partition(r.AggregateID, r.ID, n)]; ok && i > k {
			want = append(want, r.ID)
		}
	}
	for _, limit := range []int{4, 1000} {
		got, _ = readPartitions(t, g, mixed, limit)
		checkIDs(t, fmt.Sprintf("ReadPartitions of partitions at different places, %d at a time", limit), got, want)
	}
	if _, err := g.ReadPartitions(ctx, []store.PartitionCursor{{Partition: n}}, 1); err == nil {
		t.Error("ReadPartitions of partition n: no error")
	}
	if _, err := g.ReadPartitions(ctx, []store.PartitionCursor{{Partition: 0, After: "bogus"}}, 1); !errors.Is(err, store.ErrInvalidCursor) {
		t.Errorf("ReadPartitions with a bogus cursor: %v, want ErrInvalidCursor", err)
	}
	// A read that fails moves no cursor, also not those it could read.
	failed := []store.PartitionCursor{{Partition: 0}, {Partition: 1 % n, After: "bogus"}}
	if _, err := g.ReadPartitions(ctx, failed, 1); err == nil || failed[0].After != "" || failed[1].After != "bogus" {
		t.Errorf("ReadPartitions with a bogus cursor = %v and left the cursors at %+v, want an error and them as they were", err, failed)
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
	page, err := g.ReadPartitions(ctx, []store.PartitionCursor{{Partition: p}}, 2)
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
