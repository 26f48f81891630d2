package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ncore-io/event/store"
)

// Notify reports appends to the store, by this process or any other, for
// consumers that would otherwise poll. It LISTENs on a connection of its
// own (not from the pool) to the channel that appends NOTIFY at commit, and
// sends on the returned channel soon after each commit that appended.
// Signals coalesce: the channel has room for one, so a slow reader gets one
// signal for many commits and should then Read until it has caught up.
//
// Appends committed after Notify returns are signalled; to miss nothing,
// call Notify before the first Read. If the connection is lost, Notify
// reconnects with backoff and then sends a signal, since commits in
// between went unnoticed. The channel is closed, and the connection with
// it, when ctx ends or the store is closed. Notify is safe for concurrent
// use; each call has its own connection.
func (s *Store) Notify(ctx context.Context) (<-chan struct{}, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("pgstore: notify: %w", store.ErrClosed)
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
	go func() {
		defer s.watchers.Done()
		defer stop()
		defer cancel()
		defer close(ch)
		s.watch(wctx, conn, ch)
	}()
	return ch, nil
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
