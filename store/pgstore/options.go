package pgstore

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/ncore-io/event/store"
)

// Option configures a [Store] in [New] or [Open].
type Option func(*options)

type options struct {
	schema     string
	maxPayload int
	maxBatch   int
	maxDelay   time.Duration
	logger     *slog.Logger
	partitions int  // 0: the stored count, or store.DefaultPartitions for a new schema
	noListen   bool // see WithoutListen
}

// Defaults of the options.
const (
	// DefaultSchema is the schema that holds the store's tables.
	DefaultSchema = "event"
	// DefaultMaxBatch is the most records one group commit carries (see
	// [WithGroupCommit]).
	DefaultMaxBatch = 1000
)

func defaultOptions() options {
	return options{
		schema:     DefaultSchema,
		maxPayload: store.DefaultMaxPayloadSize,
		maxBatch:   DefaultMaxBatch,
	}
}

// WithSchema sets the PostgreSQL schema that holds the store's tables,
// created if missing. The default is [DefaultSchema], "event". The name must
// be a plain identifier: a letter or underscore, then letters, digits or
// underscores, at most 63 bytes, not starting with "pg_". Two stores in one
// database with different schemas are independent logs.
func WithSchema(name string) Option { return func(o *options) { o.schema = name } }

// WithMaxPayloadSize sets the largest payload, in bytes, that Append accepts.
// The default is [store.DefaultMaxPayloadSize] (1 MiB); it must be positive.
func WithMaxPayloadSize(n int) Option { return func(o *options) { o.maxPayload = n } }

// WithGroupCommit tunes group commit. Appends that arrive while a commit is
// in progress are queued and committed together in one transaction, up to
// maxBatch records (a single larger Append still commits alone). When
// maxDelay is positive the writer also waits up to maxDelay after the first
// queued Append for others to join, trading latency for fewer commits under
// light concurrency. The defaults are [DefaultMaxBatch] (1000) records and
// no delay: a commit takes whatever is queued when it starts. maxBatch must
// be positive and maxDelay not negative.
func WithGroupCommit(maxBatch int, maxDelay time.Duration) Option {
	return func(o *options) { o.maxBatch, o.maxDelay = maxBatch, maxDelay }
}

// WithLogger sets where the store logs what it recovers from on its own:
// group commits retried one caller at a time, lost LISTEN connections, a
// log restored into another cluster whose order New realigned (see Dump
// and restore in the package documentation). The default, nil, logs
// nothing.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithoutListen makes the store never LISTEN: [Store.Notify] fails with an
// error matching [errors.ErrUnsupported] instead of opening a connection
// of its own, and consumers poll (a durable subscription of the event
// package then polls quietly, every event.WithPollInterval). This is for
// connections through a pooler that does not carry LISTEN over, such as
// PgBouncer in transaction or statement mode, where a LISTEN connection
// would hear nothing. Appends still NOTIFY, for stores that listen on a
// direct connection. Such a pooler also needs a pool that does not keep
// prepared statements (pgx.QueryExecModeExec, or CacheDescribe, in the
// pool's ConnConfig.DefaultQueryExecMode), which the store follows.
func WithoutListen() Option { return func(o *options) { o.noListen = true } }

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func (o *options) validate() error {
	switch {
	case !identRE.MatchString(o.schema):
		return fmt.Errorf("schema %q is not a plain identifier (a letter or underscore, then letters, digits or underscores, at most 63 bytes)", o.schema)
	case strings.HasPrefix(strings.ToLower(o.schema), "pg_"):
		return fmt.Errorf("schema %q starts with pg_, which PostgreSQL reserves", o.schema)
	case o.maxPayload <= 0:
		return fmt.Errorf("max payload size %d is not positive", o.maxPayload)
	case o.maxBatch <= 0:
		return fmt.Errorf("group commit max batch %d is not positive", o.maxBatch)
	case o.maxDelay < 0:
		return fmt.Errorf("group commit max delay %v is negative", o.maxDelay)
	case o.partitions != 0:
		return store.ValidatePartitions(o.partitions)
	}
	return nil
}

// WithPartitions sets the number of partitions of the log, which consumer
// groups split their work by (see [store.Grouper]). It applies when the
// schema is created (or migrated from before partitions): the count is
// stored in the schema and fixed from then on. A store on a schema that
// has another count fails to open with an error that names both. The
// default is [store.DefaultPartitions] for a new schema and the stored
// count otherwise.
func WithPartitions(n int) Option { return func(o *options) { o.partitions = n } }
