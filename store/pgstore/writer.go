package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ncore-io/event/store"
)

// request is one Append call waiting for the writer.
type request struct {
	ctx  context.Context
	args *args
	at   time.Time // when it was queued, if the writer delays groups
	res  []result  // set by the writer before done is closed
	err  error
	done chan struct{}
}

func (r *request) reply(res []result, err error) {
	r.res, r.err = res, err
	close(r.done)
}

// writer runs group commit: each of its goroutines takes every Append
// queued while it was busy, up to maxBatch records, and stores them in one
// transaction. By default it adds no delay of its own: under light load a
// group is one call, under heavy load it grows with the queue. With a
// maxDelay (see WithGroupCommit) it waits, up to maxDelay after the first
// queued Append, for the group to fill.
//
// The writer can run several groups at once, each on its own connection
// (inflight goroutines), so that one group's WAL flush overlaps the next
// group's work; it runs one, for the reason given at inflight. Concurrent
// groups would be separate
// transactions, exactly as appends from several processes are, and rely on
// what those rely on: the aggregate row locks keep versions dense (a group
// that touches an aggregate that another group is appending to waits for
// that group to end, then numbers on from its committed version), and the
// read horizon keeps readers from passing a group that commits after a
// later one.
type writer struct {
	s    *Store
	wake chan struct{} // capacity 1: a pending wake-up
	stop chan struct{}
	done sync.WaitGroup

	mu      sync.Mutex
	queue   []*request
	records int // records in queue
	closed  bool
}

// inflight is how many groups commit at once. It is one: with two, a
// group could take its positions before an overlapping group yet commit
// with a later transaction ID, so a reader's order (by transaction, then
// position) would not be ascending by Position for one process's own
// appends. Two measured about 20% faster (8.6k against 7k events/s).
const inflight = 1

func startWriter(s *Store) *writer {
	w := &writer{s: s, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	for range inflight {
		w.done.Go(w.run)
	}
	return w
}

func (w *writer) submit(r *request) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return store.ErrClosed
	}
	if w.s.opts.maxDelay > 0 {
		r.at = time.Now()
	}
	w.queue = append(w.queue, r)
	w.records += r.args.len()
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

// withdraw removes r from the queue if the writer has not taken it yet,
// and reports whether it did: a withdrawn request is certainly not stored.
func (w *writer) withdraw(r *request) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := slices.Index(w.queue, r)
	if i < 0 {
		return false
	}
	w.queue = slices.Delete(w.queue, i, i+1)
	w.records -= r.args.len()
	return true
}

// close fails the queued requests with store.ErrClosed at once, lets the
// groups under way finish, and waits for the goroutines to end.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	q := w.queue
	w.queue, w.records = nil, 0
	w.mu.Unlock()
	for _, r := range q {
		r.reply(nil, store.ErrClosed)
	}
	close(w.stop)
	w.done.Wait()
}

func (w *writer) run() {
	for {
		select {
		case <-w.wake:
		case <-w.stop:
			return
		}
		for {
			select {
			case <-w.stop:
				return // close has failed what was queued
			default:
			}
			// Let the callers that the last commit woke, if runnable, queue
			// their next appends before the group closes. Otherwise the
			// group takes only those that queued during the commit, and
			// under steady load the callers split into two halves that
			// take turns, each commit carrying half of them. This waits
			// for no timer: it returns at once when nobody else is
			// runnable.
			runtime.Gosched()
			if w.s.opts.maxDelay > 0 && !w.gather() {
				return
			}
			group := w.take()
			if len(group) == 0 {
				break
			}
			if len(w.wake) == 0 && w.queueLen() > 0 {
				// Hand what is left to an idle goroutine.
				select {
				case w.wake <- struct{}{}:
				default:
				}
			}
			w.s.commitGroup(group)
		}
	}
}

// gather waits until the queue holds maxBatch records or its first request
// has waited maxDelay, whichever comes first, so that a group takes the
// appends that arrive meanwhile. It reports false if the writer stopped.
func (w *writer) gather() bool {
	for {
		w.mu.Lock()
		if len(w.queue) == 0 || w.records >= w.s.opts.maxBatch {
			w.mu.Unlock()
			return true
		}
		wait := time.Until(w.queue[0].at.Add(w.s.opts.maxDelay))
		w.mu.Unlock()
		if wait <= 0 {
			return true
		}
		t := time.NewTimer(wait)
		select {
		case <-w.wake: // another append queued
		case <-t.C:
		case <-w.stop:
			t.Stop()
			return false
		}
		t.Stop()
	}
}

