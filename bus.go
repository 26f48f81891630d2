package event

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/ncore-io/event/store"
)

// Lifecycle states of a bus.
const (
	stateOpen    int32 = iota // accepting events
	stateClosing              // Close called: only handlers may still publish
	stateStopped              // drained, or about to be: nothing is accepted
)

// Bus is an event bus that carries payloads of type T. A concrete T gives a
// fully typed bus; an interface T (any, or an application's own event
// interface) carries many event types on one bus, and [Subscribe] can pick
// out one of them.
//
// A Bus is safe for concurrent use by multiple goroutines. Create one with
// [New] and release it with [Bus.Close].
type Bus[T any] struct {
	cfg config
	log *slog.Logger

	subMu  sync.Mutex // serialises changes to routes and durables
	routes atomic.Pointer[routes[T]]

	queue workQueue[T] // events waiting for a worker, and idle workers
	keys  keyTable[T]  // per-aggregate order
	pool  sync.Pool    // of *delivery[T], recycled once run (see recycle)

	flight                // the state and what Close waits for; see queue.go
	drained chan struct{} // closed when a closing bus has nothing in flight
	drainMu sync.Once
	abort   context.Context // cancelled when Close gives up
	cancel  context.CancelFunc
	running group // the bus's goroutines: workers, durable runners, retention

	stats counters

	store       store.Store
	codec       Codec
	types       registry
	payloadType reflect.Type
	durables    atomic.Pointer[[]*durable[T]]
	outbox      outboxSeen
	bg          context.Context // cancelled by Close to stop background work
	bgCancel    context.CancelFunc
}

// New returns a bus configured by opts, with its workers started.
func New[T any](opts ...Option) (*Bus[T], error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := &Bus[T]{cfg: cfg, log: cfg.logger, drained: make(chan struct{})}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.abort, b.cancel = context.WithCancel(context.Background())
	b.bg, b.bgCancel = context.WithCancel(b.abort)
	b.routes.Store(&routes[T]{})
	b.durables.Store(new([]*durable[T]))
	b.store, b.codec = cfg.store, cfg.codec
	b.payloadType = reflect.TypeFor[T]()
	if err := b.types.add(b.payloadType); err != nil {
		return nil, fmt.Errorf("event: new: %w", err)
	}
	for _, sample := range cfg.types {
		t := reflect.TypeOf(sample)
		if t == nil {
			return nil, fmt.Errorf("event: new: WithTypes: nil sample")
		}
		if b.payloadType.Kind() == reflect.Interface && !t.Implements(b.payloadType) {
			return nil, fmt.Errorf("event: new: WithTypes: %v does not implement %v", t, b.payloadType)
		}
		if err := b.types.add(t); err != nil {
			return nil, fmt.Errorf("event: new: WithTypes: %w", err)
		}
	}
	if cfg.retention > 0 {
		b.running.Go(b.prune)
	}
	if cfg.sync {
		return b, nil
	}
	b.keys.init()
	b.queue.init(cfg.bufferSize)
	for range cfg.workers {
		b.running.Go(b.work)
	}
	return b, nil
}

