package event

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

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

	subMu  sync.Mutex // serialises changes to routes
	routes atomic.Pointer[routes[T]]

	queue chan *delivery[T] // events waiting for a worker
	spill spill[T]          // overflow of queue for handlers' own publishes
	wake  chan struct{}     // tells an idle worker to look at the spill; unbuffered queues only
	keys  keyTable[T]       // per-aggregate order

	state    atomic.Int32
	inflight atomic.Int64 // Publish calls in progress + events not yet handled
	drained  chan struct{}
	drainMu  sync.Once
	abort    context.Context // cancelled when Close gives up
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	stats counters

	store       store.Store
	codec       Codec
	types       registry
	payloadType reflect.Type
	durables    atomic.Pointer[durables[T]]
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
	b.durables.Store(&durables[T]{})
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
		b.wg.Add(1)
		go b.prune()
	}
	if cfg.sync {
		return b, nil
	}
	b.keys.init()
	b.queue = make(chan *delivery[T], cfg.bufferSize)
	if cfg.bufferSize == 0 {
		b.wake = make(chan struct{}, 1)
	}
	b.wg.Add(cfg.workers)
	for range cfg.workers {
		go b.work()
	}
	return b, nil
}

// Publish publishes payload to topic. It stamps the envelope (a new UUIDv7
// ID, the time, and the options), then delivers it: synchronous
// subscriptions run before Publish returns, asynchronous ones are queued for
// the workers. An event that no subscription matches is counted in
// [Stats].NoSubscriber and is not an error.
//
// When the queue is full Publish waits for room until ctx is done, and then
// returns ctx's error; with [WithFailFast] it returns [ErrQueueFull] at once.
// Either way the event was not published. A handler that publishes with the
// context it was given never waits for room, so handlers cannot deadlock the
// bus, and the new event records the handled one as its cause.
//
// Publish returns an error matching [ErrInvalidTopic] for an invalid topic,
// and [ErrClosed] once Close has begun (except from handlers still draining).
// A handler's failure is not Publish's: it is retried and dead-lettered per
// the subscription.
func (b *Bus[T]) Publish(ctx context.Context, topic string, payload T, opts ...PublishOption) error {
	parent, _ := ctx.Value(ctxKey{}).(deliveryInfo)
	// Only this bus's own handlers are exempt from backpressure and from
	// Close; a handler of another bus publishing here is an ordinary
	// publisher (its event still records the cause).
	nested := parent.id != [16]byte{} && parent.bus == any(b)
	b.inflight.Add(1)
	if st := b.state.Load(); st == stateStopped || (st == stateClosing && !nested) {
		b.done()
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		b.done()
		return fmt.Errorf("event: publish %s: %w", topic, err)
	}
	rt, err := b.routes.Load().lookup(topic)
	if err != nil {
		b.done()
		return fmt.Errorf("event: publish: %w", err)
	}
	d, exp := b.stamp(ctx, parent, topic, payload, opts)
	d.route = rt
	if b.store != nil {
		if err := b.persist(ctx, d, exp); err != nil {
			b.done()
			return fmt.Errorf("event: publish %s: %w", topic, err)
		}
	} else if exp.set {
		b.done()
		return fmt.Errorf("event: publish %s: ExpectVersion: %w", topic, ErrNoStore)
	}
	async := takes(rt.async, payload)
	if !async && !takes(rt.sync, payload) && !takes(rt.durable, payload) {
		b.stats.published.Add(1)
		b.stats.noSubscriber.Add(1)
		b.done()
		return nil
	}
	var sd *delivery[T]
	if len(rt.sync) > 0 {
		sd = d
		if d.async {
			// A synchronous subscription on an asynchronous bus gets the
			// publisher's context, like any synchronous delivery.
			sd = &delivery[T]{bus: b, parent: ctx, route: rt, ev: d.ev}
		}
	}
	if async {
		if sd != nil {
			// The queued event takes this call's unit of in-flight work
			// to its worker; the synchronous deliveries below need one too.
			b.inflight.Add(1)
		}
		// Queue first: an event the queue refuses must reach no handler,
		// or a caller retrying the failed Publish would run the
		// synchronous handlers twice.
		// On a bus with a store the event is published once appended, so
		// its in-process delivery must not fail now: it spills over a full
		// queue instead of waiting, and the store's commit rate is the
		// publisher's backpressure.
		if err := b.enqueue(ctx, d, nested || b.store != nil); err != nil {
			if sd != nil {
				b.done()
			}
			b.done()
			return fmt.Errorf("event: publish %s: %w", topic, err)
		}
	}
	b.stats.published.Add(1)
	if sd != nil {
		for _, s := range rt.sync {
			if !s.removed.Load() && (s.accepts == nil || s.accepts(payload)) {
				b.deliver(s, sd)
			}
		}
		b.done()
	} else if !async {
		b.done() // only durable subscriptions take it, from the store
	}
	return nil
}

