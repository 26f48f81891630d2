package pgstore_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
)

// checkAggregateOrder fails unless every aggregate's records come in the
// log's order by increasing version.
func checkAggregateOrder(t *testing.T, s *pgstore.Store) int {
	t.Helper()
	last := map[string]int64{}
	n := 0
	for r, err := range store.All(t.Context(), s, store.Query{Limit: 1000}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if r.AggregateID == "" {
			continue
		}
		if v := last[r.AggregateID]; r.Version != v+1 {
			t.Fatalf("record %s of aggregate %s at version %d comes after version %d in the log", r.ID, r.AggregateID, r.Version, v)
		}
		last[r.AggregateID] = r.Version
	}
	return n
}

// Stores in several processes append to the same aggregates, each batch
// touching several of them: the log must still list each aggregate's
// records in version order. A transaction that takes its ID, then waits
// for an aggregate's lock held by one that took a later ID, must not put
// its record of that aggregate before the other's.
func TestAggregateOrderAcrossStores(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	var stores [3]*pgstore.Store
	schema := fmt.Sprintf("order_stores_%d", time.Now().UnixNano()) // new for each run of the test
	for i := range stores {
		s, err := pgstore.New(ctx, newPool(t, dsn), pgstore.WithSchema(schema))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	const workers, each, aggs = 12, 40, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		s := stores[i%len(stores)]
		wg.Go(func() {
			for j := range each {
				var batch []store.Record
				for k := range 3 {
					r := rec(fmt.Sprintf("r-%d-%d-%d", i, j, k))
					r.AggregateID = fmt.Sprintf("agg-%d", (i+j+k)%aggs)
					batch = append(batch, r)
				}
				if err := s.Append(ctx, batch); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := checkAggregateOrder(t, stores[0]); n != workers*each*3 {
		t.Fatalf("%d records in the log, want %d", n, workers*each*3)
	}
}

// A caller's transaction that took its ID before another transaction
// appended to an aggregate and committed cannot append to that aggregate:
// its record would sort before the other's, at a later version. It fails
// as a serialization failure, and succeeds when retried in a new
// transaction.
func TestAppendTxAfterLaterTransaction(t *testing.T) {
	ctx := t.Context()
	pool := newPool(t, pgtest.DSN(t))
	s, err := pgstore.New(ctx, pool, pgstore.WithSchema("order_tx"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	inAgg := func(id, agg string) store.Record { r := rec(id); r.AggregateID = agg; return r }

	early, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer early.Rollback(ctx)
	if _, err := early.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil { // takes its ID now
		t.Fatal(err)
	}
	if err := s.Append(ctx, []store.Record{inAgg("later", "x")}); err != nil {
		t.Fatal(err)
	}
	err = s.AppendTx(ctx, early, []store.Record{inAgg("early-w", "w"), inAgg("early-x", "x")})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "40001" || !errors.Is(err, store.ErrTxConflict) || !strings.Contains(err.Error(), "aggregate x") {
		t.Fatalf("AppendTx in a transaction older than x's last append = %v, want ErrTxConflict, a serialization failure (40001) naming x", err)
	}
	if err := early.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	retry, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendTx(ctx, retry, []store.Record{inAgg("early-w", "w"), inAgg("early-x", "x")}); err != nil {
		t.Fatalf("AppendTx retried in a new transaction: %v", err)
	}
	if err := retry.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := checkAggregateOrder(t, s); n != 3 {
		t.Fatalf("%d records in the log, want 3", n)
	}
}
