package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ncore-io/event/store"
)

const (
	insertSQL = `INSERT INTO event_log (id, topic, kind, aggregate_id, version, time_us, metadata, payload_type, content_type, payload)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`
	getVersionSQL = `SELECT version FROM event_aggregates WHERE aggregate_id = ?`
	putVersionSQL = `INSERT INTO event_aggregates (aggregate_id, version) VALUES (?, ?)
		ON CONFLICT (aggregate_id) DO UPDATE SET version = excluded.version`
	loadIDSQL = `SELECT ` + recordColumns + ` FROM event_log WHERE id = ?`
)

// An appendReq is one Append call waiting for the group-commit writer.
type appendReq struct {
	rows   []row
	expect []store.Expect
	// state settles who owns the request: the writer takes it (pending ->
	// taken) before writing it, or the caller abandons it (pending ->
	// abandoned) when its context ends or the store closes first. So an
	// abandoned request is certainly not stored, and a taken one always
	// gets a result.
	state atomic.Int32
	done  chan error // buffered: the writer never blocks on it
}

const (
	pending int32 = iota
	taken
	abandoned
)

// Append implements [store.Store]. Concurrent Appends are queued to one
// writer goroutine that commits everything queued in one transaction (one
// fsync), each Append in its own savepoint so that a failed expectation or
// a duplicate ID fails only that Append. If ctx ends while the Append is
// queued, Append returns ctx's error and has stored nothing; once the
// writer has taken it, Append waits for its commit and reports its result.
func (s *Store) Append(ctx context.Context, recs []store.Record, expect ...store.Expect) error {
	if err := s.enter(ctx, "append"); err != nil {
		return err
	}
	req, err := s.newRequest(recs, expect)
	if err != nil {
		return err
	}
	select {
	case s.queue <- req:
	case <-ctx.Done():
		return fmt.Errorf("sqlitestore: append: %w", ctx.Err())
	case <-s.quit:
		return fmt.Errorf("sqlitestore: append: %w", store.ErrClosed)
	}
	var res error
	select {
	case res = <-req.done:
	case <-ctx.Done():
		if req.state.CompareAndSwap(pending, abandoned) {
			return fmt.Errorf("sqlitestore: append: %w", ctx.Err())
		}
		res = <-req.done // taken: the commit is under way
	case <-s.exited:
		if req.state.CompareAndSwap(pending, abandoned) {
			return fmt.Errorf("sqlitestore: append: %w", store.ErrClosed)
		}
		res = <-req.done
	}
	if res != nil {
		return res
	}
	for i := range recs {
		recs[i].Position, recs[i].Version = req.rows[i].position, req.rows[i].version
	}
	return nil
}

func (s *Store) newRequest(recs []store.Record, expect []store.Expect) (*appendReq, error) {
	if err := store.ValidateRecords(recs, expect, s.cfg.maxPayload); err != nil {
		return nil, fmt.Errorf("sqlitestore: append: %w", err)
	}
	req := &appendReq{rows: make([]row, len(recs)), expect: expect, done: make(chan error, 1)}
	for i := range recs {
		var err error
		if req.rows[i], err = toRow(&recs[i]); err != nil {
			return nil, fmt.Errorf("sqlitestore: append: %w: %w", store.ErrInvalidRecord, err)
		}
	}
	return req, nil
}

// AppendTx appends recs inside tx, the caller's transaction, with the
// semantics of [Store.Append]: the events commit or roll back with the
// caller's own writes (the transactional outbox). Position and Version are
// written back when AppendTx returns, and are final once tx commits. A
// failed AppendTx (a conflict, a duplicate ID) leaves tx as it was, so the
// caller may go on or roll back.
//
// tx must be a transaction on [Store.DB]: SQLite has one writer, and the
// store's writer connection is it. Use tx from one goroutine at a time.
func (s *Store) AppendTx(ctx context.Context, tx *sql.Tx, recs []store.Record, expect ...store.Expect) error {
	if err := s.enter(ctx, "append in transaction"); err != nil {
		return err
	}
	if tx == nil {
		return errors.New("sqlitestore: append in transaction: nil transaction")
	}
	req, err := s.newRequest(recs, expect)
	if err != nil {
		return err
	}
	st := stmts{
		insert:     tx.StmtContext(ctx, s.insert),
		getVersion: tx.StmtContext(ctx, s.getVersion),
		putVersion: tx.StmtContext(ctx, s.putVersion),
		loadID:     tx.StmtContext(ctx, s.loadID),
	}
	defer st.close()
	if err := s.applySavepoint(ctx, tx, &st, req); err != nil {
		return fmt.Errorf("sqlitestore: append in transaction: %w", err)
	}
	for i := range recs {
		recs[i].Position, recs[i].Version = req.rows[i].position, req.rows[i].version
	}
	return nil
}

