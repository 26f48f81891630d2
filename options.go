package event

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"time"

	"github.com/google/uuid"
	"github.com/ncore-io/event/store"
)

// Defaults of a bus created with no options.
const (
	DefaultBufferSize = 1000
	DefaultWorkers    = 10
)

// An Option configures a bus in [New].
type Option func(*config)

type config struct {
	bufferSize int
	workers    int
	failFast   bool
	sync       bool
	logger     *slog.Logger
	retry      RetryPolicy
	timeout    time.Duration
	deadLetter func(context.Context, DeadLetter)

	store          store.Store
	codec          Codec
	types          []any
	pollInterval   time.Duration
	retention      time.Duration
	retentionEvery time.Duration
}

func defaultConfig() config {
	return config{bufferSize: DefaultBufferSize, workers: DefaultWorkers, codec: JSON{}, pollInterval: DefaultPollInterval}
}

func (c *config) validate() error {
	switch {
	case c.bufferSize < 0:
		return fmt.Errorf("event: new: buffer size must be zero or more, got %d", c.bufferSize)
	case c.workers < 1:
		return fmt.Errorf("event: new: workers must be at least 1, got %d", c.workers)
	case c.timeout < 0:
		return fmt.Errorf("event: new: timeout must be zero (none) or positive, got %v", c.timeout)
	case c.codec == nil:
		return fmt.Errorf("event: new: codec must not be nil")
	case c.pollInterval <= 0:
		return fmt.Errorf("event: new: poll interval must be positive, got %v", c.pollInterval)
	case c.retention < 0 || c.retentionEvery < 0:
		return fmt.Errorf("event: new: retention must not be negative, got %v every %v", c.retention, c.retentionEvery)
	case c.retention > 0 && c.store == nil:
		return fmt.Errorf("event: new: retention needs a store (WithStore)")
	}
	if err := c.retry.validate(); err != nil {
		return fmt.Errorf("event: new: %w", err)
	}
	return nil
}

// WithBufferSize sets how many events may wait in the queue for a worker
// before [Bus.Publish] blocks (or, with [WithFailFast], fails). 0 makes the
// queue unbuffered: Publish then waits until a worker is free to take the
// event. Events that handlers publish, and events already appended to a
// store, never wait: they go past a full queue, so the buffer bounds
// ordinary publishers only. Default [DefaultBufferSize].
func WithBufferSize(n int) Option { return func(c *config) { c.bufferSize = n } }

// WithWorkers sets how many goroutines run handlers for asynchronous
// subscriptions. Default [DefaultWorkers].
func WithWorkers(n int) Option { return func(c *config) { c.workers = n } }

// WithFailFast makes [Bus.Publish] return [ErrQueueFull] instead of waiting
// when the queue is full. By default Publish waits until there is room or
// its context is done. Either way no event is dropped silently.
func WithFailFast() Option { return func(c *config) { c.failFast = true } }

// WithSync makes every subscription synchronous: [Bus.Publish] runs the
// handlers, retries included, in the publisher's goroutine and returns when
// they are done. No worker goroutines are started. Default asynchronous.
func WithSync() Option { return func(c *config) { c.sync = true } }

// WithLogger sets the logger for retries, dead letters and dropped events.
// Default nil: the bus logs nothing.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithRetry sets the retry policy of subscriptions that do not set their
// own with [Retry]. Default: no retries.
func WithRetry(p RetryPolicy) Option { return func(c *config) { c.retry = p } }

// WithTimeout sets the per-attempt timeout of subscriptions that do not set
// their own with [Timeout]. Default 0: no timeout.
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithDeadLetter sets the function called with each event that a
// subscription failed to handle after its last attempt, and with each
// queued event dropped because [Bus.Close] gave up. It runs in the worker
// (or, for synchronous subscriptions, the publisher) goroutine and must not
// block for long. Default nil: dead letters are counted in [Stats] and
// logged.
func WithDeadLetter(f func(ctx context.Context, dl DeadLetter)) Option {
	return func(c *config) { c.deadLetter = f }
}

// WithStore makes the bus durable: [Bus.Publish] appends each event to s
// before it returns (concurrent publishes share the store's group commit),
// and only then delivers it. A publish whose append fails returns the error
// and delivers nothing; once appended, the event is published, and its
// in-process delivery no longer waits for queue room (the store's commit
// rate paces publishers instead). The store also enables [Durable] subscriptions,
// [Replay], [PublishTx], [Fold], stored dead letters ([Bus.DeadLetters]) and
// [WithRetention]. The bus does not close s. Default nil: events live in
// memory only.
func WithStore(s store.Store) Option { return func(c *config) { c.store = s } }

