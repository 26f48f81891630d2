package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func rec(id string) store.Record {
	return store.Record{ID: id, Topic: "test.created", Kind: store.KindDomain, Time: t0,
		ContentType: "application/json", Payload: []byte(`{"id":"` + id + `"}`)}
}

// readIDs pages through the log from after until a page comes back empty
// and returns the IDs read and the cursor to continue from.
func readIDs(t *testing.T, s *pgstore.Store, q store.Query) ([]string, store.Cursor) {
	t.Helper()
	var got []string
	for {
		page, next, err := s.Read(t.Context(), q)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		for _, r := range page {
			got = append(got, r.ID)
		}
		if len(page) == 0 && next == q.After {
			return got, next
		}
		q.After = next
	}
}

// TestLateCommitNotSkipped interleaves two transactions directly with pgx:
// A appends and stays open, B appends after it and commits. A reader that
// pages by position (the naive way) skips A's event, which holds the lower
// position but commits last; Read does not.
func TestLateCommitNotSkipped(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	pool := s.Pool()

	txA, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback(context.Background())
	a := []store.Record{rec("a")}
	if err := s.AppendTx(ctx, txA, a); err != nil {
		t.Fatal(err)
	}
	txB, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := []store.Record{rec("b")}
	if err := s.AppendTx(ctx, txB, b); err != nil {
		t.Fatal(err)
	}
	if err := txB.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if a[0].Position >= b[0].Position {
		t.Fatalf("positions a=%d b=%d: the test needs A's position below B's", a[0].Position, b[0].Position)
	}

	// The naive reader: WHERE position > cursor ORDER BY position.
	naive := func(after int64) ([]string, int64) {
		rows, err := pool.Query(ctx, "SELECT id, position FROM event.events WHERE position > $1 ORDER BY position", after)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id, &after); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return ids, after
	}

	naive1, naiveCur := naive(0)
	read1, cur := readIDs(t, s, store.Query{})
	if strings.Join(naive1, ",") != "b" {
		t.Fatalf("naive reader with A open got %v, want [b]", naive1)
	}
	if len(read1) != 0 {
		t.Fatalf("Read with A open got %v, want nothing until A ends", read1)
	}

	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	naive2, _ := naive(naiveCur)
	read2, _ := readIDs(t, s, store.Query{After: cur})
	if len(naive2) != 0 {
		t.Fatalf("naive reader after A committed got %v; expected it to skip a", naive2)
	}
	if got := strings.Join(append(read1, read2...), ","); got != "a,b" {
		t.Fatalf("Read across the commit got %q, want every event once, in order: a,b", got)
	}
}

// TestOwnTransactionNotRead checks that a reader inside a transaction that
// appended does not see its own uncommitted events as readable.
func TestOwnTransactionNotRead(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if err := s.AppendTx(ctx, tx, []store.Record{rec("mine")}); err != nil {
		t.Fatal(err)
	}
	// The horizon excludes tx's own ID, so Read, on another connection,
	// and a query in tx itself both leave the event out.
	if got, _ := readIDs(t, s, store.Query{}); len(got) != 0 {
		t.Fatalf("Read got %v while the appending transaction is open", got)
	}
	var n int
	err = tx.QueryRow(ctx, `SELECT count(*) FROM event.events WHERE txid < pg_snapshot_xmin(pg_current_snapshot())`).Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("rows below the horizon inside the appending transaction: %d, %v; want 0", n, err)
	}
}

