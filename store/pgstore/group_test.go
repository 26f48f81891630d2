package pgstore_test

import (
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
