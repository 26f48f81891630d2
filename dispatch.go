package event

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/ncore-io/event/store"
)

// delivery is one published event on its way to its subscriptions. It is
// the one allocation of an asynchronous publish, and it doubles as the
// context its handlers receive, which carries the event's identity (for
// causation) and the publisher's context values (for tracing).
type delivery[T any] struct {
	bus    *Bus[T]
	parent context.Context // the publisher's context
	route  *route[T]
	async  bool
	rec    *store.Record   // the stored event, on a bus with a store
	stop   <-chan struct{} // closed to abandon a durable delivery
	key    *keyState[T]    // set for events with an aggregate ID
	seq    uint64          // the event's number within its key
	ev     Event[T]
}

type ctxKey struct{}

// deliveryInfo is what Publish reads from a handler's context.
type deliveryInfo struct {
	id, correlation uuid.UUID
	bus             any // the *Bus[T] delivering it
}

// Deadline, Done and Err make a synchronous delivery's context the
// publisher's, and an asynchronous one's independent of the publisher (which
// has usually returned) but cancelled when Close gives up.
func (d *delivery[T]) Deadline() (time.Time, bool) {
	if d.async {
		return time.Time{}, false
	}
	return d.parent.Deadline()
}

func (d *delivery[T]) Done() <-chan struct{} {
	if d.async {
		return d.bus.abort.Done()
	}
	return d.parent.Done()
}

func (d *delivery[T]) Err() error {
	if d.async {
		return d.bus.abort.Err()
	}
	return d.parent.Err()
}

func (d *delivery[T]) Value(key any) any {
	if key == (ctxKey{}) {
		return deliveryInfo{d.ev.ID, d.ev.CorrelationID, d.bus}
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
func (d *delivery[T]) AfterFunc(f func()) func() bool {
	if d.async {
		return context.AfterFunc(d.bus.abort, f)
	}
	return context.AfterFunc(d.parent, f)
}

func (d *delivery[T]) String() string { return "event.delivery(" + d.ev.Topic + ")" }

// work runs queued events until the queue is closed.
func (b *Bus[T]) work() {
	defer b.wg.Done()
	for {
		if d := b.spill.pop(); d != nil {
			b.handle(d)
			continue
		}
		if b.wake == nil {
			// One channel: a two-channel select locks both on every wait,
			// and the queue's lock is the one publishers contend for.
			d, ok := <-b.queue
			if !ok {
				return
			}
			if d != nil { // nil: a nudge to look at the spill
				b.handle(d)
			}
			continue
		}
		select {
		case d, ok := <-b.queue:
			if !ok {
				return
			}
			b.handle(d)
		case <-b.wake:
		}
	}
}

// handle runs a dequeued event, or parks it behind its key's earlier ones.
func (b *Bus[T]) handle(d *delivery[T]) {
	if d.key == nil {
		b.deliverAll(d)
		b.done()
		return
	}
	if b.keys.acquire(d) {
		b.runKeyed(d)
	}
}

// runKeyed runs d, whose key the caller holds, and then the key's parked
// successors.
func (b *Bus[T]) runKeyed(d *delivery[T]) {
	for d != nil {
		b.deliverAll(d)
		next := b.keys.finish(d)
		b.done()
		d = next
	}
}

// deliverAll delivers d to its asynchronous subscriptions.
func (b *Bus[T]) deliverAll(d *delivery[T]) {
	for _, s := range d.route.async {
		if s.removed.Load() || (s.accepts != nil && !s.accepts(d.ev.Payload)) {
			continue
		}
		if b.abort.Err() != nil {
			b.drop(s, d)
			continue
		}
		b.deliver(s, d)
	}
}

// deliver runs one subscription's handler for d, with retries, and
// dead-letters it after the last attempt.
func (b *Bus[T]) deliver(s *subscription[T], d *delivery[T]) outcome {
	b.stats.delivered.Add(1)
	if s.sem != nil {
		select {
		case s.sem <- struct{}{}:
		case <-d.Done():
			return b.giveUp(s, d, 0, fmt.Errorf("event: waiting for a concurrency slot: %w", context.Cause(d)))
		case <-d.stop:
			return b.abandon(s, d)
		}
		defer func() { <-s.sem }()
	}
	for attempt := 1; ; attempt++ {
		err := b.attempt(s, d)
		if err == nil {
			b.stats.processed.Add(1)
			return succeeded
		}
		if d.Err() != nil {
			return b.giveUp(s, d, attempt, err)
		}
		if attempt > s.retry.MaxRetries {
			if !b.fail(s, d, attempt, err) && d.stop != nil {
				return unkept
			}
			return failed
		}
		wait := s.retry.backoff(attempt)
		b.log.LogAttrs(context.Background(), slog.LevelDebug, "event: handler failed, will retry",
			slog.String("subscription", s.name), slog.String("topic", d.ev.Topic),
			slog.String("event_id", d.ev.ID.String()), slog.Int("attempt", attempt),
			slog.Duration("backoff", wait), slog.Any("error", err))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-d.Done():
			t.Stop()
			return b.giveUp(s, d, attempt, fmt.Errorf("%w (no retry: %w)", err, context.Cause(d)))
		case <-d.stop:
			t.Stop()
			return b.abandon(s, d)
		}
		b.stats.retried.Add(1) // only now: a retry that Close cut off never ran
	}
}

// outcome is how a delivery ended.
type outcome uint8

const (
	succeeded outcome = iota // the handler returned nil
	failed                   // dead-lettered after the last attempt, or dropped at Close
	abandoned                // a durable delivery cut short, to be handled on the next start
	unkept                   // a durable delivery failed, and the store could not keep its dead letter
)

// giveUp ends a delivery whose context was cancelled because Close gave
// up. A durable delivery is abandoned, as its event stays in the store; any
// other is failed and dead-lettered.
func (b *Bus[T]) giveUp(s *subscription[T], d *delivery[T], attempts int, err error) outcome {
	if d.stop != nil {
		return b.abandon(s, d)
	}
	b.fail(s, d, attempts, err)
	return failed
}

// abandon ends a durable delivery unfinished; it is counted as dropped and
// handled again when the subscription next starts.
func (b *Bus[T]) abandon(s *subscription[T], d *delivery[T]) outcome {
	b.stats.dropped.Add(1)
	b.log.LogAttrs(context.Background(), slog.LevelInfo, "event: durable subscription stopped during delivery; it will be redelivered",
		slog.String("subscription", s.name), slog.String("event_id", d.ev.ID.String()))
	return abandoned
}

// attempt calls the handler once, under the subscription's timeout,
// turning a panic into a *PanicError. An attempt that outlives its timeout
// fails even if the handler then returns nil: its work may have been cut
// short by the cancelled context.
func (b *Bus[T]) attempt(s *subscription[T], d *delivery[T]) error {
	if s.timeout <= 0 {
		return safeCall(s.call, d, &d.ev)
	}
	ctx, cancel := context.WithTimeout(d, s.timeout)
	defer cancel()
	err := safeCall(s.call, ctx, &d.ev)
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("event: handler exceeded its %v timeout: %w", s.timeout, errors.Join(context.DeadlineExceeded, err))
		}
	}
	return err
}

