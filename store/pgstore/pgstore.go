// Package pgstore is a [store.Store] on PostgreSQL (13 or later), through
// github.com/jackc/pgx/v5. Several processes may share one database: they
// see one log, aggregate versions stay dense across them, and
// [Store.Watch] tells each of them when another appended.
//
// # Schema
//
// [New] creates the store's tables in their own schema ([WithSchema],
// "event" by default) and migrates them to the version this package
// expects, in one transaction under an advisory lock, so processes starting
// together are safe. A schema written by a newer version of the package is
// refused rather than used.
//
// # Order
//
// Each record is stamped with the ID of the transaction that inserted it,
// and the log's global order is (transaction ID, position). [Store.Read]
// only returns records of transactions older than the oldest one of the
// database still running, so a transaction that commits late, holding a
// lower position than records already read, can never be skipped by a
// reader that pages by cursor. The price is that readers wait for the
// oldest transaction with a transaction ID in the store's database, whether
// it writes events or not: keep transactions short
// (idle_in_transaction_session_timeout helps), because a long one delays
// every reader until it ends. Transactions in other databases of the
// cluster do not delay readers, provided the store's role may see their
// transaction IDs in pg_stat_activity (PostgreSQL shows them to every role
// by default); prepared transactions always do.
//
// # Group commit
//
// Concurrent [Store.Append] calls are gathered into groups, each stored by
// one SQL statement in one transaction, so the cost of a durable commit is
// shared. Each caller gets its own result: a version conflict or duplicate
// ID fails only the batch it belongs to.
//
// # Outbox
//
// [Store.AppendTx] appends in the caller's own pgx transaction, so a domain
// write and its events commit or roll back together.
package pgstore

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ncore-io/event/store"
)

// SchemaVersion is the version of the database schema that this package
// creates and reads.
const SchemaVersion = 2

//go:embed migrations/*.sql
var migrationFS embed.FS

// Store is a [store.Store] and [store.DeadLetterStore] on PostgreSQL. It is
// safe for concurrent use by multiple goroutines, and by multiple processes
// sharing the database.
type Store struct {
	pool     *pgxpool.Pool
	ownsPool bool
	opts     options
	log      *slog.Logger
	schema   string // quoted
	channel  string // NOTIFY channel
	tag      uint64 // mixes the store's ID into cursors
	minScan  int    // see defaultMinScan; tests lower it
	sql      queries

	w *writer

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // calls in progress, waited for by Close
	watchers sync.WaitGroup
	life     context.Context // canceled by Close: ends watchers
	end      context.CancelFunc
}

var (
	_ store.Store            = (*Store)(nil)
	_ store.DeadLetterStore  = (*Store)(nil)
	_ store.DeadLetterLookup = (*Store)(nil)
)

// New returns a store on pool, creating or migrating its schema first. The
// pool stays the caller's: [Store.Close] does not close it. New fails if the
// schema was written by a newer version of this package.
func New(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	if pool == nil {
		return nil, errors.New("pgstore: new: nil pool")
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("pgstore: new: %w", err)
	}
	s := &Store{
		pool:    pool,
		opts:    o,
		log:     o.logger,
		schema:  pgx.Identifier{o.schema}.Sanitize(),
		channel: channelName(o.schema),
		minScan: defaultMinScan,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	storeID, err := s.migrate(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgstore: new: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte(storeID))
	s.tag = h.Sum64()
	s.sql = buildQueries(s.schema, s.channel)
	s.life, s.end = context.WithCancel(context.Background())
	s.w = startWriter(s)
	return s, nil
}

// Open connects to the database that dsn names (a URL or keyword/value
// string, see pgxpool.ParseConfig) and returns a store on it, as [New]
// does. The store owns the pool: [Store.Close] closes it.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	s, err := New(ctx, pool, opts...)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownsPool = true
	return s, nil
}

// Close stops the store: it waits for calls in progress and the group
// commit under way, fails Append calls still queued with [store.ErrClosed],
// stops watchers, and closes the pool if the store opened it. Later calls
// fail with store.ErrClosed. Close is safe to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.end()
	s.w.close()
	s.inflight.Wait()
	s.watchers.Wait()
	if s.ownsPool {
		s.pool.Close()
	}
	return nil
}

// enter registers a call in progress, or fails once the store is closed.
func (s *Store) enter(op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("pgstore: %s: %w", op, store.ErrClosed)
	}
	s.inflight.Add(1)
	return nil
}

func (s *Store) exit() { s.inflight.Done() }

// Pool returns the pool the store uses, for transactions to pass to
// [Store.AppendTx].
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// migrate brings the schema to SchemaVersion and returns the store's ID.
// Everything runs in one transaction under an advisory lock keyed by the
// schema name, so concurrent processes migrate one after the other and the
// later ones find the work done.
func (s *Store) migrate(ctx context.Context) (string, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(s.opts.schema)); err != nil {
		return "", fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+s.schema); err != nil {
		return "", fmt.Errorf("migrate: create schema %s: %w", s.schema, err)
	}
	if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+s.schema+".meta (key text PRIMARY KEY, value text NOT NULL)"); err != nil {
		return "", fmt.Errorf("migrate: create meta table: %w", err)
	}
	current := 0
	var v string
	err = tx.QueryRow(ctx, "SELECT value FROM "+s.schema+".meta WHERE key = 'schema_version'").Scan(&v)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return "", fmt.Errorf("migrate: read schema version: %w", err)
	default:
		if current, err = strconv.Atoi(v); err != nil {
			return "", fmt.Errorf("migrate: schema %s has a malformed version %q", s.schema, v)
		}
	}
	if current > SchemaVersion {
		return "", fmt.Errorf("migrate: schema %s is at version %d, newer than version %d that this build of pgstore knows; upgrade github.com/ncore-io/event", s.schema, current, SchemaVersion)
	}
	steps, err := migrations()
	if err != nil {
		return "", err
	}
	for _, m := range steps {
		if m.version <= current {
			continue
		}
		sql := strings.NewReplacer("{{schema}}", s.schema, "{{channel}}", quoteLiteral(s.channel)).Replace(m.sql)
		if _, err := tx.Exec(ctx, sql); err != nil {
			return "", fmt.Errorf("migrate: schema %s to version %d (%s): %w", s.schema, m.version, m.name, err)
		}
		current = m.version
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+s.schema+".meta (key, value) VALUES ('schema_version', $1), ('store_id', $2) ON CONFLICT (key) DO UPDATE SET value = CASE WHEN excluded.key = 'schema_version' THEN excluded.value ELSE meta.value END",
		strconv.Itoa(current), randomID()); err != nil {
		return "", fmt.Errorf("migrate: record version: %w", err)
	}
	var id string
	if err := tx.QueryRow(ctx, "SELECT value FROM "+s.schema+".meta WHERE key = 'store_id'").Scan(&id); err != nil {
		return "", fmt.Errorf("migrate: read store ID: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("migrate: commit: %w", err)
	}
	return id, nil
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations lists the embedded migrations, named NNN_what.sql, in order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migrate: migration file %s is not named NNN_name.sql", e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// lockKey derives the advisory lock for migrating one schema.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("github.com/ncore-io/event/store/pgstore\x00" + schema))
	return int64(h.Sum64())
}

// channelName is the NOTIFY channel of a schema. Channels are identifiers,
// at most 63 bytes; a long schema name is shortened with a hash.
func channelName(schema string) string {
	c := schema + "_appended"
	if len(c) <= 63 {
		return c
	}
	h := fnv.New64a()
	h.Write([]byte(schema))
	return fmt.Sprintf("%s_%016x_appended", schema[:28], h.Sum64())
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
