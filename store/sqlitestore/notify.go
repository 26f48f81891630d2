package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"time"

	"github.com/ncore-io/event/store"
)

var (
	_ store.Notifier         = (*Store)(nil)
	_ store.DeadLetterStore  = (*Store)(nil)
	_ store.DeadLetterLookup = (*Store)(nil)
)

// Notify implements [store.Notifier]. Appends through this Store's group
// commit are signalled as soon as they commit. Appends that commit in other
// ways (AppendTx in the caller's transaction, another process writing the
// same file) are noticed by polling SQLite's data_version on a connection of
// its own, every interval set by [WithPollInterval]. The channel is closed
// when ctx ends or the store is closed.
func (s *Store) Notify(ctx context.Context) (<-chan struct{}, error) {
	if err := s.enter(ctx, "notify"); err != nil {
		return nil, err
	}
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	if s.closed.Load() {
		return nil, fmt.Errorf("sqlitestore: notify: %w", store.ErrClosed)
	}
	if s.pollDB == nil {
		if err := s.startPolling(ctx); err != nil {
			return nil, s.fail(ctx, "notify", err)
		}
	}
	ch := make(chan struct{}, 1)
	s.watchers[ch] = struct{}{}
	s.watchCount.Add(1)
	s.watchWG.Add(1)
	go func() {
		defer s.watchWG.Done()
		select {
		case <-ctx.Done():
		case <-s.quit:
		}
		s.watchMu.Lock()
		delete(s.watchers, ch)
		s.watchCount.Add(-1)
		close(ch)
		s.watchMu.Unlock()
	}()
	return ch, nil
}

// signal wakes every watcher; a watcher already signalled stays so.
func (s *Store) signal() {
	if s.watchCount.Load() == 0 {
		return
	}
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// startPolling opens the polling connection, reads the data version that
// later commits will change, and starts the poller. The caller holds
// watchMu.
func (s *Store) startPolling(ctx context.Context) error {
	db, err := sql.Open("sqlite", s.path+"?"+url.Values{"_query_only": {"1"}}.Encode())
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return err
	}
	var version int64
	if err := conn.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&version); err != nil {
		conn.Close()
		db.Close()
		return err
	}
	s.pollDB = db
	s.watchWG.Add(1)
	go func() {
		defer s.watchWG.Done()
		defer conn.Close()
		ticker := time.NewTicker(s.cfg.pollInterval)
		defer ticker.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-ticker.C:
			}
			var v int64
			if err := conn.QueryRowContext(context.Background(), `PRAGMA data_version`).Scan(&v); err != nil {
				s.log.Warn("sqlitestore: polling for appends failed", "path", s.path, "err", err)
				continue
			}
			if v != version {
				version = v
				s.signal()
			}
		}
	}()
	return nil
}
