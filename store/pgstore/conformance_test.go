package pgstore_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
	"github.com/ncore-io/event/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(tb testing.TB, maxPayload int) store.Store {
			var opts []pgstore.Option
			if maxPayload > 0 {
				opts = append(opts, pgstore.WithMaxPayloadSize(maxPayload))
			}
			return open(tb, opts...)
		},
		Begin: beginOutbox,
	})
}

// TestConformanceUnnamedStatements runs the contract on a pool that does
// not prepare statements (QueryExecModeExec), as is set up for poolers
// such as PgBouncer in transaction mode: pgx then types parameters by
// their Go types rather than the statement's.
func TestConformanceUnnamedStatements(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(tb testing.TB, maxPayload int) store.Store {
			cfg, err := pgxpool.ParseConfig(pgtest.DSN(tb))
			if err != nil {
				tb.Fatal(err)
			}
			cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
			pool, err := pgxpool.NewWithConfig(tb.Context(), cfg)
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(pool.Close)
			var opts []pgstore.Option
			if maxPayload > 0 {
				opts = append(opts, pgstore.WithMaxPayloadSize(maxPayload))
			}
			s, err := pgstore.New(tb.Context(), pool, opts...)
			if err != nil {
				tb.Fatalf("New: %v", err)
			}
			tb.Cleanup(func() {
				if err := s.Close(); err != nil {
					tb.Errorf("Close: %v", err)
				}
			})
			return s
		},
		Begin: beginOutbox,
	})
}

// beginOutbox begins a transaction on the store's pool for the outbox
// tests, rolled back when tb ends unless committed.
func beginOutbox(ctx context.Context, tb testing.TB, s store.Store) storetest.Tx {
	st := s.(*pgstore.Store)
	tx, err := st.Pool().Begin(ctx)
	if err != nil {
		tb.Errorf("Begin: %v", err)
		return nil
	}
	tb.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return outboxTx{st, tx}
}

// open opens a store on a fresh database, closed when tb ends.
func open(tb testing.TB, opts ...pgstore.Option) *pgstore.Store {
	tb.Helper()
	s, err := pgstore.Open(tb.Context(), pgtest.DSN(tb), opts...)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// newPool returns a pool on dsn, closed when tb ends.
func newPool(tb testing.TB, dsn string) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(tb.Context(), dsn)
	if err != nil {
		tb.Fatalf("pgxpool.New: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

type outboxTx struct {
	s  *pgstore.Store
	tx pgx.Tx
}

func (o outboxTx) Append(ctx context.Context, recs []store.Record, expect ...store.Expect) error {
	return o.s.AppendTx(ctx, o.tx, recs, expect...)
}
func (o outboxTx) Commit(ctx context.Context) error   { return o.tx.Commit(ctx) }
func (o outboxTx) Rollback(ctx context.Context) error { return o.tx.Rollback(ctx) }
