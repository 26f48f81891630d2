package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ncore-io/event/store"
)

// Notify reports appends to the store, by this process or any other, for
// consumers that would otherwise poll. It LISTENs on a connection of its
// own (not from the pool) to the channel that appends NOTIFY after they
// commit (see notifier), and sends on the returned channel soon after each
// commit that appended.
// Signals coalesce: the channel has room for one, so a slow reader gets one
// signal for many commits and should then Read until it has caught up.
//
// Appends committed after Notify returns are signalled; to miss nothing,
// call Notify before the first Read. If the connection is lost, Notify
// reconnects with backoff and then sends a signal, since commits in
// between went unnoticed. A read may find a signalled record hidden behind
// an older transaction still running (see Order in the package
// documentation), whose end sends no signal; so when reads find records
// hidden so, every channel is signalled again soon after, and then less
// and less often while they stay hidden. The channel is closed, and the
// connection with it, when ctx ends or the store is closed. Notify is safe
// for concurrent use; each call has its own connection.
//
// A store opened with [WithoutListen] opens no connection: Notify fails
// with an error matching [errors.ErrUnsupported].
func (s *Store) Notify(ctx context.Context) (<-chan struct{}, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("pgstore: notify: %w", store.ErrClosed)
	}
	if s.opts.noListen {
		s.mu.Unlock()
		return nil, fmt.Errorf("pgstore: notify: the store was opened WithoutListen: %w", errors.ErrUnsupported)
	}
	s.watchers.Add(1)
	s.mu.Unlock()

	conn, err := s.listen(ctx)
	if err != nil {
		s.watchers.Done()
		return nil, fmt.Errorf("pgstore: notify: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.life, cancel)
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.watches[ch] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer s.watchers.Done()
		defer stop()
		defer cancel()
		defer func() {
			s.mu.Lock()
			delete(s.watches, ch)
			s.mu.Unlock()
			close(ch)
		}()
		s.watch(wctx, conn, ch)
	}()
	return ch, nil
}

// Delays between the signals sent again for hidden records (see
// hiddenFound): from the first, doubling while reads keep finding some, up
// to the longest.
const (
	firstHiddenWake   = 10 * time.Millisecond
	longestHiddenWake = time.Second
)

// hiddenFound is told, after each read, whether it found committed records
// past the horizon (see hiddenSQL). A reader woken by their signals got
// there too early: the transaction that hides them ends without a signal
// of its own. So the store signals every watch again soon, and again, less
// and less often, while reads keep finding records hidden.
func (s *Store) hiddenFound(hidden bool) {
	if !hidden {
		if s.hiddenWait.Load() != 0 {
			s.hiddenWait.Store(0)
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.hiddenWake != nil || len(s.watches) == 0 {
		return // closing, a signal is due already, or nobody to signal
	}
	d := time.Duration(s.hiddenWait.Load())
	d = min(max(2*d, firstHiddenWake), longestHiddenWake)
	s.hiddenWait.Store(int64(d))
	s.hiddenWake = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.hiddenWake = nil
		for ch := range s.watches {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	})
}

func (s *Store) watch(ctx context.Context, conn *pgx.Conn, ch chan<- struct{}) {
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	backoff := 50 * time.Millisecond
	for {
		if conn == nil {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			var err error
			if conn, err = s.listen(ctx); err != nil {
				s.log.Warn("pgstore: notify: reconnect failed", slog.Any("error", err), slog.Duration("retry_in", backoff))
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 50 * time.Millisecond
			signal()
		}
		_, err := conn.WaitForNotification(ctx)
		if err == nil {
			signal()
			continue
		}
		_ = conn.Close(context.WithoutCancel(ctx))
		conn = nil
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("pgstore: notify: connection lost; reconnecting", slog.Any("error", err))
	}
}

// listen opens a connection like the pool's and LISTENs on the store's
// channel.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}

// notifier sends the NOTIFY for group commits once they have committed,
// rather than in their transactions. PostgreSQL commits transactions that
// sent a NOTIFY one at a time, holding a database-wide lock through the
// WAL flush: appends of several processes that each notified in their
// commits would queue behind each other. Sent after the commit, in a
// transaction of its own that writes nothing, a NOTIFY delays no append.
//
// Notifications coalesce: a commit kicks the notifier, which sends one
// NOTIFY at a time; commits made while one is being sent are announced by
// the next, together. Every commit is followed by a NOTIFY sent after it.
// AppendTx, whose transaction the caller commits, still notifies in it.
type notifier struct {
	s    *Store
	sql  string
	owed chan struct{} // capacity 1: a commit not yet announced
	stop chan struct{}
	done chan struct{}
	hold chan struct{} // if not nil (tests), each send waits for a receive from it
	sent atomic.Int64  // NOTIFYs sent, for tests
}

func startNotifier(s *Store) *notifier {
	n := &notifier{
		s:    s,
		sql:  "SELECT pg_notify(" + quoteLiteral(s.channel) + ", '')",
		owed: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go n.run()
	return n
}

// kick asks for a NOTIFY after a commit. It does not block.
func (n *notifier) kick() {
	select {
	case n.owed <- struct{}{}:
	default:
	}
}

func (n *notifier) run() {
	defer close(n.done)
	for {
		select {
		case <-n.owed:
		case <-n.stop:
			// Announce a last commit to the other processes.
			select {
			case <-n.owed:
				n.send()
			default:
			}
			return
		}
		n.send()
	}
}

// send sends one NOTIFY. A failure is logged only: consumers poll as well.
func (n *notifier) send() {
	if n.hold != nil {
		<-n.hold
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.sent.Add(1)
	if _, err := n.s.pool.Exec(ctx, n.sql); err != nil {
		n.s.log.Debug("pgstore: notify after commit failed; consumers will find the events when they poll", slog.Any("error", err))
	}
}

// close sends the NOTIFY still owed and stops the notifier. Call it after
// the last commit.
func (n *notifier) close() {
	close(n.stop)
	<-n.done
}
