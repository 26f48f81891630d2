package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ncore-io/event/store"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Store is an event log in one SQLite file. It implements [store.Store] and
// [store.DeadLetterStore]. It is safe for concurrent use by multiple
// goroutines, and several processes may open the same file.
type Store struct {
	path string
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
	redos   atomic.Int64 // optimistic transactions redone carefully, for tests
	careful int          // commits still to look up IDs first; the writer's own
	minScan int          // see defaultMinScan; tests lower it

	watchMu    sync.Mutex
	watchers   map[chan struct{}]struct{}
	watchCount atomic.Int64
	watchWG    sync.WaitGroup
	pollDB     *sql.DB // opened by the first Watch
}

// Open opens the event database at path, creating the file and its schema if
// needed, and starts the group-commit writer. The file must be new (or
// empty), or an event database that sqlitestore created: an SQLite file
// with other tables and no event schema, a file that is not an SQLite
// database, and an event database of a newer schema version are refused
// with an error that says so. Open migrates an older schema in place.
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
		"_pragma": {"busy_timeout(" + busy + ")", "journal_mode(WAL)", "synchronous(" + cfg.sync.pragma() + ")", "foreign_keys(1)", "temp_store(MEMORY)"},
		"_txlock": {"immediate"},
	}.Encode())
	if err != nil {
		return nil, openError(path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w, &cfg, path); err != nil {
		w.Close()
		return nil, err
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
		// A Watch that saw the store open has registered with watchWG once
		// it releases watchMu.
		s.watchMu.Lock()
		pollDB := s.pollDB
		s.watchMu.Unlock()
		s.watchWG.Wait()
		if pollDB != nil {
			pollDB.Close()
		}
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
	}
	return fmt.Errorf("sqlitestore: %s: %w", op, err)
}

// Load implements [store.Store].
func (s *Store) Load(ctx context.Context, id string) (store.Record, error) {
	if err := s.enter(ctx, "load"); err != nil {
		return store.Record{}, err
	}
	r, err := scanRecord(s.r.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM event_log WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Record{}, fmt.Errorf("sqlitestore: load %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, s.fail(ctx, "load "+id, err)
	}
	return r, nil
}

// LoadAggregate implements [store.Store].
func (s *Store) LoadAggregate(ctx context.Context, aggregateID string, fromVersion int64) ([]store.Record, error) {
	if err := store.ValidateName("aggregate ID", aggregateID); err != nil {
		return nil, fmt.Errorf("sqlitestore: load aggregate: %w", err)
	}
	if err := s.enter(ctx, "load aggregate"); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+recordColumns+` FROM event_log WHERE aggregate_id = ? AND version >= ? ORDER BY version`, aggregateID, fromVersion)
	if err != nil {
		return nil, s.fail(ctx, "load aggregate "+aggregateID, err)
	}
	defer rows.Close()
	var out []store.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, s.fail(ctx, "load aggregate "+aggregateID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "load aggregate "+aggregateID, err)
	}
	return out, nil
}

// defaultMinScan is the fewest positions of the log a filtered Read looks
// at before it gives up on filling its page and returns what it found with
// a cursor past what it looked at; it looks at up to 10 times its limit.
// The bound keeps one call's work (and its read transaction) in proportion
// to its page however rare the matches are, while the cursor it returns
// keeps a read through the whole log linear. pgstore applies the same rule.
const defaultMinScan = 10_000

