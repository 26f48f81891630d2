package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

func (s suite) testOutbox(t *testing.T) {
	s.needBegin(t)
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	rec := func(id string) []store.Record { return inAggregate("A", []store.Record{newRecord(id)}) }

	mustAppend(t, st, rec("o0"))
	_, mark, err := st.Read(ctx, store.Query{})
	if err != nil {
		t.Fatal(err)
	}

	// Rolled back: nothing of it is stored, and readers move on.
	tx := s.begin(t, st)
	rolled := rec("o1")
	if err := tx.Append(ctx, rolled); err != nil {
		t.Fatalf("Tx.Append: %v", err)
	}
	if rolled[0].Version != 2 || rolled[0].Position <= 0 {
		t.Fatalf("Tx.Append wrote back version %d position %d, want version 2 and a position", rolled[0].Version, rolled[0].Position)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if _, err := st.Load(ctx, "o1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Load of a rolled-back event = %v, want ErrNotFound", err)
	}

	// Committed: stored in order with the rest, versions continuing.
	tx = s.begin(t, st)
	committed := rec("o2")
	if err := tx.Append(ctx, committed, store.Expect{AggregateID: "A", Version: 1}); err != nil {
		t.Fatalf("Tx.Append with Expect A@1: %v", err)
	}
	second := []store.Record{newRecord("o3"), newRecord("o4")}
	if err := tx.Append(ctx, second); err != nil {
		t.Fatalf("second Tx.Append in one transaction: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	after := rec("o5")
	mustAppend(t, st, after, store.Expect{AggregateID: "A", Version: 2})
	if committed[0].Version != 2 || after[0].Version != 3 {
		t.Fatalf("versions o2=%d o5=%d, want 2, 3", committed[0].Version, after[0].Version)
	}
	checkIDs(t, "log", readAll(t, st, store.Query{}), []string{"o0", "o2", "o3", "o4", "o5"})
	checkIDs(t, "read on past a rolled-back transaction", readAll(t, st, store.Query{After: mark}), []string{"o2", "o3", "o4", "o5"})
	got, err := st.Load(ctx, "o2")
	if err != nil {
		t.Fatal(err)
	}
	want := committed[0]
	checkRecord(t, "event appended in a transaction", got, want)

	// A failed expectation inside a transaction reports a conflict.
	tx = s.begin(t, st)
	err = tx.Append(ctx, rec("o6"), store.Expect{AggregateID: "A", Version: 1})
	checkErr(t, "Tx.Append with a stale Expect", err, store.ErrVersionConflict)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatalf("Rollback after a conflict: %v", err)
	}
	// And bad input is refused.
	tx = s.begin(t, st)
	err = tx.Append(ctx, nil)
	checkErr(t, "Tx.Append of an empty batch", err, store.ErrInvalidRecord)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	checkIDs(t, "log", readAll(t, st, store.Query{}), []string{"o0", "o2", "o3", "o4", "o5"})
}

// pager follows a store the way a subscription does: it reads page after
// page from its cursor and remembers every record it got.
type pager struct {
	st    store.Store
	limit int
	after store.Cursor
	got   []store.Record
}

// drain reads until a page comes back empty.
func (p *pager) drain(ctx context.Context) error {
	for {
		page, next, err := p.st.Read(ctx, store.Query{After: p.after, Limit: p.limit})
		if err != nil {
			return err
		}
		p.got = append(p.got, page...)
		if len(page) == 0 && next == p.after {
			return nil
		}
		p.after = next
	}
}

// partitionPager follows every partition of a Grouper the way a group's
// only member does: it reads them all from their cursors, which each read
// moves on, and remembers every record it got.
type partitionPager struct {
	g     store.Grouper
	limit int
	from  []store.PartitionCursor
	got   []store.Record
}

func newPartitionPager(g store.Grouper, limit int) *partitionPager {
	p := &partitionPager{g: g, limit: limit}
	for i := range g.Partitions() {
		p.from = append(p.from, store.PartitionCursor{Partition: i})
	}
	return p
}

// drain reads until a page comes back empty.
func (p *partitionPager) drain(ctx context.Context) error {
	for {
		page, err := p.g.ReadPartitions(ctx, p.from, p.limit)
		if err != nil {
			return err
		}
		p.got = append(p.got, page...)
		if len(page) == 0 {
			return nil
		}
	}
}

// checkExactlyOnce fails unless the reader saw every record of the log
// once, in the log's order, and the log holds exactly the committed IDs.
func checkExactlyOnce(t *testing.T, st store.Store, read []store.Record, committed map[string]bool) {
	t.Helper()
	final := readAll(t, st, store.Query{})
	seen := make(map[string]int, len(read))
	for i, r := range read {
		if j, dup := seen[r.ID]; dup {
			t.Fatalf("reader got %s twice: at read %d and %d", r.ID, j, i)
		}
		seen[r.ID] = i
	}
	for _, r := range final {
		if !committed[r.ID] {
			t.Fatalf("log holds %s, which was not committed", r.ID)
		}
		if _, ok := seen[r.ID]; !ok {
			t.Fatalf("reader skipped %s (position %d): it committed after the reader passed its position", r.ID, r.Position)
		}
	}
	if len(final) != len(committed) {
		var missing []string
		for id := range committed {
			if !slices.ContainsFunc(final, func(r store.Record) bool { return r.ID == id }) {
				missing = append(missing, id)
			}
		}
		t.Fatalf("log holds %d records, %d were committed; missing %v", len(final), len(committed), missing)
	}
	if len(read) != len(final) || !slices.Equal(ids(read), ids(final)) {
		t.Fatalf("reader's order differs from the log's:\nreader %v\nlog    %v", ids(read), ids(final))
	}
}

// testGapFree holds a transaction open while other appends commit after
// it, reads in between, then commits: the reader must see every event
// exactly once.
func (s suite) testGapFree(t *testing.T) {
	s.needBegin(t)
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	committed := map[string]bool{}
	mustAppend(t, st, []store.Record{newRecord("g0")})
	committed["g0"] = true
	reader := &pager{st: st, limit: 2}
	if err := reader.drain(ctx); err != nil {
		t.Fatal(err)
	}

	slow := s.begin(t, st)
	if err := slow.Append(ctx, []store.Record{newRecord("slow-1"), newRecord("slow-2")}); err != nil {
		t.Fatalf("Tx.Append: %v", err)
	}
	// Appends that start after the open transaction took its positions. A
	// store with a single writer blocks them until the transaction ends;
	// others commit them now, with later positions.
	fast := make(chan error, 1)
	go func() {
		err := st.Append(ctx, []store.Record{newRecord("fast-1")})
		if err == nil {
			err = st.Append(ctx, []store.Record{newRecord("fast-2"), newRecord("fast-3")})
		}
		fast <- err
	}()
	fastDone := false
	select {
	case err := <-fast:
		if err != nil {
			t.Fatalf("Append while a transaction is open: %v", err)
		}
		fastDone = true
	case <-time.After(500 * time.Millisecond):
		// A single writer: fast appends wait for the transaction.
	}
	if err := reader.drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := slow.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if !fastDone {
		if err := waitFor(t, "appends blocked by the transaction", fast, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"slow-1", "slow-2", "fast-1", "fast-2", "fast-3"} {
		committed[id] = true
	}
	if err := reader.drain(ctx); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, st, reader.got, committed)
}

// stressRounds is how many times the randomized ordering test runs; the
// STORETEST_STRESS environment variable raises it.
func stressRounds() int {
	if n, err := strconv.Atoi(os.Getenv("STORETEST_STRESS")); err == nil && n > 0 {
		return n
	}
	if testing.Short() {
		return 1
	}
	return 3
}

// testGapFreeRandom runs writers that commit plain appends and transactions
// of random length in random interleavings, and one reader that follows the
// log while they write. When all is done the reader must have seen the
// log exactly, in its order.
func (s suite) testGapFreeRandom(t *testing.T) {
	s.needBegin(t)
	t.Parallel()
	for round := range stressRounds() {
		st := s.open(t)
		s.gapFreeRound(t, st, round)
		if t.Failed() {
			return
		}
	}
}

func (s suite) gapFreeRound(t *testing.T, st store.Store, round int) {
	t.Helper()
	ctx := t.Context()
	const writers, ops = 6, 15
	var (
		mu        sync.Mutex
		committed = map[string]bool{}
		done      atomic.Bool
		wg        sync.WaitGroup
	)
	for w := range writers {
		rng := rand.New(rand.NewPCG(uint64(round), uint64(w)))
		wg.Go(func() {
			for op := range ops {
				recs := newRecords(fmt.Sprintf("w%d-%d", w, op), 1+rng.IntN(3))
				if rng.IntN(3) > 0 {
					recs = inAggregate(fmt.Sprintf("agg-%d", rng.IntN(3)), recs)
				}
				if rng.IntN(5) < 2 {
					if err := st.Append(ctx, recs); err != nil {
						t.Errorf("Append: %v", err)
						return
					}
				} else {
					tx := s.h.Begin(ctx, t, st)
					err := tx.Append(ctx, recs)
					for errors.Is(err, store.ErrTxConflict) {
						// A later transaction appended to the aggregate
						// first: run this one again.
						_ = tx.Rollback(ctx)
						tx = s.h.Begin(ctx, t, st)
						err = tx.Append(ctx, recs)
					}
					if err != nil {
						t.Errorf("Tx.Append: %v", err)
						_ = tx.Rollback(ctx)
						return
					}
					// Hold the transaction open for a while so that others
					// commit around it.
					time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
					if rng.IntN(8) == 0 {
						if err := tx.Rollback(ctx); err != nil {
							t.Errorf("Rollback: %v", err)
							return
						}
						continue
					}
					if err := tx.Commit(ctx); err != nil {
						t.Errorf("Commit: %v", err)
						return
					}
				}
				mu.Lock()
				for _, r := range recs {
					committed[r.ID] = true
				}
				mu.Unlock()
			}
		})
	}
	// One reader follows the log with Read; on a Grouper, another follows
	// every partition with ReadPartitions, as a group's only member does.
	follow := func(drain func(context.Context) error, out chan<- error) {
		for {
			// Once the writers are done, one more drain sees the rest.
			last := done.Load()
			if err := drain(ctx); err != nil {
				out <- err
				return
			}
			if last {
				out <- nil
				return
			}
			time.Sleep(200 * time.Microsecond) // poll interval
		}
	}
	readerDone := make(chan error, 1)
	reader := &pager{st: st, limit: 1 + round%5}
	go follow(reader.drain, readerDone)
	var member *partitionPager
	memberDone := make(chan error, 1)
	if g, ok := st.(store.Grouper); ok {
		member = newPartitionPager(g, 1+(round+2)%5)
		go follow(member.drain, memberDone)
	}
	wg.Wait()
	done.Store(true)
	if err := waitFor(t, "reader finishing", readerDone, time.Minute); err != nil {
		t.Fatalf("reader: %v", err)
	}
	if member != nil {
		if err := waitFor(t, "partition reader finishing", memberDone, time.Minute); err != nil {
			t.Fatalf("partition reader: %v", err)
		}
	}
	if t.Failed() {
		return
	}
	checkExactlyOnce(t, st, reader.got, committed)
	if member != nil {
		t.Run("ReadPartitions", func(t *testing.T) { checkExactlyOnce(t, st, member.got, committed) })
	}
	// Each aggregate's records come in the log's order by version, also
	// when transactions appended to it concurrently.
	last := map[string]int64{}
	for _, r := range reader.got {
		if r.AggregateID == "" {
			continue
		}
		if v := last[r.AggregateID]; r.Version != v+1 {
			t.Fatalf("record %s of aggregate %s at version %d comes after version %d in the log", r.ID, r.AggregateID, r.Version, v)
		}
		last[r.AggregateID] = r.Version
	}
}
