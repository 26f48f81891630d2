package pgstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
)

// TestGroupReadOnEveryConnection checks, on pools of each query mode
// (prepared statements; unnamed ones and the simple protocol, as for a
// pooler) and of stricter default isolations, that records append and
// read back as they were, and that ReadPartitions and Commit, which
// bypass pgx's Query and Scan, return what Read returns, field for field,
// and save checkpoints. read_partitions needs READ COMMITTED and is then
// run in a transaction of its own.
func TestGroupReadOnEveryConnection(t *testing.T) {
	t.Parallel()
	variants := []struct {
		name      string
		mode      pgx.QueryExecMode
		isolation string // default_transaction_isolation; "" for the server's
		inTx      bool   // group reads are expected to run in a transaction
	}{
		{name: "prepared", mode: pgx.QueryExecModeCacheStatement},
		{name: "unnamed", mode: pgx.QueryExecModeExec},
		{name: "describe", mode: pgx.QueryExecModeCacheDescribe},
		{name: "simple-protocol", mode: pgx.QueryExecModeSimpleProtocol},
		{name: "repeatable-read", mode: pgx.QueryExecModeCacheStatement, isolation: "repeatable read", inTx: true},
		{name: "serializable-unnamed", mode: pgx.QueryExecModeExec, isolation: "serializable", inTx: true},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			cfg, err := pgxpool.ParseConfig(pgtest.DSN(t))
			if err != nil {
				t.Fatal(err)
			}
			cfg.ConnConfig.DefaultQueryExecMode = v.mode
			if v.isolation != "" {
				cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = v.isolation
			}
			pool, err := pgxpool.NewWithConfig(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			s, err := pgstore.New(ctx, pool, pgstore.WithPartitions(8))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			t.Cleanup(func() { s.Close() })

			var recs []store.Record
			for i := range 40 {
				r := rec(fmt.Sprintf("r%02d", i))
				r.Time = t0.Add(time.Duration(i)*time.Second + 123456*time.Microsecond)
				r.PayloadType = "test.Thing"
				if i%3 > 0 {
					r.AggregateID = fmt.Sprintf("agg-%d", i%5)
				}
				switch i % 8 {
				case 0:
					r.Payload = nil
				case 1:
					r.Payload = []byte{}
				}
				switch i % 7 {
				case 0:
					r.Metadata = map[string]string{"event.correlation_id": "01930000-0000-7000-8000-000000000000"}
				case 1:
					r.Metadata = map[string]string{"quote": `say "hi"`, "tab": "a\tb", "uni": "é€😀", "slash": `a\b`}
				case 2:
					r.Metadata = map[string]string{}
				case 3:
					many := map[string]string{}
					for k := range 12 {
						many[fmt.Sprintf("k%d", k)] = fmt.Sprintf("v%d", k)
					}
					r.Metadata = many
				case 4:
					r.Metadata = map[string]string{"a": "", "": "empty key", "b": " spaced  "}
				}
				recs = append(recs, r)
			}
			for i := 0; i < len(recs); i += 10 {
				if err := s.Append(ctx, recs[i:i+10]); err != nil {
					t.Fatalf("Append: %v", err)
				}
			}
			want, _, err := s.Read(ctx, store.Query{Limit: 100})
			if err != nil || len(want) != len(recs) {
				t.Fatalf("Read = %d records, %v; want %d", len(want), err, len(recs))
			}
			for i, r := range want {
				w := recs[i]
				if r.ID != w.ID || r.AggregateID != w.AggregateID || !r.Time.Equal(w.Time) || !maps.Equal(r.Metadata, w.Metadata) ||
					!bytes.Equal(r.Payload, w.Payload) || (r.Payload == nil) != (w.Payload == nil) {
					t.Fatalf("record %d read back as %+v, appended as %+v", i, r, w)
				}
			}

			a, err := s.Claim(ctx, "g", "m1", time.Minute)
			if err != nil {
				t.Fatalf("Claim: %v", err)
			}
			var from []store.PartitionCursor
			for _, l := range a.Leases {
				from = append(from, store.PartitionCursor{Partition: l.Partition, After: l.Cursor})
			}
			var got []store.Record
			for range 100 {
				page, err := s.ReadPartitions(ctx, from, 7)
				if err != nil {
					t.Fatalf("ReadPartitions: %v", err)
				}
				if len(page) == 0 {
					break
				}
				got = append(got, page...)
			}
			if len(got) != len(want) {
				t.Fatalf("ReadPartitions read %d records, Read %d", len(got), len(want))
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("record %d:\nReadPartitions %+v\nRead           %+v", i, got[i], want[i])
				}
			}
			if inTx := pgstore.GroupReadsInTx(s); inTx != v.inTx {
				t.Errorf("group reads in a transaction of their own: %v, want %v", inTx, v.inTx)
			}

			var cps []store.Checkpoint
			for i, l := range a.Leases {
				cps = append(cps, store.Checkpoint{Partition: l.Partition, Token: l.Token, Cursor: from[i].After})
			}
			if err := s.Commit(ctx, "g", "m1", cps...); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			info, err := s.Group(ctx, "g")
			if err != nil {
				t.Fatalf("Group: %v", err)
			}
			for i, p := range info.Partitions {
				if p.Cursor != from[i].After || p.Lag != 0 {
					t.Errorf("partition %d at %q with lag %d after Commit, want %q and 0", p.Partition, p.Cursor, p.Lag, from[i].After)
				}
			}
			// A commit with a token that no longer holds saves nothing.
			cps[0].Token++
			cps[0].Cursor = ""
			var lost *store.LeaseLostError
			if err := s.Commit(ctx, "g", "m1", cps...); !errors.As(err, &lost) || !slices.Equal(lost.Partitions, []int{cps[0].Partition}) {
				t.Errorf("Commit with a stale token of partition %d: %v, want it lost", cps[0].Partition, err)
			}
		})
	}
}

