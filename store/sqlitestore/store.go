package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ncore-io/event/store"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Store is an event log in one SQLite file. It implements [store.Store] and
// [store.DeadLetterStore]. It is safe for concurrent use by multiple
// goroutines, and several processes may open the same file.
type Store struct {
	path string
	file os.FileInfo // the file at path when it was opened; see checkFile
	cfg  config
	log  *slog.Logger

	w *sql.DB // the one writer connection; see DB
	r *sql.DB // read-only pool

	stmtsMu sync.Mutex
	stmts   map[stmtKey]*sql.Stmt // prepared on w; nil: wanted
	wanted  int                   // nil entries in stmts

	queue  chan *appendReq
	quit   chan struct{} // closed by Close: stop taking batches
	exited chan struct{} // closed when the writer goroutine has returned

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	commits atomic.Int64 // group commit transactions, for tests
	// partIndexed is set once the partition index exists; see indexPartitions.
	partIndexed atomic.Bool
	redos       atomic.Int64 // optimistic transactions redone carefully, for tests
	careful     int          // commits still to look up IDs first; the writer's own
	settled     bool         // see settle; the writer's own
	// afterTake, if set (by tests, before the first Append), runs in the
	// writer after it takes requests into a transaction.
	afterTake func()
	minScan   int // see defaultMinScan; tests lower it

	watchMu    sync.Mutex
	watchers   map[chan struct{}]struct{}
	watchCount atomic.Int64
	watchWG    sync.WaitGroup
	pollDB     *sql.DB // opened by the first Notify

	partMu    sync.Mutex
	partStmts map[partRead]*sql.Stmt // see partitionStmt
}

// Open opens the event database at path, creating the file and its schema if
// needed, and starts the group-commit writer. The file must be new (or
// empty), or an event database that sqlitestore created: an SQLite file
// with other tables and no event schema, a file that is not an SQLite
// database, and an event database of a newer schema version are refused
// with an error that says so. Open migrates an older schema in place.
//
// Open does not create the file's directory: a library should not make
// directories on its own, so create it first. When the file cannot be
// opened or written, the error says why where the file system tells: a
// missing directory, a path that is a directory, a file or directory that
// is not writable or on a read-only file system. Later writes that fail
// say so too (a full disk, the file size limit).
//
// The database runs in WAL mode. Close the Store when done.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	switch {
	case path == "":
		return nil, errors.New("sqlitestore: open: empty path")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		return nil, fmt.Errorf("sqlitestore: open %s: need a plain file path (an in-memory or URI database cannot be shared by the writer and the readers)", path)
	case strings.ContainsRune(path, '?'):
		return nil, fmt.Errorf("sqlitestore: open %s: path contains '?'", path)
	}
	busy := strconv.FormatInt(cfg.busyTimeout.Milliseconds(), 10)

	// _txlock=immediate: every transaction on the writer takes the write
	// lock at BEGIN, so it never fails half-way trying to upgrade a read
	// lock that another process's writer holds.
	w, err := sql.Open("sqlite", path+"?"+url.Values{
		// temp_store(MEMORY): multi-row inserts keep their statement
		// journal in memory instead of a temporary file.
		"_pragma": {"busy_timeout(" + busy + ")", "journal_mode(WAL)", "synchronous(" + cfg.synchronous.pragma() + ")", "foreign_keys(1)", "temp_store(MEMORY)"},
		"_txlock": {"immediate"},
	}.Encode())
	if err != nil {
		return nil, openError(path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrateWhenFree(ctx, w, &cfg, path); err != nil {
		w.Close()
		return nil, err
	}
	// The file the writer has open, now that migrate created it.
	file, err := os.Stat(path)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", path+"?"+url.Values{
		"_pragma":     {"busy_timeout(" + busy + ")", "temp_store(MEMORY)"},
		"_query_only": {"1"},
	}.Encode())
	if err != nil {
		w.Close()
		return nil, openError(path, err)
	}
	r.SetMaxOpenConns(cfg.readConns)
	r.SetMaxIdleConns(cfg.readConns)
	r.SetConnMaxIdleTime(0)
	r.SetConnMaxLifetime(0)

	s := &Store{
		path:   path,
		file:   file,
		cfg:    cfg,
		log:    cfg.logger,
		w:      w,
		r:      r,
		queue:  make(chan *appendReq, 4096),
		quit:   make(chan struct{}),
		exited: make(chan struct{}),

		minScan: defaultMinScan,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.stmts = map[stmtKey]*sql.Stmt{}
	s.watchers = map[chan struct{}]struct{}{}
	go s.run()
	return s, nil
}

// Close stops the group-commit writer, waiting for the commit in progress,
// and closes the database. Appends still queued fail with
// [store.ErrClosed]; so does every method called after Close. Close is
// idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.quit)
		<-s.exited
		if s.checkFile() != nil {
			// Not waiting long for a connection that a caller's
			// transaction may hold.
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.busyTimeout)
			if conn, err := s.w.Conn(ctx); err == nil {
				s.settle(ctx, conn)
				conn.Close()
			}
			cancel()
		}
		// A Watch that saw the store open has registered with watchWG once
		// it releases watchMu.
		s.watchMu.Lock()
		pollDB := s.pollDB
		s.watchMu.Unlock()
		s.watchWG.Wait()
		if pollDB != nil {
			pollDB.Close()
		}
		s.partMu.Lock()
		for _, st := range s.partStmts {
			st.Close()
		}
		s.partMu.Unlock()
		s.stmtsMu.Lock()
		for _, st := range s.stmts {
			if st != nil {
				st.Close()
			}
		}
		s.stmtsMu.Unlock()
		s.closeErr = errors.Join(s.r.Close(), s.w.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("sqlitestore: close: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// DB returns the handle of the store's single writer connection, for the
// transactional outbox: begin a transaction on it, write the application's
// own tables (which may live in the same file, under names that do not
// start with event_) and call [Store.AppendTx] in the same transaction.
//
// The handle has one connection, so a transaction on it holds the writer:
// group commit and every other write to the store wait until it commits or
// rolls back. Keep such transactions short, and do not call the store's
// other write methods (Append, SetCheckpoint, …) or use DB outside the
// transaction from the goroutine that holds it: they would wait for the
// transaction, which waits for them. Transactions on DB take the write lock
// at BEGIN (BEGIN IMMEDIATE). Do not close the handle; Close does.
func (s *Store) DB() *sql.DB { return s.w }

// enter checks the common preconditions of every method.
func (s *Store) enter(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("sqlitestore: %s: %w", op, store.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlitestore: %s: %w", op, err)
	}
	return nil
}

// fail wraps a database error of op. Errors caused by Close racing with the
// call are reported as ErrClosed.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%w)", ctxErr, err)
	} else if s.closed.Load() && errors.Is(err, sql.ErrConnDone) || s.closed.Load() && strings.Contains(err.Error(), "database is closed") {
		err = store.ErrClosed
	} else {
		err = explain(s.path, err)
	}
	return fmt.Errorf("sqlitestore: %s: %w", op, err)
}