// run is the group-commit writer goroutine.
func (s *Store) run() {
	defer close(s.exited)
	// connCtx ends with Close, to stop waiting for the connection that a
	// caller's outbox transaction may hold. Statements run without it, so a
	// commit in progress finishes.
	connCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-connCtx.Done():
		}
	}()
	var batch []*appendReq
	for {
		select {
		case req := <-s.queue:
			batch = append(batch[:0], req)
		case <-s.quit:
			return
		}
		if s.cfg.maxDelay > 0 {
			batch = s.gather(batch)
		}
		if err := s.commit(connCtx, batch); err != nil && connCtx.Err() != nil {
			return
		}
		clear(batch)
	}
}

// gather waits up to maxDelay for more requests to join batch.
func (s *Store) gather(batch []*appendReq) []*appendReq {
	n := len(batch[0].rows)
	timer := time.NewTimer(s.cfg.maxDelay)
	defer timer.Stop()
	for n < s.cfg.maxBatch {
		select {
		case req := <-s.queue:
			batch = append(batch, req)
			n += len(req.rows)
		case <-timer.C:
			return batch
		case <-s.quit:
			return batch
		}
	}
	return batch
}

// commit writes batch, plus whatever else is queued when the transaction
// has begun, in one transaction.
func (s *Store) commit(connCtx context.Context, batch []*appendReq) error {
	ctx := context.Background()
	conn, err := s.w.Conn(connCtx)
	if err != nil {
		if connCtx.Err() == nil {
			s.failAll(batch, err)
		} // else closing: the callers, not taken, see exited and give up
		return err
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		s.failAll(batch, err)
		return err
	}
	defer tx.Rollback()
	// Take what queued up while the previous commit ran.
	n := 0
	for _, r := range batch {
		n += len(r.rows)
	}
drain:
	for n < s.cfg.maxBatch {
		select {
		case req := <-s.queue:
			batch = append(batch, req)
			n += len(req.rows)
		default:
			break drain
		}
	}

	st := stmts{
		insert:     tx.StmtContext(ctx, s.insert),
		getVersion: tx.StmtContext(ctx, s.getVersion),
		putVersion: tx.StmtContext(ctx, s.putVersion),
		loadID:     tx.StmtContext(ctx, s.loadID),
	}
	defer st.close()
	results := make([]error, len(batch))
	for i, req := range batch {
		if !req.state.CompareAndSwap(pending, taken) {
			batch[i] = nil // abandoned by its caller
			continue
		}
		if err := s.applySavepoint(ctx, tx, &st, req); err != nil {
			var de *domainError
			if !errors.As(err, &de) {
				// The transaction may be unusable: fail the whole batch.
				s.failAll(batch, err)
				return err
			}
			results[i] = fmt.Errorf("sqlitestore: append: %w", de.err)
		}
	}
	if err := tx.Commit(); err != nil {
		s.failAll(batch, err)
		return err
	}
	s.commits.Add(1)
	for i, req := range batch {
		if req != nil {
			req.done <- results[i]
		}
	}
	return nil
}

// failAll fails every request of batch that the writer has taken or can
// still take.
func (s *Store) failAll(batch []*appendReq, err error) {
	s.log.Error("sqlitestore: group commit failed", "path", s.path, "err", err)
	for _, req := range batch {
		if req == nil {
			continue
		}
		if req.state.Load() == taken || req.state.CompareAndSwap(pending, taken) {
			req.done <- fmt.Errorf("sqlitestore: append: %w", err)
		}
	}
}

// domainError is a failure of one batch (conflict, duplicate ID) that
// leaves the transaction usable.
type domainError struct{ err error }

