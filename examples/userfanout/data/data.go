// Package data opens the service's database: the event log and, in the same
// database, the service's own tables (users, profiles, and what each
// subscriber records), so that a domain write and the events it publishes
// commit in one transaction (the transactional outbox).
//
// Two drivers are supported. SQLite (the default) keeps everything in one
// file through store/sqlitestore; its transactions are *sql.Tx on the
// store's writer connection. PostgreSQL keeps the event log in the schema
// "event" through store/pgstore and the service's tables in the schema
// "userfanout" of the same database; its transactions are pgx.Tx. Both
// hide behind [Tx], so the repository and the services are written once.
// Queries use $1, $2, … placeholders, which both drivers accept.
package data

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
	"github.com/ncore-io/event/store/sqlitestore"
)

// The drivers [Open] knows.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Schema is the PostgreSQL schema that holds the service's own tables, so
// that they cannot clash with tables of the same names in the database's
// public schema. The event log lives in pgstore's schema, "event".
const Schema = "userfanout"

// Options say which database [Open] opens.
type Options struct {
	// Driver is SQLite or Postgres.
	Driver string
	// Path is the SQLite file, created with its directory if missing.
	Path string
	// DSN is the PostgreSQL connection string.
	DSN string
	// Logger receives the store's own log lines; nil logs nothing.
	Logger *slog.Logger
}

// DB is the service's database: the event log and the service's tables.
// It is safe for concurrent use. Close it after the bus that uses its
// store.
type DB struct {
	driver string
	where  string
	store  store.Store
	sqlite *sqlitestore.Store // with driver SQLite
	pg     *pgstore.Store     // with driver Postgres
}

// Open opens the database that opts name, creating the event log's schema
// and the service's tables if they are missing.
func Open(ctx context.Context, opts Options) (*DB, error) {
	switch opts.Driver {
	case SQLite:
		return openSQLite(ctx, opts)
	case Postgres:
		return openPostgres(ctx, opts)
	}
	return nil, fmt.Errorf("data: open: unknown driver %q (want %s or %s)", opts.Driver, SQLite, Postgres)
}

func openSQLite(ctx context.Context, opts Options) (*DB, error) {
	if opts.Path == "" {
		return nil, errors.New("data: open: empty SQLite path")
	}
	if dir := filepath.Dir(opts.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("data: open: %w", err)
		}
	}
	// The event schema first: sqlitestore refuses a file that has other
	// tables but not its own.
	s, err := sqlitestore.Open(ctx, opts.Path, sqlitestore.WithLogger(opts.Logger))
	if err != nil {
		return nil, fmt.Errorf("data: open: %w", err)
	}
	if _, err := s.DB().ExecContext(ctx, sqliteSchema); err != nil {
		s.Close()
		return nil, fmt.Errorf("data: open %s: create the service's tables: %w", opts.Path, err)
	}
	return &DB{driver: SQLite, where: "SQLite file " + opts.Path, store: s, sqlite: s}, nil
}

