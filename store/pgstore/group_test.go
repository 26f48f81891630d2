package pgstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

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

// TestOpenWhilePartitionIndexBuilds opens a store while another store's
// first claim builds the partition index, and the build waits for an old
// transaction that writes the log. Opening must not wait for the build
// (which may take long on a big log): if it waited under the lock the
// build holds, the build would in turn wait for the opening transaction's
// snapshot, and PostgreSQL would end one of the two as a deadlock.
func TestOpenWhilePartitionIndexBuilds(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	admin := newPool(t, dsn)
	first, err := pgstore.New(ctx, newPool(t, dsn))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// A writer's open transaction, which CREATE INDEX CONCURRENTLY waits for.
	writer, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Rollback(context.Background())
	if _, err := writer.Exec(ctx, "LOCK TABLE event.events IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	claimed := make(chan error, 1)
	go func() {
		_, err := first.Claim(ctx, "g", "m0", time.Minute)
		claimed <- err
	}()
	waitActivity := func(what, where string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			var n int
			if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND "+where).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitActivity("the index build to wait for the writer", "query LIKE 'CREATE INDEX CONCURRENTLY%'")

	opened := make(chan error, 1)
	var second *pgstore.Store
	go func() {
		var err error
		second, err = pgstore.New(ctx, newPool(t, dsn))
		opened <- err
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("New while the partition index builds: %v", err)
		}
		defer second.Close()
	case <-time.After(5 * time.Second):
		// Let the build go on, so that New and the claim can end.
		writer.Rollback(ctx)
		err := <-opened
		if err == nil {
			second.Close()
		}
		t.Fatalf("New waited for the partition index that another store's claim builds; then New: %v, claim: %v", err, <-claimed)
	}
	if err := writer.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-claimed:
		if err != nil {
			t.Fatalf("claim that built the partition index: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the claim that builds the partition index did not end")
	}
	var valid *bool
	if err := admin.QueryRow(ctx, "SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('event.events_part'))").Scan(&valid); err != nil {
		t.Fatal(err)
	}
	if valid == nil || !*valid {
		t.Fatal("no valid partition index after the claim")
	}
	if _, err := second.Claim(ctx, "g", "m1", time.Minute); err != nil {
		t.Fatalf("claim on the store opened meanwhile: %v", err)
	}
}