// Read implements [store.Store].
//
// A read by exact topic or by aggregate finds its records through an index
// (any kind or time filter is applied to what the index finds), and one
// without filters takes the log as it comes: each fills its page while
// records remain. Other filtered reads (a wildcard pattern, or a kind or a
// time alone) walk the log in position order and look at no more than
// max(10×limit, 10,000) positions per call; when their page is not full by
// then they return the records they found, perhaps none, with a cursor past
// the positions they looked at, and the next Read goes on from there.
// Wildcard patterns are narrowed in SQL, by their literal prefix and a GLOB
// that every matching topic matches, and matched exactly in Go.
func (s *Store) Read(ctx context.Context, q store.Query) ([]store.Record, store.Cursor, error) {
	if err := s.enter(ctx, "read"); err != nil {
		return nil, q.After, err
	}
	if q.Topic != "" {
		if err := store.ValidatePattern(q.Topic); err != nil {
			return nil, q.After, fmt.Errorf("sqlitestore: read: %w", err)
		}
	}
	after, err := decodeCursor(q.After)
	if err != nil {
		return nil, q.After, fmt.Errorf("sqlitestore: read: %w", err)
	}
	limit, err := store.PageLimit(q.Limit)
	if err != nil {
		return nil, q.After, fmt.Errorf("sqlitestore: read: %w", err)
	}

	exact := q.Topic != "" && q.Topic != ">" && store.IsLiteral(q.Topic)
	matchInGo := q.Topic != "" && q.Topic != ">" && !exact
	// A read by aggregate or exact topic takes its index, however its
	// other filters thin it out; other filtered reads walk the log.
	bounded := q.AggregateID == "" && !exact && (matchInGo || q.Kind != "" || !q.Since.IsZero())
	var (
		where strings.Builder
		args  []any
	)
	where.WriteString(`position > ?`)
	args = append(args, nil) // the position, set per query below
	if bounded {
		where.WriteString(` AND position <= ?`)
		args = append(args, nil) // the end of the walk, set below
	}
	switch {
	case q.Topic == "" || q.Topic == ">":
	case !matchInGo:
		where.WriteString(` AND topic = ?`)
		args = append(args, q.Topic)
	default:
		if p := store.LiteralPrefix(q.Topic); p != "" {
			// p ends in "."; "/" is the next byte, so this is a prefix range.
			where.WriteString(` AND topic >= ? AND topic < ?`)
			args = append(args, p, p[:len(p)-1]+"/")
		}
		where.WriteString(` AND topic GLOB ?`)
		args = append(args, topicGlob(q.Topic))
	}
	if q.AggregateID != "" {
		where.WriteString(` AND aggregate_id = ?`)
		args = append(args, q.AggregateID)
	}
	if q.Kind != "" {
		where.WriteString(` AND kind = ?`)
		args = append(args, q.Kind)
	}
	if !q.Since.IsZero() {
		where.WriteString(` AND time_us >= ?`)
		args = append(args, q.Since.UnixMicro()+boolInt(q.Since.Nanosecond()%1000 != 0))
	}
	from := `event_log`
	scan := limit
	switch {
	case bounded:
		// Walk the primary key: the topic index would find a prefix's
		// records at every position, however many.
		from = `event_log NOT INDEXED`
		scan = max(10*limit, s.minScan)
	case matchInGo:
		scan = max(limit, 256)
	}
	query := `SELECT ` + recordColumns + ` FROM ` + from + ` WHERE ` + where.String() + ` ORDER BY position LIMIT ` + strconv.Itoa(scan)

	// One read transaction: the retention check, the bounds and the pages
	// see the same snapshot.
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, q.After, s.fail(ctx, "read", err)
	}
	defer tx.Rollback()
	// end is the last position handed out: later appends, including
	// one in a caller's transaction on the writer, get higher ones.
	var low, end, first, hi int64
	err = tx.QueryRowContext(ctx, `SELECT (SELECT value FROM event_meta WHERE key = 'low_watermark'),
		coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'event_log'), 0),
		coalesce((SELECT position FROM event_log WHERE position > ? ORDER BY position LIMIT 1), 0)`, after).Scan(&low, &end, &first)
	if err != nil {
		return nil, q.After, s.fail(ctx, "read", err)
	}
	if after > 0 && after < low {
		return nil, q.After, fmt.Errorf("sqlitestore: read after %s: %w (records up to position %d were deleted)", q.After, store.ErrCursorExpired, low)
	}
	if after > end {
		return nil, q.After, fmt.Errorf("sqlitestore: read after %s: %w: it is past the end of the log (position %d)", q.After, store.ErrInvalidCursor, end)
	}
	if end == after || first == 0 {
		return nil, q.After, nil // nothing after the cursor
	}
	if bounded {
		// The walk starts at the first record, not at the cursor, so
		// that it does not spend itself on positions retention emptied.
		hi = first - 1 + int64(scan)
		args[1] = hi
	}

	// At most end-after records remain: room for them all at once, and
	// little for a poll at the end of the log.
	out := make([]store.Record, 0, min(int64(limit), max(end-after, 0)))
	last := after
	for {
		args[0] = last
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, q.After, s.fail(ctx, "read", err)
		}
		n := 0
		var w row
		for len(out) < limit && rows.Next() {
			n++
			if err := scanRow(rows, &w); err != nil {
				rows.Close()
				return nil, q.After, s.fail(ctx, "read", err)
			}
			last = w.position
			if matchInGo && !store.MatchTopic(q.Topic, w.topic) {
				continue
			}
			r, err := w.record()
			if err != nil {
				rows.Close()
				return nil, q.After, s.fail(ctx, "read", err)
			}
			r.Cursor = encodeCursor(r.Position)
			out = append(out, r)
			w = row{}
		}
		if err := rows.Close(); err != nil {
			return nil, q.After, s.fail(ctx, "read", err)
		}
		if err := rows.Err(); err != nil {
			return nil, q.After, s.fail(ctx, "read", err)
		}
		// A bounded read fetched its whole walk at once.
		if bounded || !matchInGo || len(out) == limit || n < scan {
			break
		}
	}
	if bounded && len(out) < limit {
		// The walk looked at every position up to hi, or to the end.
		last = max(last, min(hi, end))
	}
	if last == after {
		return out, q.After, nil
	}
	return out, encodeCursor(last), nil
}