// TestOtherDatabaseDoesNotStallReaders holds a write transaction open in
// another database of the same server: readers here must not wait for it.
func TestOtherDatabaseDoesNotStallReaders(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	other, err := pgx.Connect(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []store.Record{rec("x")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := readIDs(t, s, store.Query{}); strings.Join(got, ",") != "x" {
		t.Fatalf("Read with a transaction open in another database got %v, want [x]", got)
	}
}

// TestTwoStoresKeepVersionsDense appends to the same aggregates from two
// stores with their own pools, as two processes would, both blindly and
// with optimistic concurrency.
func TestTwoStoresKeepVersionsDense(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	var stores [2]*pgstore.Store
	for i := range stores {
		s, err := pgstore.New(ctx, newPool(t, dsn))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	const workers, each = 4, 15
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for i := range 2 * workers {
		s := stores[i%2]
		wg.Go(func() {
			for j := range each {
				// Blind appends to "blind", two records at a time.
				r := []store.Record{rec(fmt.Sprintf("b-%d-%d-0", i, j)), rec(fmt.Sprintf("b-%d-%d-1", i, j))}
				r[0].AggregateID, r[1].AggregateID = "blind", "blind"
				if err := s.Append(ctx, r); err != nil {
					errs <- err
					return
				}
				// Read-modify-write on "occ": retry on conflict.
				for {
					cur, err := s.LoadAggregate(ctx, "occ", 0)
					if err != nil {
						errs <- err
						return
					}
					o := []store.Record{rec(fmt.Sprintf("o-%d-%d", i, j))}
					o[0].AggregateID = "occ"
					err = s.Append(ctx, o, store.Expect{AggregateID: "occ", Version: int64(len(cur))})
					if errors.Is(err, store.ErrVersionConflict) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					if o[0].Version != int64(len(cur))+1 {
						errs <- fmt.Errorf("append after version %d got version %d", len(cur), o[0].Version)
					}
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for agg, want := range map[string]int{"blind": 2 * workers * each * 2, "occ": 2 * workers * each} {
		recs, err := stores[0].LoadAggregate(ctx, agg, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != want {
			t.Fatalf("aggregate %s has %d records, want %d", agg, len(recs), want)
		}
		for i, r := range recs {
			if r.Version != int64(i+1) {
				t.Fatalf("aggregate %s: record %d has version %d: versions not dense", agg, i, r.Version)
			}
		}
	}
}

// TestGroupCommit blocks the writer, queues appends behind it, and checks
// that they commit in one transaction, with a conflict and a duplicate
// among them failing alone.
func TestGroupCommit(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	first := []store.Record{rec("first"), rec("dup")}
	first[0].AggregateID = "held"
	if err := s.Append(ctx, first); err != nil {
		t.Fatal(err)
	}
	// Lock the aggregate's row so that the next append to it blocks the
	// writer.
	lock := lockAggregate(t, s, "held")
	blocked := blockWriters(t, s)

	const n = 8
	batches := make([][]store.Record, n)
	results := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		batches[i] = []store.Record{rec(fmt.Sprintf("g-%d", i))}
		var expect []store.Expect
		switch i {
		case 3: // a stale expectation
			expect = []store.Expect{{AggregateID: "held", Version: 0}}
		case 5: // a stored ID with other content
			batches[i] = []store.Record{rec("dup")}
			batches[i][0].Payload = []byte(`{}`)
		}
		wg.Go(func() { results[i] = s.Append(ctx, batches[i], expect...) })
	}
	waitUntil(t, "all appends queued", func() bool { return pgstore.QueueLen(s) == n })
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for range pgstore.Inflight {
		if err := <-blocked; err != nil {
			t.Fatalf("blocked append: %v", err)
		}
	}
	for i, err := range results {
		switch i {
		case 3:
			var vc *store.VersionConflictError
			if want := int64(1 + pgstore.Inflight); !errors.As(err, &vc) || vc.Actual != want {
				t.Errorf("append %d with a stale Expect: %v, want a conflict with actual version %d", i, err, want)
			}
		case 5:
			if !errors.Is(err, store.ErrDuplicateID) {
				t.Errorf("append %d of a stored ID: %v, want ErrDuplicateID", i, err)
			}
		default:
			if err != nil {
				t.Errorf("append %d: %v", i, err)
			}
		}
	}
	var txids int
	if err := s.Pool().QueryRow(ctx, "SELECT count(DISTINCT txid) FROM event.events WHERE id LIKE 'g-%'").Scan(&txids); err != nil {
		t.Fatal(err)
	}
	if txids != 1 {
		t.Errorf("the %d queued appends committed in %d transactions, want 1", n-2, txids)
	}
}

// TestGroupCommitMaxDelay checks that with a delay the writer holds a
// lone append back for others to join, commits as soon as the group is
// full, and commits a group that does not fill once the delay has passed.
func TestGroupCommitMaxDelay(t *testing.T) {
	ctx := t.Context()
	s := open(t, pgstore.WithGroupCommit(2, time.Minute))
	first := make(chan error, 1)
	go func() { first <- s.Append(ctx, []store.Record{rec("d-1")}) }()
	// Without the delay the writer would commit it at once, alone.
	waitUntil(t, "the first append waits in the queue", func() bool { return pgstore.QueueLen(s) == 1 })
	if err := s.Append(ctx, []store.Record{rec("d-2")}); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	var txids int
	if err := s.Pool().QueryRow(ctx, "SELECT count(DISTINCT txid) FROM event.events WHERE id LIKE 'd-%'").Scan(&txids); err != nil {
		t.Fatal(err)
	}
	if txids != 1 {
		t.Errorf("two appends within the delay committed in %d transactions, want 1", txids)
	}

	const delay = 100 * time.Millisecond
	short := open(t, pgstore.WithGroupCommit(1000, delay))
	start := time.Now()
	if err := short.Append(ctx, []store.Record{rec("alone")}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < delay {
		t.Errorf("a lone append with a %v delay returned after %v", delay, took)
	}
}

// inAggregate returns rec(id) in aggregate agg.
func inAggregate(id, agg string) []store.Record {
	r := rec(id)
	r.AggregateID = agg
	return []store.Record{r}
}

// receive waits for ch, failing t after 30s.
func receive[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// TestAppendContextEndsWhileCommitting ends an Append's context while its
// group's statement waits for a row lock: Append must return at once,
// saying that the append may have been stored; the group commits for the
// other caller in it; and a retry with the same ID stores nothing more.
func TestAppendContextEndsWhileCommitting(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	if err := s.Append(ctx, append(inAggregate("h1", "held"), inAggregate("h2", "held2")...)); err != nil {
		t.Fatal(err)
	}
	lock := lockAggregate(t, s, "held")
	blocked := blockWriters(t, s)
	lock2 := lockAggregate(t, s, "held2")
	// Two appends queue behind the blocked group and form the next one,
	// which will wait for aggregate held2.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	maybe := make(chan error, 1)
	go func() { maybe <- s.Append(cctx, inAggregate("maybe", "held2")) }()
	other := make(chan error, 1)
	go func() { other <- s.Append(ctx, inAggregate("other", "held2")) }()
	waitUntil(t, "both appends queued", func() bool { return pgstore.QueueLen(s) == 2 })
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for range pgstore.Inflight {
		if err := receive(t, "the blocked append", blocked); err != nil {
			t.Fatal(err)
		}
	}
	waitForLockWait(t, s, 1)
	if n := pgstore.QueueLen(s); n != 0 {
		t.Fatalf("%d appends still queued while their group waits for the lock", n)
	}
	cancel()
	err := receive(t, "Append whose context ended", maybe)
	if !errors.Is(err, store.ErrMaybeStored) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Append whose context ended during the commit: %v, want ErrMaybeStored and context.Canceled", err)
	}
	if err := lock2.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, "the other append of the group", other); err != nil {
		t.Fatal(err)
	}
	stored, err := s.Load(ctx, "maybe")
	if err != nil {
		t.Fatalf("Load of the append the group carried: %v", err)
	}
	retry := inAggregate("maybe", "held2")
	if err := s.Append(ctx, retry); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if retry[0].Position != stored.Position || retry[0].Version != stored.Version {
		t.Errorf("retry got position %d version %d, want the stored %d, %d", retry[0].Position, retry[0].Version, stored.Position, stored.Version)
	}
	var n int
	if err := s.Pool().QueryRow(ctx, "SELECT count(*) FROM event.events WHERE id = 'maybe'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("the log holds %d records of ID maybe (%v), want 1", n, err)
	}
}

// TestAppendCancelledWhileQueued ends an Append's context while it waits
// in the queue: it is withdrawn, says it stored nothing, and stores nothing.
func TestAppendCancelledWhileQueued(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	if err := s.Append(ctx, inAggregate("h1", "held")); err != nil {
		t.Fatal(err)
	}
	lock := lockAggregate(t, s, "held")
	blocked := blockWriters(t, s)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Append(cctx, []store.Record{rec("withdrawn")}) }()
	waitUntil(t, "the append queued", func() bool { return pgstore.QueueLen(s) == 1 })
	cancel()
	err := receive(t, "Append whose context ended", done)
	if !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrMaybeStored) {
		t.Fatalf("Append cancelled while queued: %v, want context.Canceled and not ErrMaybeStored", err)
	}
	if n := pgstore.QueueLen(s); n != 0 {
		t.Errorf("the cancelled append is still queued")
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for range pgstore.Inflight {
		if err := receive(t, "the blocked append", blocked); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Load(ctx, "withdrawn"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Load of the cancelled append: %v, want ErrNotFound", err)
	}
}

// lockAggregate locks the version row of an aggregate that has records, in
// a transaction of its own, so that appends to the aggregate wait for it.
// The lock is released when the caller rolls the transaction back, or at
// the end of the test.
func lockAggregate(t *testing.T, s *pgstore.Store, id string) pgx.Tx {
	t.Helper()
	lock, err := s.Pool().Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Rollback(context.Background()) })
	if _, err := lock.Exec(t.Context(), "SELECT * FROM event.aggregates WHERE aggregate_id = $1 FOR UPDATE", id); err != nil {
		t.Fatal(err)
	}
	return lock
}

// blockWriters occupies every group-commit goroutine of s with an append
// to aggregate "held", whose row the caller has locked, and returns the
// channel that receives their results once the lock is released. Each
// append is started only when the previous one waits for the lock, so that
// each is a group of its own.
func blockWriters(t *testing.T, s *pgstore.Store) <-chan error {
	t.Helper()
	blocked := make(chan error, pgstore.Inflight)
	for i := range pgstore.Inflight {
		go func() {
			r := []store.Record{rec(fmt.Sprintf("blocked-%d", i))}
			r[0].AggregateID = "held"
			blocked <- s.Append(t.Context(), r)
		}()
		waitForLockWait(t, s, i+1)
	}
	return blocked
}

// waitForLockWait waits until n sessions of s's database wait for a lock.
// (Not asked in a transaction: that would see one snapshot of
// pg_stat_activity.)
func waitForLockWait(t *testing.T, s *pgstore.Store, n int) {
	t.Helper()
	waitUntil(t, "the writers wait for the row lock", func() bool {
		var got int
		_ = s.Pool().QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()").Scan(&got)
		return got >= n
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConcurrentMigration creates the schema from several stores at once,
// as processes starting together would.
func TestConcurrentMigration(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		pool := newPool(t, dsn)
		wg.Go(func() {
			s, err := pgstore.New(ctx, pool)
			if err == nil {
				err = s.Append(ctx, []store.Record{rec(fmt.Sprintf("m-%d", i))})
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: %v", i, err)
		}
	}
	var v string
	if err := newPool(t, dsn).QueryRow(ctx, "SELECT value FROM event.meta WHERE key = 'schema_version'").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != fmt.Sprint(pgstore.SchemaVersion) {
		t.Fatalf("schema version %s, want %d", v, pgstore.SchemaVersion)
	}
}

// TestNewerSchema refuses a schema written by a newer version.
func TestNewerSchema(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	pool := newPool(t, dsn)
	s, err := pgstore.New(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := pool.Exec(ctx, "UPDATE event.meta SET value = '99' WHERE key = 'schema_version'"); err != nil {
		t.Fatal(err)
	}
	_, err = pgstore.New(ctx, pool)
	if err == nil {
		t.Fatal("New on a schema at version 99 succeeded")
	}
	for _, want := range []string{"99", fmt.Sprintf("version %d", pgstore.SchemaVersion)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestSchemaOption keeps two stores in one database apart and refuses bad
// schema names.
func TestSchemaOption(t *testing.T) {
	ctx := t.Context()
	pool := newPool(t, pgtest.DSN(t))
	var stores []*pgstore.Store
	for _, name := range []string{"one", "Two"} {
		s, err := pgstore.New(ctx, pool, pgstore.WithSchema(name))
		if err != nil {
			t.Fatalf("New with schema %s: %v", name, err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	if err := stores[0].Append(ctx, []store.Record{rec("in-one")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := readIDs(t, stores[1], store.Query{}); len(got) != 0 {
		t.Fatalf("store in schema Two reads %v, written to schema one", got)
	}
	if _, err := stores[1].Load(ctx, "in-one"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Load from the other schema: %v, want ErrNotFound", err)
	}
	// A cursor of one store is refused by the other.
	_, cur := readIDs(t, stores[0], store.Query{})
	if _, _, err := stores[1].Read(ctx, store.Query{After: cur}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Fatalf("Read with another store's cursor: %v, want ErrInvalidCursor", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM "Two".events`).Scan(&n); err != nil || n != 0 {
		t.Fatalf(`"Two".events holds %d rows (%v), want 0`, n, err)
	}

	for _, bad := range []string{"", "1st", "a-b", "a b", `x"y`, "pg_events", strings.Repeat("a", 64)} {
		if _, err := pgstore.New(ctx, pool, pgstore.WithSchema(bad)); err == nil || !strings.Contains(err.Error(), "schema") {
			t.Errorf("New with schema %q: %v, want an error naming the schema", bad, err)
		}
	}
	for _, c := range []struct {
		opt  pgstore.Option
		want string
	}{
		{pgstore.WithMaxPayloadSize(0), "max payload size 0"},
		{pgstore.WithGroupCommit(0, 0), "max batch 0"},
		{pgstore.WithGroupCommit(-1, 0), "max batch -1"},
		{pgstore.WithGroupCommit(10, -time.Millisecond), "max delay -1ms"},
	} {
		if _, err := pgstore.New(ctx, pool, c.opt); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New with a bad option: %v, want an error containing %q", err, c.want)
		}
	}
}

// TestPatternTranslation checks that LIKE and regular expression
// metacharacters in topics are taken literally.
func TestPatternTranslation(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	topics := []string{"user_1.a", "userX1.a", "a%b.c", "azb.c", "a+b.c", "aab.c", "x.(y)", "x.y", "dé.jà", "dé.jà.vu"}
	for i, tp := range topics {
		r := rec(fmt.Sprintf("t-%d", i))
		r.Topic = tp
		if err := s.Append(ctx, []store.Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	for _, pattern := range []string{"user_1.*", "user_1.>", "a%b.*", "a+b.>", "*.(y)", "x.*", "dé.*", "dé.>", "*.*", ">", "*.jà.vu"} {
		var want []string
		for _, tp := range topics {
			if store.MatchTopic(pattern, tp) {
				want = append(want, tp)
			}
		}
		var got []string
		q := store.Query{Topic: pattern}
		for r, err := range store.All(ctx, s, q) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, r.Topic)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("pattern %q (regexp %s) read %v, want %v", pattern, pgstore.TopicRegexp(pattern), got, want)
		}
	}
}

// TestFilteredReadMovesCursor checks that a filtered read that finds
// nothing still moves its cursor past the records it looked at.
func TestFilteredReadMovesCursor(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	var recs []store.Record
	for i := range 20 {
		recs = append(recs, rec(fmt.Sprintf("f-%d", i)))
	}
	if err := s.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	page, cur, err := s.Read(ctx, store.Query{Topic: "other.*", Limit: 5})
	if err != nil || len(page) != 0 {
		t.Fatalf("Read = %v, %v; want no records", page, err)
	}
	if cur == "" {
		t.Fatal("cursor did not move past the records that did not match")
	}
	more := []store.Record{rec("late")}
	more[0].Topic = "other.created"
	if err := s.Append(ctx, more); err != nil {
		t.Fatal(err)
	}
	got, _ := readIDs(t, s, store.Query{After: cur})
	if strings.Join(got, ",") != "late" {
		t.Fatalf("reading on from the moved cursor got %v, want [late]", got)
	}
}

// TestFilteredReadScansInChunks checks that a filtered read scans a bounded
// number of records per call, returning a cursor past those it scanned, and
// that paging on still finds every match once and in order.
func TestFilteredReadScansInChunks(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	pgstore.SetMinScan(s, 10)
	var recs []store.Record
	for i := range 45 {
		r := rec(fmt.Sprintf("c-%02d", i))
		if i == 3 || i == 25 || i == 26 || i == 44 {
			r.Topic = "rare.found"
		}
		recs = append(recs, r)
	}
	if err := s.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	q := store.Query{Topic: "rare.>", Limit: 1}
	var got []string
	calls := 0
	for ; calls < 100; calls++ {
		page, next, err := s.Read(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 1 {
			t.Fatalf("Read with Limit 1 returned %d records", len(page))
		}
		for _, r := range page {
			got = append(got, r.ID)
		}
		if next == q.After {
			break
		}
		q.After = next
	}
	if strings.Join(got, ",") != "c-03,c-25,c-26,c-44" {
		t.Fatalf("paged filtered read got %v, want [c-03 c-25 c-26 c-44]", got)
	}
	// Scans of 10 records: [0,10) finds c-03 at once; then the rest of
	// the log in at least three more scans, one of them empty.
	if calls < 5 {
		t.Fatalf("read 45 records in %d calls with scans of 10: the scan is not bounded", calls)
	}
}

// TestNotify checks that an append by another store (another process)
// wakes a watcher, and that closing the store ends the watch.
func TestNotify(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	watcher, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	writer, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()

	ch, err := watcher.Notify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	ch2, err := watcher.Notify(wctx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("signal before any append")
	default:
	}
	if err := writer.Append(ctx, []store.Record{rec("w")}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []<-chan struct{}{ch, ch2} {
		select {
		case <-c:
		case <-time.After(10 * time.Second):
			t.Fatal("no signal within 10s of an append")
		}
	}
	// An outbox transaction signals at commit, not before.
	tx, err := writer.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := writer.AppendTx(ctx, tx, []store.Record{rec("w2")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("signal before the transaction committed")
	case <-time.After(100 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no signal within 10s of a commit")
	}

	cancel()
	for range ch2 { // closed once its context ends
	}
	watcher.Close()
	for range ch { // closed by Close
	}
	if _, err := watcher.Notify(ctx); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Notify after Close: %v, want ErrClosed", err)
	}
}

// TestNotifyAfterRestart checks that a watch outlives a crash of the
// server: it reconnects and then signals at once, since appends committed
// while it was away went unnoticed, and signals appends again from then on.
func TestNotifyAfterRestart(t *testing.T) {
	ctx := t.Context()
	srv := pgtest.NewServer(t)
	dsn := srv.DSN()
	watcher, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	writer, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	ch, err := watcher.Notify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	signalled := func(what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(15 * time.Second):
			t.Fatalf("no signal within 15s %s", what)
		}
	}
	if err := writer.Append(ctx, []store.Record{rec("before")}); err != nil {
		t.Fatal(err)
	}
	signalled("of an append")

	if err := srv.Restart(ctx, nil); err != nil {
		t.Fatal(err)
	}
	signalled("of the restart, though the watch could not know what was appended meanwhile")
	// The signal came once the watch LISTENs again, so this append's
	// NOTIFY reaches it. The writer's first attempts may meet connections
	// of its pool that the crash cut.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := writer.Append(ctx, []store.Record{rec("after")})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("append after the restart: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	signalled("of an append after the restart")
}

// TestAppendWhileServerDown checks that an append that cannot connect to
// the server fails as one that stored nothing, not as one whose outcome
// is unknown: nothing was sent.
func TestAppendWhileServerDown(t *testing.T) {
	ctx := t.Context()
	srv := pgtest.NewServer(t)
	s, err := pgstore.Open(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var appendErr error
	if err := srv.Restart(ctx, func() {
		s.Pool().Reset() // no connection of before the crash to try
		appendErr = s.Append(ctx, []store.Record{rec("down")})
	}); err != nil {
		t.Fatal(err)
	}
	if appendErr == nil {
		t.Fatal("append while the server was down succeeded")
	}
	if errors.Is(appendErr, store.ErrMaybeStored) {
		t.Fatalf("append that could not connect: %v; want an error that does not match store.ErrMaybeStored", appendErr)
	}
	if _, err := s.Load(ctx, "down"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Load of the record whose append failed: %v, want store.ErrNotFound", err)
	}
}

// TestNotifyAgainAfterHiddenRecords checks that a reader woken by an
// append's signal, whose read finds the record hidden behind an older
// transaction still open, is signalled again soon after that transaction
// ends (which sends no signal of its own), rather than at its next poll.
func TestNotifyAgainAfterHiddenRecords(t *testing.T) {
	for _, tc := range []struct {
		name string
		read func(s *pgstore.Store) ([]store.Record, error)
	}{
		{"Read", func(s *pgstore.Store) ([]store.Record, error) {
			recs, _, err := s.Read(t.Context(), store.Query{})
			return recs, err
		}},
		{"ReadPartitions", func(s *pgstore.Store) ([]store.Record, error) {
			recs, err := s.ReadPartitions(t.Context(), []store.PartitionCursor{{Partition: 0}}, 10)
			return recs, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			s := open(t, pgstore.WithPartitions(1))
			ch, err := s.Notify(ctx)
			if err != nil {
				t.Fatal(err)
			}
			older, err := s.Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer older.Rollback(context.Background())
			if _, err := older.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
				t.Fatal(err)
			}
			if err := s.Append(ctx, []store.Record{rec("hidden")}); err != nil {
				t.Fatal(err)
			}
			// A reader that reads on each signal: the append's, then those
			// its reads that find the record hidden bring about. The older
			// transaction ends after three.
			hidden := 0
			for {
				select {
				case <-ch:
				case <-time.After(5 * time.Second):
					t.Fatalf("no signal within 5s, after %d reads that found the record hidden (the older transaction ended: %v)", hidden, hidden >= 3)
				}
				recs, err := tc.read(s)
				if err != nil {
					t.Fatal(err)
				}
				if len(recs) == 1 {
					if hidden < 3 {
						t.Fatalf("read the record while an older transaction was open")
					}
					break
				}
				if hidden++; hidden == 3 {
					if err := older.Rollback(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}

// TestClosePendingAppends closes the store while appends wait behind a
// blocked writer: each gets its result or ErrClosed, and nothing leaks.
func TestClosePendingAppends(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	first := []store.Record{rec("first")}
	first[0].AggregateID = "held"
	if err := s.Append(ctx, first); err != nil {
		t.Fatal(err)
	}
	lock := lockAggregate(t, s, "held")
	const n = 5
	blocked := blockWriters(t, s)
	errs := make(chan error, n)
	for i := 1; i < n; i++ {
		go func() {
			r := []store.Record{rec(fmt.Sprintf("p-%d", i))}
			r[0].AggregateID = "held"
			errs <- s.Append(ctx, r)
		}()
	}
	waitUntil(t, "appends queued behind the blocked ones", func() bool { return pgstore.QueueLen(s) == n-1 })
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	for range n - 1 {
		if err := <-errs; !errors.Is(err, store.ErrClosed) {
			t.Errorf("queued append during Close: %v, want ErrClosed", err)
		}
	}
	select {
	case <-closed:
		t.Fatal("Close returned while a group commit was still running")
	case <-time.After(50 * time.Millisecond):
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for range pgstore.Inflight {
		if err := <-blocked; err != nil {
			t.Errorf("an append under way during Close: %v, want its result", err)
		}
	}
	<-closed
	if err := s.Append(ctx, []store.Record{rec("after")}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
}

// A read at the end of the log, which a durable subscription makes on
// every poll, allocates no page for the records it does not find.
func TestEmptyReadAllocatesNoPage(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	if err := s.Append(ctx, []store.Record{rec("only")}); err != nil {
		t.Fatal(err)
	}
	recs, end, err := s.Read(ctx, store.Query{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("Read = %d records, %v", len(recs), err)
	}
	const reads = 50
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range reads {
		if recs, _, err := s.Read(ctx, store.Query{After: end}); err != nil || len(recs) != 0 {
			t.Fatalf("Read at the end = %d records, %v", len(recs), err)
		}
	}
	runtime.ReadMemStats(&after)
	// A page of DefaultReadLimit records is about 90 KB; the query itself
	// allocates a few KB.
	if per := (after.TotalAlloc - before.TotalAlloc) / reads; per > 16<<10 {
		t.Errorf("a read that finds nothing allocates %d bytes", per)
	}
}

// countWrites wraps cfg's dialer so that n counts what its connections
// send: each is one flight of messages to the server, which answers it
// before the next when the client waits for the answer, as an append does.
func countWrites(cfg *pgx.ConnConfig, n *atomic.Int64) {
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return writeCounter{c, n}, nil
	}
}

type writeCounter struct {
	net.Conn
	n *atomic.Int64
}

func (w writeCounter) Write(p []byte) (int, error) {
	w.n.Add(1)
	return w.Conn.Write(p)
}

// An append in the caller's transaction, the outbox, costs one round trip
// when its IDs are new; a retry of stored IDs still succeeds, and a failed
// append leaves the transaction usable.
func TestAppendTxRoundTrips(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	s, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	countWrites(cfg, &writes)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	// The first call on a connection prepares the statement (one round
	// trip more); every other takes one.
	for i := range 4 {
		before := writes.Load()
		if err := s.AppendTx(ctx, tx, []store.Record{rec(fmt.Sprint("tx-", i))}, store.Expect{AggregateID: "none-" + fmt.Sprint(i), Version: 0}); err != nil {
			t.Fatal(err)
		}
		if n := writes.Load() - before; n != 1 && (i > 0 || n != 2) {
			t.Errorf("AppendTx %d took %d round trips, want 1 (2 for the first)", i, n)
		}
	}
	retry := []store.Record{rec("tx-1")}
	if err := s.AppendTx(ctx, tx, retry); err != nil || retry[0].Position == 0 {
		t.Fatalf("AppendTx of a stored ID = %v (position %d), want its stored position", err, retry[0].Position)
	}
	bad := rec("tx-1")
	bad.Topic = "other.topic"
	if err := s.AppendTx(ctx, tx, []store.Record{bad}); !errors.Is(err, store.ErrDuplicateID) {
		t.Fatalf("AppendTx of a stored ID with other content = %v, want ErrDuplicateID", err)
	}
	agg := rec("tx-agg")
	agg.AggregateID = "a-1"
	if err := s.AppendTx(ctx, tx, []store.Record{agg}, store.Expect{AggregateID: "a-1", Version: 5}); !errors.Is(err, store.ErrVersionConflict) {
		t.Fatalf("AppendTx with a stale expectation = %v, want ErrVersionConflict", err)
	}
	if err := s.AppendTx(ctx, tx, []store.Record{rec("tx-after")}); err != nil {
		t.Fatalf("AppendTx after failed ones: %v (the transaction should still be usable)", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"tx-0", "tx-1", "tx-2", "tx-after"} {
		if _, err := s.Load(ctx, id); err != nil {
			t.Errorf("Load(%s) after commit: %v", id, err)
		}
	}
	if _, err := s.Load(ctx, "tx-agg"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Load of the refused record = %v, want ErrNotFound", err)
	}
}

// TestNotifyAfterCommit checks that group commits NOTIFY after they have
// committed, not in their transactions (where PostgreSQL would commit them
// one at a time), and that the NOTIFYs of commits made while one is sent
// coalesce into the next.
func TestNotifyAfterCommit(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	s, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hold := make(chan struct{})
	sent := pgstore.HoldNotify(s, hold)
	listener, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(context.Background())
	if _, err := listener.Exec(ctx, "LISTEN event_appended"); err != nil {
		t.Fatal(err)
	}
	const commits = 20
	for i := range commits {
		if err := s.Append(ctx, []store.Record{rec(fmt.Sprintf("n-%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	// Every commit has returned; a NOTIFY in any of them would be on its
	// way to the listener now.
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	n, err := listener.WaitForNotification(wctx)
	cancel()
	if err == nil {
		t.Fatalf("notification %+v arrived while the notifier was held: a commit sent it", n)
	}
	// The first NOTIFY waits since the first commit; the other commits
	// are announced by one more.
	for range 2 {
		hold <- struct{}{}
	}
	for i := range 2 {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := listener.WaitForNotification(wctx)
		cancel()
		if err != nil {
			t.Fatalf("notification %d of 2 after releasing the notifier: %v", i+1, err)
		}
	}
	close(hold)
	s.Close() // sends what is still owed, if anything
	if got := sent.Load(); got != 2 {
		t.Fatalf("%d NOTIFYs for %d commits made while the first was held, want 2", got, commits)
	}
}

// TestWithoutListen checks that a store opened WithoutListen refuses to
// Notify, opening no connection, and that its appends still wake a store
// that listens.
func TestWithoutListen(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	quiet, err := pgstore.Open(ctx, dsn, pgstore.WithoutListen())
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	listener, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	conns := func() int {
		t.Helper()
		var n int
		if err := listener.Pool().QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := conns()
	if ch, err := quiet.Notify(ctx); !errors.Is(err, errors.ErrUnsupported) || ch != nil {
		t.Fatalf("Notify of a store WithoutListen = %v, %v; want no channel and an error matching errors.ErrUnsupported", ch, err)
	}
	if after := conns(); after != before {
		t.Fatalf("Notify of a store WithoutListen opened a connection: %d before, %d after", before, after)
	}
	ch, err := listener.Notify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := quiet.Append(ctx, []store.Record{rec("q")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("an append by a store WithoutListen did not wake a listener within 10s")
	}
	quiet.Close()
	if _, err := quiet.Notify(ctx); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Notify after Close: %v, want ErrClosed", err)
	}
}

// TestMetadataEncoding checks that the metadata the append statement gets
// is JSON that decodes to the map it came from, whatever the text holds,
// and that PostgreSQL stores it as that map.
func TestMetadataEncoding(t *testing.T) {
	m := map[string]string{
		"plain":           "value",
		`quote"key`:       `a "quoted" value`,
		`back\slash`:      `C:\path\`,
		"controls":        "tab\tnewline\ncr\rbell\x07unit\x1f",
		"unicode ключ":    "значение ✓ \u2028\u2029 😀",
		"html":            "<a href='x'>&amp;</a>",
		"":                "empty key",
		"empty value":     "",
		"del and others ": "\x7f~",
	}
	enc := pgstore.AppendMetadata(nil, m)
	var got map[string]string
	if err := json.Unmarshal(enc, &got); err != nil {
		t.Fatalf("appendMetadata wrote %s, not JSON: %v", enc, err)
	}
	if !maps.Equal(got, m) {
		t.Fatalf("appendMetadata wrote %s, decoding to %q, want %q", enc, got, m)
	}

	s := open(t)
	r := rec("meta")
	r.Metadata = m
	if err := s.Append(t.Context(), []store.Record{r}); err != nil {
		t.Fatal(err)
	}
	stored, err := s.Load(t.Context(), "meta")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(stored.Metadata, m) {
		t.Errorf("stored metadata %q, want %q", stored.Metadata, m)
	}
}

// TestAppendAfterStatementsLost checks that appends go on after the
// server forgets the connection's prepared statements (DEALLOCATE ALL, as
// a pooler's reset does): a group commit at once, and an append in the
// caller's transaction from the next transaction on.
func TestAppendAfterStatementsLost(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := oneConnStore(t)
	reset := func() {
		t.Helper()
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		if _, err := conn.Conn().PgConn().Exec(ctx, "DEALLOCATE ALL").ReadAll(); err != nil {
			t.Fatalf("DEALLOCATE ALL: %v", err)
		}
	}
	inTx := func(id string) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			return s.AppendTx(ctx, tx, []store.Record{rec(id)})
		})
	}
	for round := range 3 {
		if err := s.Append(ctx, []store.Record{rec(fmt.Sprint("a", round))}); err != nil {
			t.Fatalf("round %d: Append: %v", round, err)
		}
		if err := inTx(fmt.Sprint("tx", round)); err != nil {
			t.Fatalf("round %d: AppendTx: %v", round, err)
		}
		reset()
		if err := s.Append(ctx, []store.Record{rec(fmt.Sprint("b", round))}); err != nil {
			t.Fatalf("round %d: Append after the reset: %v", round, err)
		}
		reset()
		// The first after the reset may fail; the one after must not.
		if err := inTx(fmt.Sprint("tx-lost", round)); err != nil {
			t.Logf("round %d: AppendTx after the reset: %v", round, err)
		}
		if err := inTx(fmt.Sprint("tx-again", round)); err != nil {
			t.Fatalf("round %d: AppendTx after a failed one: %v", round, err)
		}
	}
}

// TestAppendTxOnConnectionOfOtherMode checks AppendTx in a transaction on
// a connection of the caller's own that prepares statements, while the
// store's pool does not (as set up for a pooler): after the server forgets
// the connection's statements, the next transaction appends again.
func TestAppendTxOnConnectionOfOtherMode(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := pgstore.New(ctx, pool)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	conn, err := pgx.Connect(ctx, dsn) // the default mode: it prepares
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	inTx := func(id string) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			return s.AppendTx(ctx, tx, []store.Record{rec(id)})
		})
	}
	for round := range 3 {
		if err := inTx(fmt.Sprint("own", round)); err != nil {
			t.Fatalf("round %d: AppendTx: %v", round, err)
		}
		if _, err := conn.PgConn().Exec(ctx, "DEALLOCATE ALL").ReadAll(); err != nil {
			t.Fatalf("DEALLOCATE ALL: %v", err)
		}
		// The first after the reset may fail; the one after must not.
		if err := inTx(fmt.Sprint("own-lost", round)); err != nil {
			t.Logf("round %d: AppendTx after the reset: %v", round, err)
		}
		if err := inTx(fmt.Sprint("own-again", round)); err != nil {
			t.Fatalf("round %d: AppendTx after a failed one: %v", round, err)
		}
	}
}
