package pgstore

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ncore-io/event/store"
)

// QueueLen returns how many Append calls wait for the group-commit writer.
func QueueLen(s *Store) int {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return len(s.w.queue)
}

// TopicRegexp exposes topicRegexp to tests.
var TopicRegexp = topicRegexp

// SetMinScan lowers the number of rows a filtered Read scans at least.
func SetMinScan(s *Store, n int) { s.minScan = n }

// Inflight is how many group commits run at once.
const Inflight = inflight

// HoldNotify makes each NOTIFY that s sends after a group commit wait for
// a receive from hold, and returns a count of those sent. Call it before
// the first Append.
func HoldNotify(s *Store, hold chan struct{}) *atomic.Int64 {
	s.notes.hold = hold
	return &s.notes.sent
}

// MigrateTo brings the default schema on pool to version v, as a build of
// pgstore at that version would have made it.
func MigrateTo(ctx context.Context, pool *pgxpool.Pool, v int) error {
	s := &Store{pool: pool, opts: defaultOptions(), log: slog.New(slog.DiscardHandler),
		schema: pgx.Identifier{DefaultSchema}.Sanitize(), channel: channelName(DefaultSchema)}
	return s.migrateTo(ctx, v)
}

// HorizonCursor returns a cursor at the read horizon, past the last record,
// as ReadPartitions of earlier builds returned for partitions read to
// their end, and their members saved as checkpoints.
func HorizonCursor(ctx context.Context, s *Store) (store.Cursor, error) {
	h, err := s.horizon(ctx)
	if err != nil {
		return "", err
	}
	return s.cursor(key{txid: h}), nil
}

// AppendMetadata exposes appendMetadata to tests.
var AppendMetadata = appendMetadata

// GroupReadsInTx reports whether s reads partitions in a READ COMMITTED
// transaction of its own, having found its connections' transactions of
// another isolation.
func GroupReadsInTx(s *Store) bool { return s.groupReadTx.Load() }