// Close stops the bus in two steps, each bounded by ctx.
//
// First it drains. Publish returns [ErrClosed] from the moment Close begins,
// except to handlers of this bus, whose follow-up events are accepted and
// handled as part of the drain. Close waits until every event accepted
// before then has been handled by every subscription it was due to, retries
// included: the queued and running asynchronous deliveries, and, for each
// [Durable] subscription of this bus, every event this bus appended to the
// store (by Publish or PublishBatch) that the subscription takes. Events of
// other processes, and events stored with [Bus.PublishTx], are not waited
// for: a durable subscription handles them if it gets to them, or on its
// next start. (On PostgreSQL a durable subscription may reach the end of
// what it can read while an event of this bus is hidden behind an older
// transaction still open, such as a PublishTx; Close then counts the event
// as done, and it is handled on the next start.) A durable handler still at
// work when the drain ends gets ErrClosed for its follow-up events; its
// event was not acknowledged, so it is handled again on the next start.
// A [Shared] durable subscription, a member of a consumer group,
// only waits for the events in the partitions it holds
// after its last claim: the others are for the members that hold them.
//
// Then it stops: durable subscriptions save their checkpoints and their
// goroutines, the workers and the retention goroutine exit. Close returns
// nil when all of that is done.
//
// If ctx is done first, Close gives up: it cancels the contexts of running
// handlers, drops the asynchronous events still queued (counting them in
// [Stats].Dropped and passing them to the [WithDeadLetter] function), stops
// the durable subscriptions (their unhandled events stay in the store for
// the next start), and returns an error matching ctx's error without
// waiting further. Handlers that ignore their context cannot be stopped from
// outside: they go on in the background, still counted in [Stats].InFlight,
// and the bus's goroutines exit once they return.
//
// Close is safe to call more than once and concurrently with Publish; later
// calls wait like the first. A nil ctx is an error.
func (b *Bus[T]) Close(ctx context.Context) error {
	if ctx == nil {
		return errNilContext("close")
	}
	if b.state.CompareAndSwap(stateOpen, stateClosing) {
		b.hold()    // Close's own unit, so that release sees the change of state
		b.release() // and finishes the drain if nothing is in flight
	}
	select {
	case <-b.drained:
	case <-ctx.Done():
		b.cancel()
		return fmt.Errorf("event: close: gave up waiting for %d publishes and deliveries in flight: %w", max(b.inFlight(), 0), ctx.Err())
	}
	// Stops the durable runners too (their contexts derive from bg), each
	// after the event in hand; Subscribe refuses new ones under subMu.
	b.subMu.Lock()
	b.bgCancel()
	b.subMu.Unlock()
	if err := b.running.Wait(ctx); err != nil {
		b.cancel()
		return fmt.Errorf("event: close: gave up waiting for handlers to return: %w", err)
	}
	b.cancel()
	return nil
}

// Store returns the store the bus was created with (see [WithStore]), or
// nil.
func (b *Bus[T]) Store() store.Store { return b.store }

// Publisher is what a service needs to publish events. *Bus[T] and the
// test double eventtest.MockBus[T] implement it; depend on it rather than
// on *Bus[T] to test a service without a bus.
type Publisher[T any] interface {
	Publish(ctx context.Context, topic string, payload T, opts ...PublishOption) error
}

// TxPublisher is what a service needs to publish events inside its own
// database transaction (the transactional outbox; see [Bus.PublishTx]).
// *Bus[T] and eventtest.MockBus[T] implement it.
type TxPublisher[T any] interface {
	PublishTx(ctx context.Context, tx any, topic string, payload T, opts ...PublishOption) error
	PublishBatchTx(ctx context.Context, tx any, msgs []Message[T]) error
}

// Subscriber is what a service needs to register handlers. *Bus[T] and
// eventtest.MockBus[T] implement it. Register handlers with [Subscribe],
// which takes a Subscriber and also accepts handlers of one payload type of
// an interface-typed bus.
type Subscriber[T any] interface {
	// Handle registers h for events whose topic matches pattern. It is the
	// method behind [Subscribe], which callers should use instead.
	Handle(pattern string, h Handler[T], opts ...SubscribeOption) (*Subscription, error)
}

var (
	_ Publisher[any]   = (*Bus[any])(nil)
	_ TxPublisher[any] = (*Bus[any])(nil)
	_ Subscriber[any]  = (*Bus[any])(nil)
)

// errNilContext is the error of a blocking call given a nil context.
func errNilContext(op string) error {
	return fmt.Errorf("event: %s: %w", op, ErrNilContext)
}

// group runs goroutines and waits for them, with a context bound on the
// wait that sync.WaitGroup lacks.
type group struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0; nil while none has run
}

// Go runs f in a new goroutine of the group.
func (g *group) Go(f func()) {
	g.mu.Lock()
	if g.n == 0 {
		g.idle = make(chan struct{})
	}
	g.n++
	g.mu.Unlock()
	go func() {
		defer g.done()
		f()
	}()
}

func (g *group) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n--; g.n == 0 {
		close(g.idle)
	}
}

// Wait waits until the group's goroutines have returned or ctx is done.
func (g *group) Wait(ctx context.Context) error {
	g.mu.Lock()
	idle := g.idle
	if g.n == 0 {
		idle = nil
	}
	g.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
