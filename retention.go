package event

import (
	"log/slog"
	"time"
)

// prune deletes expired events until the bus closes.
func (b *Bus[T]) prune() {
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