func (w *writer) queueLen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// take removes from the queue the requests of the next group: at least
// one, then as many as fit in maxBatch records.
func (w *writer) take() []*request {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, total := 0, 0
	for n < len(w.queue) {
		k := w.queue[n].args.len()
		if n > 0 && total+k > w.s.opts.maxBatch {
			break
		}
		total += k
		n++
	}
	w.records -= total
	group := make([]*request, n)
	copy(group, w.queue)
	rest := copy(w.queue, w.queue[n:])
	clear(w.queue[rest:])
	w.queue = w.queue[:rest]
	return group
}

// commitGroup stores a group. The fast path merges the batches into one
// call of the append function, one statement in its own transaction: one
// round trip and one commit. If that fails for any reason (a conflict, a
// stored ID, a bad value) nothing was stored, and each batch is retried in
// its own savepoint of one transaction, so the failure stays with the
// batch that caused it.
func (s *Store) commitGroup(group []*request) {
	live := group[:0:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.reply(nil, err)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := groupContext(live)
	defer cancel()

	merged := live[0].args
	if len(live) > 1 {
		merged = merge(live)
	}
	res, err := s.appendGroup(ctx, merged)
	for attempt := 1; isOrderConflict(err) && attempt < orderRetries && ctx.Err() == nil; attempt++ {
		// Another transaction with a later ID appended to one of the
		// aggregates first; a new transaction gets a later ID still.
		res, err = s.appendGroup(ctx, merged)
	}
	if err == nil {
		off := 0
		for _, r := range live {
			n := r.args.len()
			r.reply(res[off:off+n:off+n], nil)
			off += n
		}
		return
	}
	if len(live) == 1 {
		// Alone in the group, a conflict is this caller's own.
		if cerr := conflictError(err); cerr != err {
			live[0].reply(nil, cerr)
			return
		}
	}
	if ctx.Err() != nil {
		// Every caller gave up, which cancelled the statement: it may
		// have committed before it heard.
		err = outcome(err)
		for _, r := range live {
			r.reply(nil, err)
		}
		return
	}
	s.log.Debug("pgstore: group commit failed, retrying batch by batch", slog.Int("batches", len(live)), slog.Any("error", err))
	s.commitOneByOne(ctx, live, uncertain(err))
}

// appendGroup runs the append statement on a in its own transaction. It
// sends it in one round trip behind a statement that makes the append
// statement use its generic plan: the planner cannot improve on it with
// the arrays' values, and planning the statement anew, which PostgreSQL
// otherwise keeps doing for parameters as variable as these, costs more
// than running it. The two statements share the pipeline's implicit
// transaction, to which the setting is local.
func (s *Store) appendGroup(ctx context.Context, a *args) ([]result, error) {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	res, _, err := s.execAppend(ctx, c.Conn(), s.prepare, a, false, genericPlanSQL, "")
	if err != nil {
		return nil, err
	}
	s.notes.kick()
	return res, nil
}

const genericPlanSQL = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"

func (s *Store) commitOneByOne(ctx context.Context, group []*request, maybe bool) {
	// fail replies with an error that leaves this transaction's work
	// undone, which says nothing about the group's attempt: when that may
	// have committed, so may the request.
	fail := func(r *request, err error) {
		if maybe {
			err = fmt.Errorf("%w: %w", store.ErrMaybeStored, err)
		}
		r.reply(nil, err)
	}
	tx, err := s.pool.Begin(ctx)
	if err == nil {
		err = s.lockAggregates(ctx, tx, group)
	}
	for attempt := 1; isOrderConflict(err) && attempt < orderRetries && ctx.Err() == nil; attempt++ {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		if tx, err = s.pool.Begin(ctx); err == nil {
			err = s.lockAggregates(ctx, tx, group)
		}
	}
	if err != nil {
		if tx != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
		for _, r := range group {
			fail(r, err)
		}
		return
	}
	var ok []*request
	for i, r := range group {
		if err := r.ctx.Err(); err != nil {
			fail(r, err)
			continue
		}
		res, err := s.appendTx(ctx, tx, r.args)
		var broken txBroken
		if errors.As(err, &broken) {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			for _, o := range ok {
				fail(o, err)
			}
			for _, o := range group[i:] {
				fail(o, err)
			}
			return
		}
		if err != nil {
			// Decided against what is stored, the group's attempt
			// included: a conflict or a stored ID of other content.
			r.reply(nil, err)
			continue
		}
		r.res = res
		ok = append(ok, r)
	}
	if err := tx.Commit(ctx); err != nil {
		if maybe || uncertain(err) {
			err = fmt.Errorf("%w: %w", store.ErrMaybeStored, err)
		}
		for _, r := range ok {
			r.reply(nil, err)
		}
		return
	}
	for _, r := range ok {
		r.reply(r.res, nil)
	}
}

// lockAggregates locks, in aggregate_id order, the aggregate rows that the
// group's batches touch, creating missing ones at version 0 (no events yet,
// which is what a missing row means), and fails with an order conflict if
// a transaction with a later ID appended to one of them (see migration 5),
// after which no batch of the group could append to it here. Batch by batch, the rows would be
// locked in the batches' order, and a concurrent appender locking in
// aggregate_id order (the one-statement path, here or in another process)
// could deadlock with it. A row created here for a batch that then fails
// stays at version 0, which changes nothing.
func (s *Store) lockAggregates(ctx context.Context, tx pgx.Tx, group []*request) error {
	seen := map[string]bool{}
	var aggs []string
	for _, r := range group {
		for _, list := range [][]string{r.args.aggs, r.args.eaggs} {
			for _, a := range list {
				if a != "" && !seen[a] {
					seen[a] = true
					aggs = append(aggs, a)
				}
			}
		}
	}
	if len(aggs) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, "WITH u AS (INSERT INTO "+s.schema+".aggregates AS t (aggregate_id, version, txid) "+
		"SELECT a, 0, "+s.schema+".log_xid(pg_current_xact_id()) FROM unnest($1::text[]) AS a ORDER BY a "+
		"ON CONFLICT (aggregate_id) DO UPDATE SET version = t.version WHERE t.txid <= excluded.txid RETURNING 1) "+
		"SELECT "+s.schema+".order_conflict(a) FROM unnest($1::text[]) AS a WHERE (SELECT count(*) FROM u) < cardinality($1::text[]) LIMIT 1", aggs)
	if err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

// orderRetries is how many times a group commit tries again in a new
// transaction after an order conflict (see migration 5).
const orderRetries = 5

// isOrderConflict reports the failure of an append whose transaction began
// before another that appended to one of its aggregates. In the writer's
// own transactions a serialization failure can only be that.
func isOrderConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "40001"
}

// outcome marks err, the failure of a statement that may have committed
// its transaction, with store.ErrMaybeStored unless it is certain that
// nothing was committed: the server reported an error (and so rolled back),
// or pgx failed before it sent anything. A connection lost, or a context
// that ended, while the server was committing leaves the outcome unknown.
func outcome(err error) error {
	if !uncertain(err) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrMaybeStored, err)
}

// uncertain reports whether a statement that failed with err may have
// committed its transaction all the same (see outcome). One that could not
// connect sent nothing, though pgconn does not mark that safe to retry.
func uncertain(err error) bool {
	var pe *pgconn.PgError
	var ce *pgconn.ConnectError
	return !errors.As(err, &pe) && !errors.As(err, &ce) && !pgconn.SafeToRetry(err)
}

// groupContext is done when every caller in the group has given up: the
// work is then for nobody. It does not end otherwise, so Close waits for
// the group under way.
func groupContext(group []*request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	left := len(group)
	stops := make([]func() bool, 0, len(group))
	for _, r := range group {
		if r.ctx.Done() == nil {
			continue // never gives up
		}
		stops = append(stops, context.AfterFunc(r.ctx, func() {
			mu.Lock()
			left--
			all := left == 0
			mu.Unlock()
			if all {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
