package event

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/google/uuid"
)

// delivery is one queued event on its way to its asynchronous
// subscriptions. Deliveries are recycled through the bus's pool once a
// worker has run them (see Bus.recycle), so nothing may keep one past
// that: handlers get a deliveryCtx of their own, and the event by value.
type delivery[T any] struct {
	parent context.Context // the publisher's context
	route  *route[T]
	key    *keyState[T] // set for queued events with an aggregate ID
	seq    uint64       // the event's number within its key
	ev     Event[T]
}

type ctxKey struct{}

// deliveryInfo is what Publish reads from a handler's context.
type deliveryInfo struct {
	id, correlation uuid.UUID
	bus             any // the *Bus[T] delivering it
}

// caller returns what ctx says of the handler that is publishing, if any,
// and whether it is a handler of b. Only b's own handlers are exempt from
// backpressure and from Close; a handler of another bus publishing here is
// an ordinary publisher (its event still records the cause).
func (b *Bus[T]) caller(ctx context.Context) (deliveryInfo, bool) {
	parent, _ := ctx.Value(ctxKey{}).(deliveryInfo)
	return parent, parent.id != uuid.Nil && parent.bus == any(b)
}

// deliveryCtx is the context handlers receive: it carries the event's
// identity (for the causation of the events they publish) and the
// publisher's context values (for tracing). It is what a delivery
// allocates, 64 bytes, once per event for all its subscriptions: the event
// itself stays with the caller (the publisher's frame, or a recycled
// delivery), and handlers receive it by value. Handlers may keep it.
//
// A synchronous delivery's context (a synchronous subscription's, a
// replay's or a redrive's) is the publisher's; an asynchronous one's (a
// worker's, or a durable subscription's) is independent of the publisher,
// which has usually returned, and cancelled when Close gives up.
type deliveryCtx[T any] struct {
	parent          context.Context
	bus             *Bus[T]
	id, correlation uuid.UUID
	async           bool
}

func newDeliveryCtx[T any](b *Bus[T], parent context.Context, ev *Event[T], async bool) *deliveryCtx[T] {
	return &deliveryCtx[T]{parent: parent, bus: b, id: ev.ID, correlation: ev.CorrelationID, async: async}
}

func (d *deliveryCtx[T]) Deadline() (time.Time, bool) {
	if d.async {
		return time.Time{}, false
	}
	return d.parent.Deadline()
}

func (d *deliveryCtx[T]) Done() <-chan struct{} {
	if d.async {
		return d.bus.abort.Done()
	}
	return d.parent.Done()
}

func (d *deliveryCtx[T]) Err() error {
	if d.async {
		return d.bus.abort.Err()
	}
	return d.parent.Err()
}

func (d *deliveryCtx[T]) Value(key any) any {
	if key == (ctxKey{}) {
		return deliveryInfo{d.id, d.correlation, d.bus}
	}
	if d.async && d.parent.Done() != nil {
		// Hide the publisher's cancellation (including from context.Cause)
		// while keeping its values.
		return context.WithoutCancel(d.parent).Value(key)
	}
	return d.parent.Value(key)
}

// AfterFunc lets context.WithTimeout and friends derive from a delivery
// without a goroutine per derived context.
func (d *deliveryCtx[T]) AfterFunc(f func()) func() bool {
	if d.async {
		return context.AfterFunc(d.bus.abort, f)
	}
	return context.AfterFunc(d.parent, f)
}

func (d *deliveryCtx[T]) String() string { return "event.delivery(" + d.id.String() + ")" }

// deliverAll delivers a dequeued d to its asynchronous subscriptions.
func (b *Bus[T]) deliverAll(d *delivery[T]) {
	var hc *deliveryCtx[T] // made for the first subscription that takes d
	for _, s := range d.route.async {
		if s.removed.Load() || (s.accepts != nil && !s.accepts(d.ev.Payload)) {
			continue
		}
		if hc == nil {
			hc = newDeliveryCtx(b, d.parent, &d.ev, true)
		}
		if b.abort.Err() != nil {
			b.drop(s, hc, &d.ev, ErrClosed)
			continue
		}
		b.deliver(s, hc, &d.ev)
	}
}

// outcome is how one subscription's delivery of an event ended. The
// in-process and durable paths share it.
type outcome uint8

const (
	succeeded outcome = iota // the handler returned nil
	failed                   // failed after its last attempt, and dead-lettered
	abandoned                // the subscription stopped first; counted as dropped, not dead-lettered
	lost                     // failed, and the store could not keep its dead letter
)