// oneConnStore opens a store on a pool of one connection, so that what a
// test does to the pool's connection reaches the one the store prepared
// its statements on.
func oneConnStore(t *testing.T, opts ...pgstore.Option) (*pgstore.Store, *pgxpool.Pool) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := pgstore.New(t.Context(), pool, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, pool
}

// TestGroupReadAfterStatementsLost checks that group reads and commits
// recover on a connection whose prepared statements the server dropped
// (DEALLOCATE ALL, as a pooler's reset does): at most one call fails,
// and the next prepares again.
func TestGroupReadAfterStatementsLost(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, pool := oneConnStore(t, pgstore.WithPartitions(4))
	if err := s.Append(ctx, []store.Record{rec("x1"), rec("x2")}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	a, err := s.Claim(ctx, "g", "m1", time.Minute)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	from := func() []store.PartitionCursor {
		var f []store.PartitionCursor
		for _, l := range a.Leases {
			f = append(f, store.PartitionCursor{Partition: l.Partition})
		}
		return f
	}
	cps := func() []store.Checkpoint {
		var c []store.Checkpoint
		for _, l := range a.Leases {
			c = append(c, store.Checkpoint{Partition: l.Partition, Token: l.Token})
		}
		return c
	}
	for round := range 3 {
		if page, err := s.ReadPartitions(ctx, from(), 10); err != nil || len(page) != 2 {
			t.Fatalf("round %d: ReadPartitions = %d records, %v", round, len(page), err)
		}
		if err := s.Commit(ctx, "g", "m1", cps()...); err != nil {
			t.Fatalf("round %d: Commit: %v", round, err)
		}
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = conn.Conn().PgConn().Exec(ctx, "DEALLOCATE ALL").ReadAll()
		conn.Release()
		if err != nil {
			t.Fatalf("DEALLOCATE ALL: %v", err)
		}
		// The first call after the reset may fail; the one after must not.
		if _, err := s.ReadPartitions(ctx, from(), 10); err != nil {
			t.Logf("round %d: ReadPartitions after the reset: %v", round, err)
		}
		if err := s.Commit(ctx, "g", "m1", cps()...); err != nil {
			t.Logf("round %d: Commit after the reset: %v", round, err)
		}
	}
}
