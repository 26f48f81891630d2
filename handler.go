package event

import (
	"context"
	"fmt"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/ncore-io/event/store"
)

// A Handler reacts to an event. It returns nil when the event is handled,
// and an error to have it retried per the subscription's [RetryPolicy] and,
// after the last attempt, dead-lettered. A panic counts as an error (see
// [PanicError]).
//
// The context is done when the attempt's [Timeout] expires or when
// [Bus.Close] gives up waiting. Publish with it from inside the handler:
// the new event then records this one as its cause.
type Handler[T any] func(ctx context.Context, ev Event[T]) error

// Subscription is a registered handler. It is safe for concurrent use.
type Subscription struct {
	name, pattern string
	stop          func()
	err           func() error
}

// Err returns what keeps a durable subscription from going on: while it
// retries a store that fails (a read, or loading its checkpoint), the last
// such error, and nil again once the store answers; after it stopped by
// itself, why, such as an error matching [store.ErrCursorExpired] when
// retention deleted events it had not yet handled. It is always nil for a
// subscription that is not durable. The same errors are logged and counted
// in [Stats].StoreErrors.
func (s *Subscription) Err() error {
	if s.err == nil {
		return nil
	}
	return s.err()
}

// Name returns the subscription's name: the one given with [Name], or its
// pattern.
func (s *Subscription) Name() string { return s.name }

// Pattern returns the topic pattern the subscription was made with.
func (s *Subscription) Pattern() string { return s.pattern }

// Unsubscribe removes the subscription: events published after it returns
// are not delivered to it, and of those already queued, none starts after it
// returns except one a worker was handing over at that moment. An attempt
// already running finishes, but no retry starts after Unsubscribe: an
// in-process event whose retries it cuts off is counted as dropped and goes
// to the dead letters with an error matching [ErrUnsubscribed]; a durable
// subscription's is handled again on its next start. Unsubscribe does not
// wait for running attempts, so it may be called from the subscription's own
// handler. For a durable subscription the checkpoint is saved once the event
// in hand is done. Calling it again does nothing.
func (s *Subscription) Unsubscribe() { s.stop() }

// Subscribe registers h for events whose topic matches pattern, on a bus or
// on anything else that implements [Subscriber] (eventtest.MockBus does),
// and returns the subscription.
//
// On a bus of an interface type T (such as any), h's payload type E may be
// a concrete type: h then receives only the events whose payload is an E,
// and events of other types on the same topic are not delivered to it. A
// handler of E also receives events whose payload is a non-nil *E, and a
// handler of *E those whose payload is an E (as a pointer to a copy), so
// that whether the publisher passed a value or a pointer does not decide
// whether an event is delivered; the rule is the same for events delivered
// in process and those a [Durable] subscription reads from the store.
// Subscribing a handler of a concrete type also registers the type for
// decoding stored events (see [WithTypes]). On a bus of a concrete type T,
// E is T, *T (by the pointer rule), or an interface T implements.
//
// Patterns are topics whose segments may be wildcards: "*" matches one
// segment and a final ">" matches one or more (see [store.ValidatePattern]).
// An invalid pattern or option returns an error matching [ErrInvalidTopic]
// or naming the option; a nil h panics, as it is a programming error.
func Subscribe[E, T any](s Subscriber[T], pattern string, h Handler[E], opts ...SubscribeOption) (*Subscription, error) {
	if h == nil {
		panic("event: Subscribe with nil handler")
	}
	if direct, ok := any(h).(Handler[T]); ok {
		return s.Handle(pattern, direct, opts...)
	}
	typed := &typedHandler{payload: reflect.TypeFor[E](), accepts: takesPayload[E]}
	call := func(ctx context.Context, ev Event[T]) error {
		e, ok := convert[E](&ev)
		if !ok {
			return nil // unreachable: accepts filtered it out
		}
		return h(ctx, e)
	}
	opts = append(opts[:len(opts):len(opts)], func(c *subConfig) { c.typed = typed })
	return s.Handle(pattern, call, opts...)
}

// canCarry reports an error if no payload of a bus of type bus can ever be
// taken by a handler of e, which would make a subscription that never
// receives anything.
func canCarry(bus, e reflect.Type) error {
	switch {
	case bus == e:
		return nil
	case bus.Kind() != reflect.Interface && e.Kind() == reflect.Interface && bus.Implements(e):
		return nil // a concrete bus whose type implements the handler's interface
	case bus.Kind() == reflect.Interface && (e.Kind() == reflect.Interface || e.Implements(bus) || reflect.PointerTo(e).Implements(bus)):
		return nil
	case bus.Kind() == reflect.Interface && e.Kind() == reflect.Pointer && e.Elem().Implements(bus):
		return nil
	case bus.Kind() != reflect.Interface && (reflect.PointerTo(bus) == e || (bus.Kind() == reflect.Pointer && bus.Elem() == e)):
		return nil // the pointer rule of Subscribe
	}
	return fmt.Errorf("a handler of %v never receives anything on a bus of %v", e, bus)
}