// expectation is an [ExpectVersion] option, if any.
type expectation struct {
	set     bool
	version int64
}

// stamp builds the delivery of a new event: the envelope with its ID, time,
// options, and causation from a handler's context.
func (b *Bus[T]) stamp(ctx context.Context, parent deliveryInfo, topic string, payload T, opts []PublishOption) (*delivery[T], expectation) {
	d := &delivery[T]{bus: b, parent: ctx, async: !b.cfg.sync}
	ev := &d.ev
	ev.Topic = topic
	ev.Kind = KindDomain
	ev.Payload = payload
	var exp expectation
	for i := range opts {
		if opts[i].op == opExpect {
			exp = expectation{set: true, version: opts[i].n}
			continue
		}
		d.apply(&opts[i])
	}
	var stamp time.Time
	if ev.Time.IsZero() {
		stamp = now()
		ev.Time = stamp
	}
	if ev.ID == [16]byte{} {
		if stamp.IsZero() {
			// An imported event's time (EventTime) must not set the ID's:
			// a future one would carry every later ID of the process along.
			stamp = now()
		}
		ev.ID = newID(stamp)
	}
	if parent.id != [16]byte{} {
		ev.CausationID = parent.id
		if ev.CorrelationID == [16]byte{} {
			ev.CorrelationID = parent.correlation
		}
	}
	if ev.CorrelationID == [16]byte{} {
		ev.CorrelationID = ev.ID
	}
	return d, exp
}

func (d *delivery[T]) apply(o *PublishOption) {
	ev := &d.ev
	switch o.op {
	case opAggregate:
		ev.AggregateID = o.s
	case opKind:
		ev.Kind = Kind(o.s)
	case opMeta:
		if ev.Metadata == nil {
			ev.Metadata = make(map[string]string, 1)
		}
		ev.Metadata[o.s] = o.v
	case opMetadata:
		if ev.Metadata == nil {
			ev.Metadata = make(map[string]string, len(o.m))
		}
		for k, v := range o.m {
			ev.Metadata[k] = v
		}
	case opID:
		ev.ID = o.id
	case opTime:
		ev.Time = o.t
	case opCorrelation:
		ev.CorrelationID = o.id
	}
}

// enqueue queues d for the workers. With noWait it never waits for room:
// d spills over a full queue instead.
func (b *Bus[T]) enqueue(ctx context.Context, d *delivery[T], noWait bool) error {
	if d.ev.AggregateID != "" {
		b.keys.reserve(d)
	}
	err := b.send(ctx, d, noWait)
	if err != nil && d.key != nil {
		if next := b.keys.release(d); next != nil {
			// A later event of the key was queued by another publisher and
			// is parked waiting for this one, which will never come: run it
			// here rather than strand it.
			b.runKeyed(next)
		}
	}
	return err
}

