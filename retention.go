package event

import (
	"log/slog"
	"time"
)

// WithRetention makes the bus delete stored events older than maxAge, every
// interval (0 means an hour), in the background. It deletes from the start
// of the log (see [store.Store].DeleteBefore), so an event whose EventTime
// is later than that of events published after it holds them back until it
// is old enough itself. Deletion runs in bounded batches, so it does not
// stall publishers. A durable subscription whose
// checkpoint falls among deleted events stops with an error matching
// [store.ErrCursorExpired] rather than silently skipping them. Default 0:
// events are kept for ever.
func WithRetention(maxAge, interval time.Duration) Option {
	return func(c *config) { c.retention, c.retentionEvery = maxAge, interval }
}

// prune deletes expired events until the bus closes.
func (b *Bus[T]) prune() {
	defer b.wg.Done()
	every := orDefault(b.cfg.retentionEvery, time.Hour)
	t := time.NewTimer(0) // once at start, then every interval
	defer t.Stop()
	for {
		select {
		case <-b.bg.Done():
			return
		case <-t.C:
		}
		n, err := b.store.DeleteBefore(b.bg, time.Now().Add(-b.cfg.retention))
		switch {
		case err != nil && b.bg.Err() == nil:
			b.log.LogAttrs(b.bg, slog.LevelError, "event: retention failed", slog.Any("error", err))
		case n > 0:
			b.log.LogAttrs(b.bg, slog.LevelInfo, "event: retention deleted old events",
				slog.Int64("deleted", n), slog.Duration("max_age", b.cfg.retention))
		}
		t.Reset(every)
	}
}