// Handle registers h for events whose topic matches pattern: it is the
// method behind [Subscribe], which is how callers should subscribe, so that
// *Bus[T] satisfies [Subscriber].
func (b *Bus[T]) Handle(pattern string, h Handler[T], opts ...SubscribeOption) (*Subscription, error) {
	if h == nil {
		panic("event: Subscribe with nil handler")
	}
	return b.subscribe(pattern, h, opts)
}

// subscription is the engine's view of a registered handler.
type subscription[T any] struct {
	name    string
	pattern string
	call    Handler[T]
	accepts func(T) bool // nil: every payload
	retry   RetryPolicy
	timeout time.Duration
	sem     chan struct{} // nil: no concurrency cap
	sync    bool
	durable *durable[T] // set for a durable subscription, which reads the store
	removed atomic.Bool
	// stop is closed when the subscription stops: by Unsubscribe, or, for
	// a durable subscription, when Close stops it or gives up.
	stop   <-chan struct{}
	cancel context.CancelFunc
	ctxv   context.Context // whose Done is stop
}

func (s *subscription[T]) ctx() context.Context { return s.ctxv }

func (s *subscription[T]) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

func (b *Bus[T]) subscribe(pattern string, call Handler[T], opts []SubscribeOption) (*Subscription, error) {
	if err := store.ValidatePattern(pattern); err != nil {
		return nil, fmt.Errorf("event: subscribe: %w", err)
	}
	var c subConfig
	for _, o := range opts {
		o(&c)
	}
	s := &subscription[T]{
		name:    c.name,
		pattern: pattern,
		call:    call,
		retry:   b.cfg.retry,
		timeout: b.cfg.timeout,
		sync:    c.sync || b.cfg.sync,
	}
	if s.name == "" {
		s.name = pattern
	}
	if c.typed != nil {
		if err := canCarry(b.payloadType, c.typed.payload); err != nil {
			return nil, fmt.Errorf("event: subscribe %s: %w", pattern, err)
		}
		if b.payloadType.Kind() == reflect.Interface {
			// Learn the type, so that stored events of it can be decoded.
			if err := b.types.add(c.typed.payload); err != nil {
				return nil, fmt.Errorf("event: subscribe %s: %w", pattern, err)
			}
		}
		accepts := c.typed.accepts
		s.accepts = func(p T) bool { return accepts(any(p)) }
	}
	// Names go to the store with checkpoints and dead letters: refuse
	// here what it would refuse later, when a dead letter would be lost.
	if c.name != "" {
		if err := store.ValidateName("subscription name", c.name); err != nil {
			return nil, fmt.Errorf("event: subscribe %s: %w", pattern, err)
		}
	}
	if c.durableSet {
		if err := store.ValidateName("durable subscription name", c.durable); err != nil {
			return nil, fmt.Errorf("event: subscribe %s: %w", pattern, err)
		}
	}
	if c.retry != nil {
		if err := c.retry.validate(); err != nil {
			return nil, fmt.Errorf("event: subscribe %s: %w", s.name, err)
		}
		s.retry = *c.retry
	}
	if c.timeout != nil {
		if *c.timeout < 0 {
			return nil, fmt.Errorf("event: subscribe %s: timeout must be zero (none) or positive, got %v", s.name, *c.timeout)
		}
		s.timeout = *c.timeout
	}
	switch {
	case c.concurrency < 0:
		return nil, fmt.Errorf("event: subscribe %s: concurrency must be zero (no cap) or positive, got %d", s.name, c.concurrency)
	case c.concurrency > 0:
		s.sem = make(chan struct{}, c.concurrency)
	}
	if b.state.Load() != stateOpen {
		return nil, fmt.Errorf("event: subscribe %s: %w", s.name, ErrClosed)
	}
	if c.durable == "" {
		ctx, cancel := context.WithCancel(context.Background())
		s.stop, s.cancel, s.ctxv = ctx.Done(), cancel, ctx
		b.addSub(s)
		return &Subscription{name: s.name, pattern: pattern, stop: func() { b.removeSub(s) }}, nil
	}
	if c.sync {
		return nil, fmt.Errorf("event: subscribe %s: a durable subscription cannot be synchronous", s.name)
	}
	if c.name == "" {
		s.name = c.durable
	}
	dc, err := b.startDurable(s, &c)
	if err != nil {
		return nil, err
	}
	return &Subscription{name: s.name, pattern: pattern, err: dc.Err, stop: func() { b.stopDurable(dc) }}, nil
}