// topicGlob translates a topic pattern (see store.ValidatePattern) into a
// GLOB that every topic the pattern matches matches too: a wildcard
// segment becomes "*", which also matches dots, so store.MatchTopic still
// decides. It lets SQLite drop most records that do not match before they
// are copied out to Go.
func topicGlob(pattern string) string {
	var b strings.Builder
	for i, seg := range strings.Split(pattern, ".") {
		if i > 0 {
			b.WriteByte('.')
		}
		if seg == "*" || seg == ">" {
			b.WriteByte('*')
			continue
		}
		for _, r := range seg {
			if r == '[' || r == '?' { // '*' cannot occur in a literal segment
				b.WriteByte('[')
				b.WriteRune(r)
				b.WriteByte(']')
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Checkpoint implements [store.Store].
func (s *Store) Checkpoint(ctx context.Context, name string) (store.Cursor, error) {
	if err := store.ValidateName("checkpoint name", name); err != nil {
		return "", fmt.Errorf("sqlitestore: checkpoint: %w", err)
	}
	if err := s.enter(ctx, "checkpoint"); err != nil {
		return "", err
	}
	var c string
	err := s.r.QueryRowContext(ctx, `SELECT cursor FROM event_checkpoints WHERE name = ?`, name).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", s.fail(ctx, "checkpoint "+name, err)
	}
	return store.Cursor(c), nil
}

// SetCheckpoint implements [store.Store].
func (s *Store) SetCheckpoint(ctx context.Context, name string, c store.Cursor) error {
	if err := store.ValidateName("checkpoint name", name); err != nil {
		return fmt.Errorf("sqlitestore: set checkpoint: %w", err)
	}
	if err := s.enter(ctx, "set checkpoint"); err != nil {
		return err
	}
	if _, err := decodeCursor(c); err != nil {
		return fmt.Errorf("sqlitestore: set checkpoint %s: %w", name, err)
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO event_checkpoints (name, cursor) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor`, name, string(c))
	if err != nil {
		return s.fail(ctx, "set checkpoint "+name, err)
	}
	return nil
}

// deleteBatch bounds how many records one retention transaction deletes, so
// that appends wait for it only briefly.
const deleteBatch = 1000

// DeleteBefore implements [store.Store]: it deletes the log's oldest
// records, up to the first whose Time is not before t. It deletes in
// transactions of at most 1000 records and records the highest deleted
// position, below which cursors expire.
func (s *Store) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	if err := s.enter(ctx, "delete before"); err != nil {
		return 0, err
	}
	// Time < t, at microsecond precision: round t up to a whole microsecond.
	cut := t.UnixMicro() + boolInt(t.Nanosecond()%1000 != 0)
	var total int64
	for {
		n, err := s.deleteOnce(ctx, cut)
		total += n
		if err != nil {
			return total, s.fail(ctx, "delete before", err)
		}
		if n < deleteBatch {
			return total, nil
		}
	}
}

// deleteOnce deletes the first records of the log while their Time is
// before cut, at most deleteBatch of them.
func (s *Store) deleteOnce(ctx context.Context, cut int64) (int64, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT position, time_us FROM event_log ORDER BY position LIMIT ?`, deleteBatch)
	if err != nil {
		return 0, err
	}
	var n, high int64
	for rows.Next() {
		var pos, us int64
		if err := rows.Scan(&pos, &us); err != nil {
			rows.Close()
			return 0, err
		}
		if us >= cut {
			break
		}
		n, high = n+1, pos
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil || n == 0 {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM event_log WHERE position <= ?`, high); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE event_meta SET value = max(value, ?) WHERE key = 'low_watermark'`, high); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return n, nil
}