func openPostgres(ctx context.Context, opts Options) (*DB, error) {
	if opts.DSN == "" {
		return nil, errors.New("data: open: empty PostgreSQL DSN")
	}
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("data: open: %w", err)
	}
	// Unqualified names are the service's tables; pgstore qualifies its
	// own with its schema.
	cfg.ConnConfig.RuntimeParams["search_path"] = Schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("data: open: %w", err)
	}
	s, err := pgstore.New(ctx, pool, pgstore.WithLogger(opts.Logger))
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("data: open: %w", err)
	}
	db := &DB{driver: Postgres, where: fmt.Sprintf("PostgreSQL database %s on %s", cfg.ConnConfig.Database, cfg.ConnConfig.Host), store: s, pg: s}
	// Serialised, as CREATE … IF NOT EXISTS races with itself in two
	// processes starting at once.
	err = db.InTx(ctx, func(tx Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('userfanout schema'))`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, postgresSchema)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("data: open: create the service's tables: %w", err)
	}
	return db, nil
}

// Store returns the event log, for event.WithStore.
func (db *DB) Store() store.Store { return db.store }

// Driver returns SQLite or Postgres.
func (db *DB) Driver() string { return db.driver }

// String says where the data is, for people: the SQLite file, or the
// PostgreSQL database and host.
func (db *DB) String() string { return db.where }

// Close closes the event log and the connections.
func (db *DB) Close() error {
	if db.pg != nil {
		err := db.pg.Close()
		db.pg.Pool().Close()
		return err
	}
	return db.sqlite.Close()
}

// Querier runs a query that returns one row. Both [DB] and [Tx] are
// Queriers.
type Querier interface {
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Row is the result of [Querier.QueryRow]. Scan returns an error matching
// [sql.ErrNoRows] when there is no row, on both drivers.
type Row interface {
	Scan(dest ...any) error
}

// Tx is a transaction on the service's database. It must be used from one
// goroutine at a time, and ended with Commit or Rollback.
type Tx interface {
	Querier
	// Exec runs a statement and returns how many rows it changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	// Outbox returns the driver's transaction, for event.Bus.PublishTx:
	// a *sql.Tx on SQLite, a pgx.Tx on PostgreSQL.
	Outbox() any
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// Begin starts a transaction. On SQLite it holds the database's only
// writer until it ends (see sqlitestore.Store.DB), so keep it short, and
// do not publish outside it (Bus.Publish) before it ends: the publish would
// wait for the writer.
func (db *DB) Begin(ctx context.Context) (Tx, error) {
	if db.pg != nil {
		tx, err := db.pg.Pool().Begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("data: begin: %w", err)
		}
		return pgTx{tx}, nil
	}
	tx, err := db.sqlite.DB().BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("data: begin: %w", err)
	}
	return sqlTx{tx}, nil
}

// InTx runs f in a transaction and commits it if f returns nil; otherwise,
// or if f panics, it rolls back.
func (db *DB) InTx(ctx context.Context, f func(tx Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // a no-op after Commit
	if err := f(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("data: commit: %w", err)
	}
	return nil
}

// QueryRow runs a query outside a transaction.
func (db *DB) QueryRow(ctx context.Context, query string, args ...any) Row {
	if db.pg != nil {
		return pgRow{db.pg.Pool().QueryRow(ctx, query, args...)}
	}
	return db.sqlite.DB().QueryRowContext(ctx, query, args...)
}

type sqlTx struct{ tx *sql.Tx }

func (t sqlTx) QueryRow(ctx context.Context, query string, args ...any) Row {
	return t.tx.QueryRowContext(ctx, query, args...)
}

func (t sqlTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := t.tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t sqlTx) Outbox() any                    { return t.tx }
func (t sqlTx) Commit(context.Context) error   { return t.tx.Commit() }
func (t sqlTx) Rollback(context.Context) error { return t.tx.Rollback() }

type pgTx struct{ tx pgx.Tx }

func (t pgTx) QueryRow(ctx context.Context, query string, args ...any) Row {
	return pgRow{t.tx.QueryRow(ctx, query, args...)}
}

func (t pgTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (t pgTx) Outbox() any                        { return t.tx }
func (t pgTx) Commit(ctx context.Context) error   { return t.tx.Commit(ctx) }
func (t pgTx) Rollback(ctx context.Context) error { return t.tx.Rollback(ctx) }

type pgRow struct{ row pgx.Row }

func (r pgRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return sql.ErrNoRows
	}
	return err
}

// The service's tables. Times are RFC 3339 text in UTC on both drivers.
// processed_events is what makes the subscribers idempotent: a subscriber
// records each event it handled there, in the transaction of its side
// effect, and skips an event it finds (delivery is at least once). The
// side-effect tables have no unique key on the event, so that an event
// handled twice would show as two rows.
const (
	sqliteSchema = `
CREATE TABLE IF NOT EXISTS users (
	id         INTEGER PRIMARY KEY,
	email      TEXT NOT NULL UNIQUE,
	name       TEXT NOT NULL,
	created_at TEXT NOT NULL
);
` + commonSchema

	postgresSchema = `
CREATE SCHEMA IF NOT EXISTS ` + Schema + `;
CREATE TABLE IF NOT EXISTS users (
	id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	email      TEXT NOT NULL UNIQUE,
	name       TEXT NOT NULL,
	created_at TEXT NOT NULL
);
` + commonSchema

	commonSchema = `
CREATE TABLE IF NOT EXISTS processed_events (
	subscription TEXT NOT NULL,
	event_id     TEXT NOT NULL,
	handled_at   TEXT NOT NULL,
	PRIMARY KEY (subscription, event_id)
);
CREATE TABLE IF NOT EXISTS profiles (
	user_id      TEXT PRIMARY KEY,
	display_name TEXT NOT NULL,
	event_id     TEXT NOT NULL,
	created_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
	event_id TEXT NOT NULL,
	user_id  TEXT NOT NULL,
	email    TEXT NOT NULL,
	template TEXT NOT NULL,
	sent_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
	event_id     TEXT NOT NULL,
	topic        TEXT NOT NULL,
	aggregate_id TEXT NOT NULL,
	event_time   TEXT NOT NULL,
	payload      TEXT NOT NULL,
	recorded_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS analytics (
	event_id     TEXT NOT NULL,
	user_id      TEXT NOT NULL,
	email_domain TEXT NOT NULL,
	tracked_at   TEXT NOT NULL
);
`
)
