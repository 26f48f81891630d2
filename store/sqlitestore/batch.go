package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/ncore-io/event/store"
)

// A batch writes the appends of one transaction. It checks each append's
// expectations and IDs in Go, against what the transaction has read and
// written so far, before writing anything: a failed append writes nothing
// and needs no savepoint, and the appends that pass are inserted with a few
// multi-row statements instead of several statements per record. Only the
// writer of the transaction uses it.
//
// An optimistic batch does not look up its IDs before inserting: nearly
// every append brings new IDs, and the lookup cost as much as the insert.
// Should one be stored already, the insert fails on the unique index and
// the caller redoes the transaction with a careful batch, which looks them
// all up. (An optimistic batch still looks up the IDs of an append whose
// expectation fails, since a retried append is told apart by them.)
type batch struct {
	s          *Store
	tx         *sql.Tx
	optimistic bool
	records    int // records taken, for the max batch size

	known    map[string]*row  // stored or inserted rows by ID; nil: not stored
	versions map[string]int64 // current version of aggregates read or written
	dirty    []string         // aggregates whose version changed, in order
	dirtySet map[string]bool
	reqs     []*appendReq // requests added, to resolve

	insertRows []*row // new rows, in append order
}

func newBatch(s *Store, tx *sql.Tx, optimistic bool) *batch {
	return &batch{s: s, tx: tx, optimistic: optimistic,
		known: map[string]*row{}, versions: map[string]int64{}, dirtySet: map[string]bool{}}
}

// Chunk sizes of multi-row statements, well under SQLite's limit of 32766
// bound parameters.
const (
	insertChunk = 100 // rows of 11 parameters
	lookupChunk = 500
)

// add checks reqs and queues their new rows for insertion by finish. A
// request that fails its checks gets its err set; an error returned means
// the transaction is unusable.
func (b *batch) add(ctx context.Context, reqs []*appendReq) error {
	if err := b.load(ctx, reqs); err != nil {
		return err
	}
	for _, req := range reqs {
		b.records += len(req.rows)
		b.reqs = append(b.reqs, req)
		req.err = b.check(req)
		if errors.Is(req.err, errUnknownIDs) {
			if err := b.lookupIDs(ctx, b.unknownIDs(req.rows)); err != nil {
				return err
			}
			req.err = b.check(req)
		}
		if req.err != nil {
			continue
		}
		for i := range req.rows {
			if w := &req.rows[i]; w.same == nil {
				b.insertRows = append(b.insertRows, w)
			}
		}
	}
	return nil
}

// load reads the stored rows of the IDs and the versions of the aggregates
// that reqs name and the batch has not seen.
func (b *batch) load(ctx context.Context, reqs []*appendReq) error {
	var ids, aggs []any
	for _, req := range reqs {
		if !b.optimistic {
			ids = append(ids, b.unknownIDs(req.rows)...)
		}
		for i := range req.rows {
			if a := req.rows[i].aggregateID; a != "" {
				if _, ok := b.versions[a]; !ok {
					b.versions[a] = 0 // until read
					aggs = append(aggs, a)
				}
			}
		}
		for _, e := range req.expect {
			if _, ok := b.versions[e.AggregateID]; !ok {
				b.versions[e.AggregateID] = 0
				aggs = append(aggs, e.AggregateID)
			}
		}
	}
	if err := b.lookupIDs(ctx, ids); err != nil {
		return err
	}
	return b.lookup(ctx, lookupVersions, aggs, func(rows *sql.Rows) error {
		var a string
		var v int64
		if err := rows.Scan(&a, &v); err != nil {
			return err
		}
		b.versions[a] = v
		return nil
	})
}

// unknownIDs returns the IDs of rows that the batch has neither looked up
// nor inserted, each once.
func (b *batch) unknownIDs(rows []row) []any {
	var ids []any
	for i := range rows {
		id := rows[i].id
		if _, ok := b.known[id]; !ok {
			b.known[id] = nil // until read; also skips a repeated ID
			ids = append(ids, id)
		}
	}
	return ids
}