// WithCodec sets how payloads are encoded in the store. Default [JSON].
func WithCodec(codec Codec) Option { return func(c *config) { c.codec = codec } }

// WithTypes registers the payload types of samples, so that a bus of an
// interface type (such as any) can decode stored events of those types:
// WithTypes(UserRegistered{}, &OrderPlaced{}). Subscribing a handler of a
// concrete type registers that type too. See [Typer] for how types are
// named.
func WithTypes(samples ...any) Option {
	return func(c *config) { c.types = append(c.types, samples...) }
}

// WithPollInterval sets how often durable subscriptions look for events
// appended by other processes, when the store cannot signal them (see
// [store.Notifier]) or was told not to (such as a pgstore opened
// WithoutListen). Appends through this bus wake them at once. Default
// [DefaultPollInterval].
func WithPollInterval(d time.Duration) Option { return func(c *config) { c.pollInterval = d } }

// WithRetention makes the bus delete stored events older than maxAge, every
// interval (0 means an hour), in the background. It deletes from the start
// of the log (see [store.Store].DeleteBefore), so an event whose EventTime
// is later than that of events published after it holds them back until it
// is old enough itself. Deletion runs in bounded batches, so it does not
// stall publishers. A durable subscription whose checkpoint falls among
// deleted events stops with an error matching [store.ErrCursorExpired]
// rather than silently skipping them. Default 0: events are kept for ever.
func WithRetention(maxAge, interval time.Duration) Option {
	return func(c *config) { c.retention, c.retentionEvery = maxAge, interval }
}

// A SubscribeOption configures one subscription in [Subscribe].
type SubscribeOption func(*subConfig)

type subConfig struct {
	typed       *typedHandler // set by Subscribe for a handler of a payload type other than the bus's
	name        string
	retry       *RetryPolicy
	timeout     *time.Duration
	concurrency int
	sync        bool
	durable     string
	durableSet  bool // Durable was given, even with an empty name
	cpEvery     int
	cpInterval  time.Duration
	lease       time.Duration
	shared      bool
}

// typedHandler says which payloads a handler registered through [Subscribe]
// takes, when its payload type is not the bus's.
type typedHandler struct {
	payload reflect.Type
	accepts func(any) bool
}

// Name names a subscription in [Stats], logs and dead letters. Default: the
// pattern (or, for a durable subscription, its durable name). A name must
// be valid UTF-8 without NUL bytes, since stores keep it with dead letters.
func Name(name string) SubscribeOption { return func(c *subConfig) { c.name = name } }

// Retry sets the subscription's retry policy, overriding [WithRetry].
func Retry(p RetryPolicy) SubscribeOption { return func(c *subConfig) { c.retry = &p } }

// Timeout bounds each attempt of the subscription's handler: its context is
// cancelled after d, and an attempt that outlives d counts as failed (with an
// error matching [context.DeadlineExceeded]) even if the handler then returns
// nil. A handler that ignores its context keeps its worker busy until it
// returns: Go cannot stop a goroutine from outside. Zero means no timeout.
// Overrides [WithTimeout].
func Timeout(d time.Duration) SubscribeOption { return func(c *subConfig) { c.timeout = &d } }

// Concurrency caps how many events the subscription's handler processes at
// once, across all workers. Default 0: up to the bus's worker count.
func Concurrency(n int) SubscribeOption { return func(c *subConfig) { c.concurrency = n } }

// Sync makes the subscription synchronous: its handler runs in the
// publisher's goroutine, inside [Bus.Publish], while the bus's other
// subscriptions stay asynchronous.
func Sync() SubscribeOption { return func(c *subConfig) { c.sync = true } }

// Durable makes a subscription durable under name: it keeps a checkpoint in
// the bus's store, so it sees every event stored since it last ran, also
// the ones published while it was not running, by this process or another.
//
// A durable subscription reads the store, not the in-process queue. When it
// starts it catches up from its checkpoint, then follows new events as they
// are appended; the switch from one to the other can neither skip nor
// repeat an event. It handles events one at a time in the store's order, so
// each aggregate's events arrive in order, and saves its checkpoint every
// [DefaultCheckpointEvery] events or [DefaultCheckpointInterval] (see
// [Checkpoint]). Delivery is at least once: after a crash the events since
// the last checkpoint are handled again, so handlers should be idempotent,
// using Event.ID or Event.Position. [Bus.Close] waits for it to handle what
// the bus appended (see there).
//
// A bus without a store ([WithStore]) rejects durable subscriptions. One
// bus runs at most one subscription of a name. Several buses (in one
// process or several) that subscribe with one name each handle every
// event, unless the subscriptions are [Shared].
func Durable(name string) SubscribeOption {
	return func(c *subConfig) { c.durable, c.durableSet = name, true }
}

