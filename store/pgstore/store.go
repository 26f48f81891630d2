package pgstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ncore-io/event/internal/decode"
	"github.com/ncore-io/event/store"
)

// Store is a [store.Store] and [store.DeadLetterStore] on PostgreSQL. It is
// safe for concurrent use by multiple goroutines, and by multiple processes
// sharing the database.
type Store struct {
	pool        *pgxpool.Pool
	ownsPool    bool
	opts        options
	log         *slog.Logger
	schema      string      // quoted
	channel     string      // NOTIFY channel
	tag         uint64      // mixes the store's ID into cursors
	minScan     int         // see defaultMinScan; tests lower it
	partitions  int         // of the log, stored in the schema
	partIndexed atomic.Bool // the partition index exists; see indexPartitions
	sql         queries
	names       decode.Names // strings that recur in records; see decodeGroupRecord
	prepare     bool         // the pool's connections keep prepared statements; see execBinary
	txModes     connModes    // the same of the connections of callers' transactions
	readSQLMu   sync.RWMutex
	readSQLs    map[readShape]string // Read statements, by shape; see readSQL
	// groupReadTx: read_partitions was refused outside a READ COMMITTED
	// transaction (see readGroup), so group reads run in one.
	groupReadTx atomic.Bool

	w     *writer
	notes *notifier // NOTIFY after group commits

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // calls in progress, waited for by Close
	watchers sync.WaitGroup
	watches  map[chan<- struct{}]struct{} // the channels of Notify, until closed
	life     context.Context              // canceled by Close: ends watchers
	end      context.CancelFunc

	// A signal for records that reads found hidden (see hiddenFound): the
	// timer that sends it, while due, and the delay it was set for.
	hiddenWake *time.Timer
	hiddenWait atomic.Int64
}

var (
	_ store.Store            = (*Store)(nil)
	_ store.DeadLetterStore  = (*Store)(nil)
	_ store.DeadLetterLookup = (*Store)(nil)
	_ store.Notifier         = (*Store)(nil)
	_ store.Grouper          = (*Store)(nil)
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
		watches: map[chan<- struct{}]struct{}{},
		// Whether the pool's connections keep prepared statements; see
		// execBinary.
		prepare: pool.Config().ConnConfig.DefaultQueryExecMode == pgx.QueryExecModeCacheStatement,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.migrate(ctx); err != nil {
		return nil, fmt.Errorf("pgstore: new: %w", err)
	}
	s.sql = buildQueries(s.schema, s.channel, s.partitions)
	s.life, s.end = context.WithCancel(context.Background())
	s.notes = startNotifier(s)
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
// closes the channels that [Store.Notify] returned, and closes the pool if
// the store opened it. Later calls fail with store.ErrClosed. Close is safe
// to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.hiddenWake != nil {
		s.hiddenWake.Stop()
		s.hiddenWake = nil
	}
	s.mu.Unlock()
	s.end()
	s.w.close()
	s.inflight.Wait()
	s.notes.close()
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