func (e *domainError) Error() string { return e.err.Error() }
func (e *domainError) Unwrap() error { return e.err }

type stmts struct{ insert, getVersion, putVersion, loadID *sql.Stmt }

func (st *stmts) close() {
	st.insert.Close()
	st.getVersion.Close()
	st.putVersion.Close()
	st.loadID.Close()
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// applySavepoint applies req inside a savepoint when it has more than one
// record, so that a failure part-way undoes its earlier inserts and nothing
// else. (A single record fails before it writes anything.)
func (s *Store) applySavepoint(ctx context.Context, tx execer, st *stmts, req *appendReq) error {
	if len(req.rows) == 1 {
		return s.apply(ctx, st, req)
	}
	if _, err := tx.ExecContext(ctx, `SAVEPOINT append`); err != nil {
		return err
	}
	err := s.apply(ctx, st, req)
	if err != nil {
		if _, rbErr := tx.ExecContext(ctx, `ROLLBACK TO append`); rbErr != nil {
			return errors.Join(err, rbErr)
		}
	}
	if _, relErr := tx.ExecContext(ctx, `RELEASE append`); relErr != nil {
		return errors.Join(err, relErr)
	}
	return err
}

// apply checks req's expectations, inserts its rows and advances its
// aggregates' versions, setting each row's position and version. It
// returns a *domainError for a failure of req alone.
func (s *Store) apply(ctx context.Context, st *stmts, req *appendReq) error {
	// Current versions of the aggregates involved.
	var versions map[string]int64
	version := func(agg string) (int64, error) {
		if v, ok := versions[agg]; ok {
			return v, nil
		}
		if versions == nil {
			versions = make(map[string]int64, 2)
		}
		var v int64
		err := st.getVersion.QueryRowContext(ctx, agg).Scan(&v)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, err
		}
		versions[agg] = v
		return v, nil
	}
	for _, e := range req.expect {
		v, err := version(e.AggregateID)
		if err != nil {
			return err
		}
		if v != e.Version {
			// A batch that is stored already is a retry: it succeeded.
			if replay, err := s.replay(ctx, st, req); err != nil || replay {
				return err
			}
			return &domainError{&store.VersionConflictError{AggregateID: e.AggregateID, Expected: e.Version, Actual: v}}
		}
	}
	var changed []string
	for i := range req.rows {
		w := &req.rows[i]
		w.version = 0
		if w.aggregateID != "" {
			v, err := version(w.aggregateID)
			if err != nil {
				return err
			}
			w.version = v + 1
		}
		res, err := st.insert.ExecContext(ctx, w.id, w.topic, w.kind, nullString(w.aggregateID), w.version, w.timeUS,
			nullString(w.metadata), w.payloadType, w.contentType, w.payload)
		if err != nil {
			return err
		}
		inserted, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if inserted == 0 {
			// The ID is stored: fine if it is the same event.
			var old row
			if err := scanRow(st.loadID.QueryRowContext(ctx, w.id), &old); err != nil {
				return err
			}
			if !w.sameContent(&old) {
				return &domainError{fmt.Errorf("%w: %s", store.ErrDuplicateID, w.id)}
			}
			w.position, w.version = old.position, old.version
			continue
		}
		if w.position, err = res.LastInsertId(); err != nil {
			return err
		}
		if w.aggregateID != "" {
			if !slices.Contains(changed, w.aggregateID) {
				changed = append(changed, w.aggregateID)
			}
			versions[w.aggregateID] = w.version
		}
	}
	for _, agg := range changed {
		if _, err := st.putVersion.ExecContext(ctx, agg, versions[agg]); err != nil {
			return err
		}
	}
	return nil
}

// replay reports whether every record of req is stored with the same
// content, and if so sets their positions and versions.
func (s *Store) replay(ctx context.Context, st *stmts, req *appendReq) (bool, error) {
	found := make([]row, len(req.rows))
	for i := range req.rows {
		err := scanRow(st.loadID.QueryRowContext(ctx, req.rows[i].id), &found[i])
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !req.rows[i].sameContent(&found[i]) {
			return false, nil
		}
	}
	for i := range req.rows {
		req.rows[i].position, req.rows[i].version = found[i].position, found[i].version
	}
	return true, nil
}
