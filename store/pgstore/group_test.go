package pgstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
)

// TestPartitionIndexAtFirstClaim checks that a schema no group reads keeps
// no partition index, which would slow every append; that the first claims,
// from two stores at once, leave it made; and that an index left invalid by
// a failed build is built again.
func TestPartitionIndexAtFirstClaim(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	admin := newPool(t, dsn)
	index := func() (exists, valid bool) {
		t.Helper()
		var v *bool
		if err := admin.QueryRow(ctx, "SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('event.events_part'))").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v != nil, v != nil && *v
	}
	var stores []*pgstore.Store
	for range 2 {
		s, err := pgstore.New(ctx, newPool(t, dsn))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
	}
	if err := stores[0].Append(ctx, []store.Record{rec("a")}); err != nil {
		t.Fatal(err)
	}
	if exists, _ := index(); exists {
		t.Fatal("a new schema has the partition index before any group claimed")
	}
	var wg sync.WaitGroup
	errs := make([]error, len(stores))
	for i, s := range stores {
		wg.Go(func() { _, errs[i] = s.Claim(ctx, "g", "m"+string(rune('0'+i)), time.Second) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	if _, valid := index(); !valid {
		t.Fatal("no valid partition index after the first claims")
	}

	// A build that failed leaves an invalid index, which IF NOT EXISTS
	// alone would keep for good.
	if _, err := admin.Exec(ctx, "UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass('event.events_part')"); err != nil {
		t.Fatal(err)
	}
	s, err := pgstore.New(ctx, newPool(t, dsn))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Claim(ctx, "g", "m9", time.Second); err != nil {
		t.Fatal(err)
	}
	if _, valid := index(); !valid {
		t.Fatal("the invalid partition index was not built again")
	}
}

// TestOpenWhileBuildingPartitionIndex opens a store while the first claim
// builds the partition index. CREATE INDEX CONCURRENTLY waits for the
// transactions that began before its last phase, the opening store's
// migration among them; a migration that waited in turn for the build
// would be a deadlock, which PostgreSQL breaks by failing one of the two.
func TestOpenWhileBuildingPartitionIndex(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	admin := newPool(t, dsn)
	s, err := pgstore.New(ctx, newPool(t, dsn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Append(ctx, []store.Record{rec("a")}); err != nil {
		t.Fatal(err)
	}
	// A transaction that could write the log holds the build at its start,
	// with the build's lock taken, until it ends.
	old, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Rollback(context.WithoutCancel(ctx))
	if _, err := old.Exec(ctx, "LOCK TABLE event.events IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	claimed := make(chan error, 1)
	go func() {
		_, err := s.Claim(ctx, "g", "m", time.Minute)
		claimed <- err
	}()
	waitActivity(t, admin, "the index build to wait for the writer", "query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event = 'virtualxid'")
	opened := make(chan error, 1)
	go func() {
		s2, err := pgstore.New(ctx, newPool(t, dsn))
		if err == nil {
			s2.Close()
		}
		opened <- err
	}()
	// The new store either is open already or waits for a lock: let the
	// build go on, to wait in its last phase for the transactions begun
	// before it, the new store's among them if it waits.
	deadline := time.Now().Add(10 * time.Second)
	for len(opened) == 0 && !activity(t, admin, "wait_event = 'advisory'") {
		if time.Now().After(deadline) {
			t.Fatal("the new store neither opened nor waited for a lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := old.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for what, ch := range map[string]chan error{"open": opened, "claim": claimed} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("%s during the partition index build: %v", what, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s during the partition index build: still waiting after 30s", what)
		}
	}
}

// activity reports whether a session of the database matches the
// condition on pg_stat_activity.
func activity(t *testing.T, admin *pgxpool.Pool, cond string) bool {
	t.Helper()
	var n int
	if err := admin.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND "+cond).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// waitActivity waits until a session matches cond (see activity).
func waitActivity(t *testing.T, admin *pgxpool.Pool, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !activity(t, admin, cond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