// Shared makes a [Durable] subscription a member of a consumer group: the
// buses that subscribe with one durable name on one store, in one process
// or many, share its events instead of each handling all of them. On a
// store that runs consumer groups ([store.Grouper]: sqlitestore and
// pgstore do), each member holds a fair share of the log's partitions (by
// aggregate; see [store.Partition]) under a lease ([Lease]), and handles
// only their events, one at a time, each partition in order. A member that
// stops hands its partitions over at once; one that dies loses them when
// its lease runs out, and another member goes on from their checkpoints.
// [Bus.Group] shows who holds what. A group starts from the checkpoint of
// a plain durable subscription of the same name, if there is one. On a
// store without consumer groups, Shared is refused.
func Shared() SubscribeOption { return func(c *subConfig) { c.shared = true } }

// Lease sets how long a durable subscription that is a group member (see
// [Shared]) holds its partitions without renewing them. The member renews
// every third of d, also while a handler runs, so a slow event keeps its
// partitions; a member that dies, or cannot reach the store, holds up its
// partitions' events for up to d before another member takes them over.
// Default [DefaultLease]. Without consumer groups it has no effect.
func Lease(d time.Duration) SubscribeOption { return func(c *subConfig) { c.lease = d } }

// Checkpoint sets how often a durable subscription saves its checkpoint:
// after every n events, and at least every d while it has handled events. A
// crash repeats at most n events. Zero keeps a default.
func Checkpoint(n int, d time.Duration) SubscribeOption {
	return func(c *subConfig) { c.cpEvery, c.cpInterval = n, d }
}

// A PublishOption sets a field of the event envelope in [Bus.Publish], or
// a condition of the publish. Build one with [Aggregate], [AsKind], [Meta],
// [Metadata], [EventID], [EventTime], [Correlation] or [ExpectVersion].
type PublishOption struct {
	op   publishOp
	s, v string
	m    map[string]string
	id   uuid.UUID
	t    time.Time
	n    int64
}

type publishOp uint8

const (
	opAggregate publishOp = iota + 1
	opKind
	opMeta
	opMetadata
	opID
	opTime
	opCorrelation
	opExpect
	opSame // the ID and time of an earlier attempt; see MaybePublishedError.RetryAs
)

// Aggregate sets the event's aggregate ID: the entity it is about, and the
// key that orders delivery. Events with the same aggregate ID reach each
// subscription in publish order; events with different ones are handled in
// parallel.
func Aggregate(id string) PublishOption { return PublishOption{op: opAggregate, s: id} }

// AsKind sets the event's kind. Default [KindDomain].
func AsKind(k Kind) PublishOption { return PublishOption{op: opKind, s: string(k)} }

// Meta adds one metadata key.
func Meta(key, value string) PublishOption { return PublishOption{op: opMeta, s: key, v: value} }

// Metadata adds the keys of m (copied; later changes to m are not seen).
func Metadata(m map[string]string) PublishOption {
	return PublishOption{op: opMetadata, m: maps.Clone(m)}
}

// EventID sets the event's ID instead of a new UUIDv7, for importing events
// that already have one. To keep an ID that is not a UUID, derive one with
// [uuid.NewSHA1].
func EventID(id uuid.UUID) PublishOption { return PublishOption{op: opID, id: id} }

// EventTime sets when the event happened instead of now, for importing
// events.
func EventTime(t time.Time) PublishOption { return PublishOption{op: opTime, t: t} }

// Correlation sets the event's correlation ID, for an event that continues
// a conversation begun elsewhere (for example in a request header). By
// default an event published from a handler's context inherits the handled
// event's correlation ID, and any other event starts its own.
func Correlation(id uuid.UUID) PublishOption { return PublishOption{op: opCorrelation, id: id} }

// ExpectVersion makes a publish on a bus with a store succeed only if the
// event's aggregate (see [Aggregate]) is at version v: 0 for an aggregate
// with no events yet, n after its nth event. Otherwise Publish fails with
// an error matching [store.ErrVersionConflict] and publishes nothing. This
// is optimistic concurrency for event sourcing: load the aggregate, decide,
// and publish with the version it was loaded at.
func ExpectVersion(v int64) PublishOption { return PublishOption{op: opExpect, n: v} }