func safeCall[T any](call func(context.Context, *Event[T]) error, ctx context.Context, ev *Event[T]) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return call(ctx, ev)
}

// fail records a delivery that will not be retried and hands it to the
// dead-letter function, reporting false if the store should have kept the
// dead letter and could not.
func (b *Bus[T]) fail(s *subscription[T], d *delivery[T], attempts int, err error) bool {
	b.stats.failed.Add(1)
	b.log.LogAttrs(context.Background(), slog.LevelError, "event: handler failed, dead-lettering",
		slog.String("subscription", s.name), slog.String("topic", d.ev.Topic),
		slog.String("event_id", d.ev.ID.String()), slog.Int("attempts", attempts), slog.Any("error", err))
	return b.deadLetter(s, d, attempts, err)
}

// drop records a queued delivery abandoned because Close gave up.
func (b *Bus[T]) drop(s *subscription[T], d *delivery[T]) {
	b.stats.delivered.Add(1) // before its outcome, as Stats reads them in the other order
	b.stats.dropped.Add(1)
	b.log.LogAttrs(context.Background(), slog.LevelWarn, "event: bus closed before delivery, dropping",
		slog.String("subscription", s.name), slog.String("topic", d.ev.Topic), slog.String("event_id", d.ev.ID.String()))
	b.deadLetter(s, d, 0, ErrClosed)
}

func (b *Bus[T]) deadLetter(s *subscription[T], d *delivery[T], attempts int, err error) bool {
	kept, stored := false, true
	if _, ok := b.store.(store.DeadLetterStore); ok {
		stored = b.storeDeadLetter(s, d, attempts, err)
		kept = stored
	}
	if b.cfg.deadLetter != nil {
		ev, _ := convert[any](&d.ev)
		b.cfg.deadLetter(context.WithoutCancel(d), DeadLetter{Subscription: s.name, Event: ev, Err: err, Attempts: attempts, Time: time.Now()})
		kept = true
	}
	if kept {
		b.stats.deadLettered.Add(1)
	}
	return stored
}

// DeadLetter is an event that a subscription failed to handle.
type DeadLetter struct {
	// Subscription is the name of the subscription that failed.
	Subscription string
	// Event is the event, with its payload as an any.
	Event Event[any]
	// Err is the last attempt's error, or [ErrClosed] for an event dropped
	// because [Bus.Close] gave up before it was delivered.
	Err error
	// Attempts is how many times the handler was called.
	Attempts int
	// Time is when the event was dead-lettered.
	Time time.Time
}

// spill is an unbounded FIFO for events that handlers publish while the
// queue is full.
type spill[T any] struct {
	n  atomic.Int32
	mu sync.Mutex
	q  []*delivery[T]
}

func (s *spill[T]) push(d *delivery[T]) {
	s.mu.Lock()
	s.q = append(s.q, d)
	s.n.Add(1)
	s.mu.Unlock()
}

func (s *spill[T]) pop() *delivery[T] {
	if s.n.Load() == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.q) == 0 {
		return nil
	}
	d := s.q[0]
	s.q[0] = nil
	s.q = s.q[1:]
	s.n.Add(-1)
	return d
}

func (s *spill[T]) len() int { return int(s.n.Load()) }