// deliver runs one subscription's handler for ev, with retries, and
// dead-letters ev after the last attempt; ctx is the handlers' context (the
// delivery). It gives up on ev, abandoned, when
// the subscription stops (Unsubscribe, or a durable subscription halted)
// while ev waits for a retry or a concurrency slot; an attempt already
// running finishes first. It keeps neither ctx nor ev once it returns.
func (b *Bus[T]) deliver(s *subscription[T], ctx context.Context, ev *Event[T]) outcome {
	b.stats.delivered.Add(1)
	if s.sem != nil {
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return b.giveUp(s, ctx, ev, 0, fmt.Errorf("event: waiting for a concurrency slot: %w", context.Cause(ctx)))
		case <-s.stop:
			return b.abandon(s, ctx, ev, 0, nil)
		}
		defer func() { <-s.sem }()
	}
	for attempt := 1; ; attempt++ {
		err := b.attempt(s, ctx, ev)
		if err == nil {
			b.stats.processed.Add(1)
			return succeeded
		}
		if ctx.Err() != nil {
			return b.giveUp(s, ctx, ev, attempt, err)
		}
		if attempt > s.retry.MaxRetries {
			return b.fail(s, ctx, ev, nil, attempt, err)
		}
		if s.stopped() {
			return b.abandon(s, ctx, ev, attempt, err)
		}
		wait := s.retry.backoff(attempt)
		b.log.LogAttrs(context.Background(), slog.LevelDebug, "event: handler failed, will retry",
			slog.String("subscription", s.name), slog.String("topic", ev.Topic),
			slog.String("event_id", ev.ID.String()), slog.Int("attempt", attempt),
			slog.Duration("backoff", wait), slog.Any("error", err))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return b.giveUp(s, ctx, ev, attempt, fmt.Errorf("%w (no retry: %w)", err, context.Cause(ctx)))
		case <-s.stop:
			t.Stop()
			return b.abandon(s, ctx, ev, attempt, err)
		}
		b.stats.retried.Add(1) // only now: a retry that was cut off never ran
	}
}

// giveUp ends a delivery whose context is done: the publisher's, for a
// synchronous delivery, or the bus's when Close gave up. A durable
// subscription, stopped by the same Close, abandons it, as its event stays
// in the store; any other fails and dead-letters it.
func (b *Bus[T]) giveUp(s *subscription[T], ctx context.Context, ev *Event[T], attempts int, err error) outcome {
	if s.durable != nil && s.stopped() {
		return b.abandon(s, ctx, ev, attempts, err)
	}
	return b.fail(s, ctx, ev, nil, attempts, err)
}

// abandon ends a delivery unfinished because its subscription stopped
// after attempts failed ones (the last failing with err); it is counted as
// dropped. A durable subscription's event is handled again on its next
// start. An in-process event has no next start, so it goes to the dead
// letters, its error matching ErrUnsubscribed.
func (b *Bus[T]) abandon(s *subscription[T], ctx context.Context, ev *Event[T], attempts int, err error) outcome {
	b.stats.dropped.Add(1)
	b.log.LogAttrs(context.Background(), slog.LevelInfo, "event: subscription stopped during delivery",
		slog.String("subscription", s.name), slog.String("event_id", ev.ID.String()), slog.Bool("durable", s.durable != nil))
	if s.durable == nil {
		cut := fmt.Errorf("%w before the event was handled", ErrUnsubscribed)
		if err != nil {
			cut = fmt.Errorf("%w; last attempt: %w", cut, err)
		}
		b.deadLetter(s, ctx, ev, nil, attempts, cut)
	}
	return abandoned
}

// attempt calls the handler once, under the subscription's timeout,
// turning a panic into a *PanicError. An attempt that outlives its timeout
// fails even if the handler then returns nil: its work may have been cut
// short by the cancelled context.
func (b *Bus[T]) attempt(s *subscription[T], ctx context.Context, ev *Event[T]) error {
	if s.timeout <= 0 {
		return safeCall(s.call, ctx, ev)
	}
	tctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := safeCall(s.call, tctx, ev)
	if errors.Is(context.Cause(tctx), context.DeadlineExceeded) {
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("event: handler exceeded its %v timeout: %w", s.timeout, errors.Join(context.DeadlineExceeded, err))
		}
	}
	return err
}

// safeCall calls the handler with a copy of *ev: handlers receive events by
// value, and a pointer handed to a function value would make every event
// escape to the heap.
func safeCall[T any](call Handler[T], ctx context.Context, ev *Event[T]) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return call(ctx, *ev)
}
