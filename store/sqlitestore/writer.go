package sqlitestore

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ncore-io/event/store"
)

// An appendReq is one Append call waiting for the group-commit writer.
type appendReq struct {
	rows   []row
	expect []store.Expect
	err    error // the request's own failure, set by the writer
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

// carefulCommits is how many commits after a redo look up their IDs
// first.
const carefulCommits = 16

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
		s.prepareWanted(connCtx)
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

// commit writes batch in one transaction, together with every request that
// queues up while the transaction is being written, up to maxBatch records.
// Taking late arrivals matters: the callers of the previous commit queue
// again while this one is written, and would otherwise wait a whole extra
// commit, halving the batches.
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

	// Optimistic unless a recent commit had to redo: appends of stored IDs
	// come in runs (a relay resending its outbox), and each would cost a
	// redo.
	b := newBatch(s, tx, s.careful == 0)
	s.careful = max(s.careful-1, 0)
	var all []*appendReq
	round := batch
	for {
		// Take the round's requests that their callers have not abandoned.
		kept := round[:0]
		for _, req := range round {
			if req.state.CompareAndSwap(pending, taken) {
				kept = append(kept, req)
			}
		}
		all = append(all, kept...)
		if s.afterTake != nil {
			s.afterTake()
		}
		if err := b.add(ctx, kept); err != nil {
			s.failAll(all, err)
			return err
		}
		round = s.drain(round[:0], s.cfg.maxBatch-b.records)
		if len(round) == 0 && b.records < s.cfg.maxBatch {
			// Let runnable appenders, such as the callers of the previous
			// commit, queue before this one closes. This waits for no
			// timer: it returns at once when nobody else is runnable.
			runtime.Gosched()
			round = s.drain(round, s.cfg.maxBatch-b.records)
		}
		if len(round) == 0 {
			break
		}
	}
	err = b.finish(ctx)
	if err != nil && b.optimistic {
		// Most likely an ID that is stored already: redo the transaction
		// with a batch that looks up every ID and so handles it.
		s.careful = carefulCommits
		s.redos.Add(1)
		tx.Rollback()
		if tx, err = conn.BeginTx(ctx, nil); err != nil {
			s.failAll(all, err)
			return err
		}
		defer tx.Rollback()
		b = newBatch(s, tx, false)
		err = b.add(ctx, all)
		if err == nil {
			err = b.finish(ctx)
		}
	}
	if err == nil {
		// Last, so that the check covers the whole transaction.
		if err = s.checkFile(); err != nil {
			tx.Rollback()
			s.settle(ctx, conn)
		}
	}
	if err != nil {
		s.failAll(all, err)
		return err
	}
	if err := tx.Commit(); err != nil {
		s.failAll(all, err)
		return err
	}
	s.commits.Add(1)
	b.resolve()
	for _, req := range all {
		req.done <- req.err
	}
	s.signal()
	return nil
}

// drain appends to round the requests queued now, up to about room records.
func (s *Store) drain(round []*appendReq, room int) []*appendReq {
	for room > 0 {
		select {
		case req := <-s.queue:
			round = append(round, req)
			room -= len(req.rows)
		default:
			return round
		}
	}
	return round
}

// failAll fails the taken requests of a transaction that did not commit.
func (s *Store) failAll(reqs []*appendReq, err error) {
	err = explain(s.path, err)
	s.log.Error("sqlitestore: group commit failed", "path", s.path, "err", err)
	for _, req := range reqs {
		if req.state.Load() == taken || req.state.CompareAndSwap(pending, taken) {
			req.done <- err
		}
	}
}