// hasUnknown reports whether the batch has neither looked up nor inserted
// one of the rows' IDs.
func (b *batch) hasUnknown(rows []row) bool {
	for i := range rows {
		if _, ok := b.known[rows[i].id]; !ok {
			return true
		}
	}
	return false
}

// lookupIDs reads the stored rows of ids into the batch's view.
func (b *batch) lookupIDs(ctx context.Context, ids []any) error {
	return b.lookup(ctx, lookupIDs, ids, func(rows *sql.Rows) error {
		w := new(row)
		if err := scanRow(rows, w); err != nil {
			return err
		}
		b.known[w.id] = w
		return nil
	})
}

// lookup runs the lookup statement kind on keys, lookupChunk keys at a
// time, and calls scan for each row found.
func (b *batch) lookup(ctx context.Context, kind stmtKind, keys []any, scan func(*sql.Rows) error) error {
	for len(keys) > 0 {
		n := min(len(keys), lookupChunk)
		rows, err := b.query(ctx, stmtKey{kind, n}, keys[:n])
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				rows.Close()
				return err
			}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// errUnknownIDs is check's answer when it needs req's stored rows, which an
// optimistic batch has not read.
var errUnknownIDs = errors.New("sqlitestore: IDs not looked up")

// check decides req against the batch's view: it fails on a broken
// expectation (unless req is a replay of stored records) or an ID stored
// with other content; otherwise it assigns versions, links records already
// stored to their rows and records req's new rows in the view.
func (b *batch) check(req *appendReq) error {
	for _, e := range req.expect {
		if v := b.versions[e.AggregateID]; v != e.Version {
			if b.optimistic && b.hasUnknown(req.rows) {
				return errUnknownIDs
			}
			if b.replay(req) {
				return nil
			}
			return &store.VersionConflictError{AggregateID: e.AggregateID, Expected: e.Version, Actual: v}
		}
	}
	for i := range req.rows {
		w := &req.rows[i]
		w.same = nil
		if old := b.known[w.id]; old != nil {
			if !w.sameContent(old) {
				return fmt.Errorf("%w: %s", store.ErrDuplicateID, w.id)
			}
			w.same = old
		}
	}
	// Passed: assign versions and publish the new rows to later requests.
	for i := range req.rows {
		w := &req.rows[i]
		if w.same != nil {
			continue
		}
		w.version = 0
		if a := w.aggregateID; a != "" {
			w.version = b.versions[a] + 1
			b.versions[a] = w.version
			if !b.dirtySet[a] {
				b.dirtySet[a] = true
				b.dirty = append(b.dirty, a)
			}
		}
		b.known[w.id] = w
	}
	return nil
}

// replay reports whether every record of req is stored (or inserted by this
// batch) with the same content, and if so links them.
func (b *batch) replay(req *appendReq) bool {
	for i := range req.rows {
		old := b.known[req.rows[i].id]
		if old == nil || !req.rows[i].sameContent(old) {
			return false
		}
	}
	for i := range req.rows {
		req.rows[i].same = b.known[req.rows[i].id]
	}
	return true
}

// insert writes rows with multi-row INSERTs and sets their positions.
func (b *batch) insert(ctx context.Context, rows []*row) error {
	for len(rows) > 0 {
		n := min(len(rows), insertChunk)
		args := make([]any, 0, 11*n)
		for _, w := range rows[:n] {
			args = append(args, w.id, w.topic, w.kind, nullString(w.aggregateID), w.version, w.timeUS,
				nullString(w.metadata), w.payloadType, w.contentType, w.payload, w.part)
		}
		res, err := b.exec(ctx, stmtKey{insertRows, n}, args)
		if err != nil {
			return err
		}
		// One statement under the write lock: AUTOINCREMENT numbers its
		// rows consecutively, in order, ending at the last insert ID.
		last, err := res.LastInsertId()
		if err != nil {
			return err
		}
		if got, err := res.RowsAffected(); err != nil || got != int64(n) {
			return fmt.Errorf("inserted %d records, expected %d (%v)", got, n, err)
		}
		for i, w := range rows[:n] {
			w.position = last - int64(n-1-i)
		}
		rows = rows[n:]
	}
	return nil
}

// finish inserts the new rows and saves the versions of the aggregates the
// batch advanced.
func (b *batch) finish(ctx context.Context) error {
	if err := b.insert(ctx, b.insertRows); err != nil {
		return err
	}
	b.insertRows = nil
	for len(b.dirty) > 0 {
		n := min(len(b.dirty), lookupChunk)
		args := make([]any, 0, 2*n)
		for _, a := range b.dirty[:n] {
			args = append(args, a, b.versions[a])
		}
		if _, err := b.exec(ctx, stmtKey{saveVersions, n}, args); err != nil {
			return err
		}
		b.dirty = b.dirty[n:]
	}
	return nil
}

// resolve copies positions and versions to records that were already
// stored, once the inserts are done.
func (b *batch) resolve() {
	for _, req := range b.reqs {
		if req.err != nil {
			continue
		}
		for i := range req.rows {
			if w := &req.rows[i]; w.same != nil {
				w.position, w.version = w.same.position, w.same.version
			}
		}
	}
}

// query runs the statement key in the batch's transaction: prepared, if the
// writer has prepared it already, else from its text. (It cannot be prepared
// on the DB here: the transaction holds the DB's only connection.)
func (b *batch) query(ctx context.Context, key stmtKey, args []any) (*sql.Rows, error) {
	if stmt := b.s.cachedStmt(key); stmt != nil {
		return b.tx.StmtContext(ctx, stmt).QueryContext(ctx, args...)
	}
	return b.tx.QueryContext(ctx, key.sql(), args...)
}

// exec runs the statement key in the batch's transaction, like query.
func (b *batch) exec(ctx context.Context, key stmtKey, args []any) (sql.Result, error) {
	if stmt := b.s.cachedStmt(key); stmt != nil {
		return b.tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
	}
	return b.tx.ExecContext(ctx, key.sql(), args...)
}

// stmtKey names a multi-row statement of the writer: its kind and row count.
type stmtKey struct {
	kind stmtKind
	n    int
}

type stmtKind int

const (
	lookupIDs stmtKind = iota
	lookupVersions
	insertRows
	saveVersions
)

func (k stmtKey) sql() string {
	list := func(tuple string) string { return tuple + strings.Repeat(", "+tuple, k.n-1) }
	switch k.kind {
	case lookupIDs:
		return `SELECT ` + recordColumns + ` FROM event_log WHERE id IN (` + list("?") + `)`
	case lookupVersions:
		return `SELECT aggregate_id, version FROM event_aggregates WHERE aggregate_id IN (` + list("?") + `)`
	case insertRows:
		return `INSERT INTO event_log (id, topic, kind, aggregate_id, version, time_us, metadata, payload_type, content_type, payload, part) VALUES ` +
			list("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	case saveVersions:
		return `INSERT INTO event_aggregates (aggregate_id, version) VALUES ` + list("(?, ?)") +
			` ON CONFLICT (aggregate_id) DO UPDATE SET version = excluded.version`
	}
	panic("sqlitestore: unknown statement kind")
}

// cachedStmt returns the prepared statement for key, or nil after noting
// that the writer should prepare it.
func (s *Store) cachedStmt(key stmtKey) *sql.Stmt {
	s.stmtsMu.Lock()
	defer s.stmtsMu.Unlock()
	st, ok := s.stmts[key]
	if !ok {
		s.stmts[key] = nil // wanted
		s.wanted++
	}
	return st
}

// prepareWanted prepares the statements that transactions asked for. The
// writer calls it while it holds no connection. The cache is bounded: row
// counts are at most a chunk size.
func (s *Store) prepareWanted(ctx context.Context) {
	s.stmtsMu.Lock()
	if s.wanted == 0 {
		s.stmtsMu.Unlock()
		return
	}
	s.wanted = 0
	var want []stmtKey
	for k, st := range s.stmts {
		if st == nil {
			want = append(want, k)
		}
	}
	s.stmtsMu.Unlock()
	for _, k := range want {
		st, err := s.w.PrepareContext(ctx, k.sql())
		if err != nil {
			return // not needed for correctness; try again later
		}
		s.stmtsMu.Lock()
		s.stmts[k] = st
		s.stmtsMu.Unlock()
	}
}
