package sqlitestore

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/ncore-io/event/store"
)

// Option configures a [Store] in [Open].
type Option func(*config)

type config struct {
	maxPayload   int
	synchronous  Synchronous
	busyTimeout  time.Duration
	readConns    int
	maxBatch     int
	maxDelay     time.Duration
	pollInterval time.Duration
	logger       *slog.Logger
	partitions   int // 0: the stored count, or store.DefaultPartitions for a new file
}

func defaultConfig() config {
	return config{
		maxPayload:   store.DefaultMaxPayloadSize,
		synchronous:  SynchronousFull,
		busyTimeout:  5 * time.Second,
		readConns:    4,
		maxBatch:     DefaultMaxBatch,
		pollInterval: 50 * time.Millisecond,
	}
}

func (c *config) validate() error {
	switch {
	case c.maxPayload <= 0:
		return fmt.Errorf("max payload size %d is not positive", c.maxPayload)
	case c.synchronous != SynchronousFull && c.synchronous != SynchronousNormal:
		return fmt.Errorf("unknown synchronous mode %d", c.synchronous)
	case c.busyTimeout < 0:
		return fmt.Errorf("busy timeout %v is negative", c.busyTimeout)
	case c.readConns < 1:
		return fmt.Errorf("read pool size %d is less than 1", c.readConns)
	case c.maxBatch < 1:
		return fmt.Errorf("group commit max batch %d is not positive", c.maxBatch)
	case c.maxDelay < 0:
		return fmt.Errorf("group commit max delay %v is negative", c.maxDelay)
	case c.pollInterval <= 0:
		return fmt.Errorf("poll interval %v is not positive", c.pollInterval)
	case c.partitions != 0:
		return store.ValidatePartitions(c.partitions)
	}
	return nil
}

// WithMaxPayloadSize sets the largest payload, in bytes, that Append
// accepts. The default is [store.DefaultMaxPayloadSize]; 0 keeps it.
func WithMaxPayloadSize(n int) Option {
	return func(c *config) {
		if n != 0 {
			c.maxPayload = n
		}
	}
}

// Synchronous is SQLite's synchronous setting (PRAGMA synchronous) for the
// event database: how hard a commit waits for the disk.
type Synchronous int

const (
	// SynchronousFull makes every commit durable before Append returns: the
	// write-ahead log is fsynced on each commit. This is the default.
	SynchronousFull Synchronous = iota
	// SynchronousNormal fsyncs the write-ahead log only at checkpoints. A
	// process crash loses nothing, but a power loss or operating system
	// crash can lose the last commits (never corrupt the database).
	// Appends are faster.
	SynchronousNormal
)

func (s Synchronous) pragma() string {
	if s == SynchronousNormal {
		return "NORMAL"
	}
	return "FULL"
}

// WithSynchronous sets the synchronous mode. The default is [SynchronousFull].
func WithSynchronous(s Synchronous) Option {
	return func(c *config) { c.synchronous = s }
}

// WithBusyTimeout sets how long an operation waits for a lock that another
// process holds on the database file before failing with SQLITE_BUSY. The
// default is 5s.
func WithBusyTimeout(d time.Duration) Option {
	return func(c *config) { c.busyTimeout = d }
}

// WithReadConns sets the size of the pool of read-only connections that
// serve Load, LoadAggregate, Read and the other reads. Reads do not wait
// for the writer (the database is in WAL mode). The default is 4.
func WithReadConns(n int) Option {
	return func(c *config) { c.readConns = n }
}

// DefaultMaxBatch is the most records one group commit carries (see
// [WithGroupCommit]).
const DefaultMaxBatch = 1000

// WithGroupCommit tunes group commit. Appends that arrive while a commit is
// in progress are queued and committed together in one transaction, up to
// maxBatch records (a single larger Append still commits alone). When
// maxDelay is positive the writer also waits up to maxDelay after the first
// queued Append for others to join, trading latency for fewer commits under
// light concurrency. The defaults are [DefaultMaxBatch] (1000) records and
// no delay: a commit takes whatever is queued when it starts. maxBatch must
// be positive and maxDelay not negative.
func WithGroupCommit(maxBatch int, maxDelay time.Duration) Option {
	return func(c *config) { c.maxBatch, c.maxDelay = maxBatch, maxDelay }
}

// WithPollInterval sets how often [Store.Notify] polls the database for
// appends that did not go through this Store's group commit (AppendTx,
// other processes). The default is 50ms.
func WithPollInterval(d time.Duration) Option {
	return func(c *config) { c.pollInterval = d }
}

// WithLogger sets the logger for schema migrations and failed commits. The
// default, nil, logs nothing.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithPartitions sets the number of partitions of the log, which consumer
// groups split their work by (see [store.Grouper]). It applies when Open
// creates the schema (or migrates a file from before partitions): the
// count is stored in the file and fixed from then on. Opening a file that
// has another count fails with an error that names both. The default is
// [store.DefaultPartitions] for a new file and the stored count otherwise.
func WithPartitions(n int) Option {
	return func(c *config) { c.partitions = n }
}