// nudge makes an idle worker look at the spill.
//
// On a buffered queue a nil sent on the queue does it. The spill only
// grows when the queue was full a moment ago, so either the nil finds
// room (the queue has drained since, and a worker waiting on it wakes), or
// the queue is still full and the worker that takes its last event looks
// at the spill before waiting again. An unbuffered queue has no room for a
// nil unless a worker already waits, so there workers also wait on a
// wake-up channel, which costs every wait a second channel.
func (b *Bus[T]) nudge() {
	if b.wake == nil {
		select {
		case b.queue <- nil:
		default:
		}
		return
	}
	select {
	case b.wake <- struct{}{}:
	default: // a wake-up is pending already: the worker taking it looks
	}
}

func (b *Bus[T]) send(ctx context.Context, d *delivery[T], noWait bool) error {
	select {
	case b.queue <- d:
		return nil
	default:
	}
	if noWait {
		// A handler must never wait for room (the workers that would make
		// room may be the ones waiting), nor may an event already stored.
		b.spill.push(d)
		// Workers look at the spill before each wait, but one may be past
		// that look and not yet waiting: make it look again.
		b.nudge()
		return nil
	}
	if b.cfg.failFast {
		return ErrQueueFull
	}
	select {
	case b.queue <- d:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// done ends one unit of in-flight work, and finishes a Close waiting for
// the last one.
func (b *Bus[T]) done() {
	if b.inflight.Add(-1) != 0 || b.state.Load() == stateOpen {
		return
	}
	b.state.CompareAndSwap(stateClosing, stateStopped)
	if b.inflight.Load() == 0 {
		// Stopped with nothing in flight: no Publish can be between its
		// check of the state and its send, so the queue can be closed.
		b.drainMu.Do(func() {
			if b.queue != nil {
				close(b.queue)
			}
			close(b.drained)
		})
	}
}

// Close stops the bus. Publish returns [ErrClosed] from then on, except for
// handlers that are still running, whose follow-up events are accepted and
// handled as part of the drain. Close waits until every accepted event has
// been handled (retries included) and the workers have exited, or until ctx
// is done.
//
// If ctx is done first, Close cancels the contexts of running handlers,
// drops the events still queued (counting them in [Stats].Dropped and
// passing them to the [WithDeadLetter] function), and returns ctx's error
// without waiting further: handlers that ignore their context finish in the
// background.
//
// Close is safe to call more than once and concurrently with Publish; later
// calls wait like the first.
func (b *Bus[T]) Close(ctx context.Context) error {
	if b.state.CompareAndSwap(stateOpen, stateClosing) {
		// Durable subscriptions stop first, each after the event in hand,
		// while their handlers' follow-up events are still accepted; what
		// they have not read stays in the store for their next start.
		list := b.durables.Load().list
		for _, c := range list {
			c.halt()
		}
		b.bgCancel()
	wait:
		for _, c := range list {
			select {
			case <-c.done:
			case <-ctx.Done():
				b.cancel()
				break wait
			}
		}
		b.inflight.Add(1) // Close's own unit, so that done sees the change of state
		b.done()
	}
	select {
	case <-b.drained:
		b.wg.Wait()
		b.cancel()
		return nil
	case <-ctx.Done():
		b.cancel()
		return fmt.Errorf("event: close: gave up waiting for %d in-flight events: %w", max(b.inflight.Load(), 0), ctx.Err())
	}
}

// Publisher is what a service needs to publish events. *Bus[T] and the
// test double eventtest.MockBus[T] implement it; depend on it rather than
// on *Bus[T] to test a service without a bus.
type Publisher[T any] interface {
	Publish(ctx context.Context, topic string, payload T, opts ...PublishOption) error
}

// Subscriber is what a service needs to register handlers of the bus's
// payload type. *Bus[T] and eventtest.MockBus[T] implement it.
type Subscriber[T any] interface {
	Handle(pattern string, h Handler[T], opts ...SubscribeOption) (*Subscription, error)
}

var (
	_ Publisher[any]  = (*Bus[any])(nil)
	_ Subscriber[any] = (*Bus[any])(nil)
)

// Store returns the store the bus was created with (see WithStore), or nil.
func (b *Bus[T]) Store() store.Store { return b.store }
