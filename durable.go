package event

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ncore-io/event/store"
)

// Defaults of durable subscriptions.
const (
	// DefaultCheckpointEvery is how many events a durable subscription
	// handles between checkpoints, and so the most it handles again after a
	// crash.
	DefaultCheckpointEvery = 100
	// DefaultCheckpointInterval is the longest a durable subscription goes
	// without saving its checkpoint while it has handled events.
	DefaultCheckpointInterval = time.Second
	// DefaultPollInterval is how often a durable subscription looks for
	// events appended by other processes when the store cannot signal them
	// (see [store.Notifier]).
	DefaultPollInterval = time.Second
	// durableBatch is how many records a durable subscription reads at a
	// time.
	durableBatch = 500
)

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
// using Event.ID or Event.Position.
//
// A bus without a store ([WithStore]) rejects durable subscriptions. One
// bus runs at most one subscription of a name; several processes sharing a
// name would each handle every event.
func Durable(name string) SubscribeOption {
	return func(c *subConfig) { c.durable, c.durableSet = name, true }
}

// Checkpoint sets how often a durable subscription saves its checkpoint:
// after every n events, and at least every d while it has handled events. A
// crash repeats at most n events. Zero keeps a default.
func Checkpoint(n int, d time.Duration) SubscribeOption {
	return func(c *subConfig) { c.cpEvery, c.cpInterval = n, d }
}

// durable runs one durable subscription: a goroutine that reads the store
// from the subscription's checkpoint and hands each event to its handler.
type durable[T any] struct {
	bus        *Bus[T]
	sub        *subscription[T]
	name       string
	cpEvery    int
	cpInterval time.Duration
	wake       chan struct{}
	// ctx ends when the subscription is to stop, between events; it bounds
	// the store calls, not the handler, whose context is the bus's.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	err error // why the subscription stopped by itself
}

func (c *durable[T]) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *durable[T]) halt() { c.cancel() }

func (c *durable[T]) setErr(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

func (c *durable[T]) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// run is the subscription's goroutine.
func (c *durable[T]) run() {
	defer close(c.done)
	b := c.bus
	ctx := c.ctx
	defer c.cancel()
	var watch <-chan struct{}
	if w, ok := b.store.(store.Notifier); ok {
		ch, err := w.Notify(ctx)
		if err != nil {
			b.log.LogAttrs(ctx, slog.LevelWarn, "event: durable subscription cannot watch the store, polling instead",
				slog.String("subscription", c.name), slog.Any("error", err))
		} else {
			watch = ch
		}
	}
	cursor, ok := c.checkpoint(ctx)
	if !ok {
		return
	}
	saved, handled, lastSave := cursor, 0, time.Now()
	save := func() {
		if cursor == saved {
			return
		}
		// The checkpoint must be saved even while stopping.
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer scancel()
		if err := b.store.SetCheckpoint(sctx, c.name, cursor); err != nil {
			b.log.LogAttrs(ctx, slog.LevelError, "event: durable subscription could not save its checkpoint",
				slog.String("subscription", c.name), slog.Any("error", err))
			return
		}
		saved, handled, lastSave = cursor, 0, time.Now()
	}
	defer save()
	poll := time.NewTimer(b.cfg.pollInterval)
	defer poll.Stop()
	backoff := 10 * time.Millisecond
	for {
		select {
		case <-c.ctx.Done():
			return
		default:
		}
		recs, next, err := b.store.Read(ctx, store.Query{Topic: c.sub.pattern, After: cursor, Limit: durableBatch})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, store.ErrCursorExpired) || errors.Is(err, store.ErrInvalidCursor) || errors.Is(err, store.ErrClosed) {
				err = fmt.Errorf("event: durable subscription %s stopped: %w", c.name, err)
				c.setErr(err)
				b.log.LogAttrs(ctx, slog.LevelError, err.Error(), slog.String("subscription", c.name))
				return
			}
			b.log.LogAttrs(ctx, slog.LevelWarn, "event: durable subscription cannot read the store, retrying",
				slog.String("subscription", c.name), slog.Duration("retry_in", backoff), slog.Any("error", err))
			if !c.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		retry := false
		for i := range recs {
			switch c.handle(&recs[i]) {
			case stopped:
				return // the event will be handled on the next start
			case tryAgain:
				retry = true
			}
			if retry {
				break
			}
			cursor = recs[i].Cursor
			handled++
			if handled >= c.cpEvery || time.Since(lastSave) >= c.cpInterval {
				save()
			}
		}
		if retry {
			// Moving past a failed event whose dead letter was not stored
			// would lose it: deliver it again once the store recovers.
			b.log.LogAttrs(ctx, slog.LevelWarn, "event: durable subscription could not store a dead letter; will deliver the event again",
				slog.String("subscription", c.name), slog.Duration("retry_in", backoff))
			save()
			if !c.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 10 * time.Millisecond
		if len(recs) > 0 {
			continue
		}
		if next != cursor {
			// Past records the pattern skipped. A filtered read looks at
			// part of the log at a time, so more may follow: read on.
			cursor = next
			if time.Since(lastSave) >= c.cpInterval {
				save()
			}
			continue
		}
		save()
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(b.cfg.pollInterval)
		select {
		case <-c.ctx.Done():
			return
		case <-c.wake:
		case <-watch:
		case <-poll.C:
		}
	}
}

// checkpoint loads the saved cursor, retrying while the store fails.
func (c *durable[T]) checkpoint(ctx context.Context) (store.Cursor, bool) {
	backoff := 10 * time.Millisecond
	for {
		cur, err := c.bus.store.Checkpoint(ctx, c.name)
		if err == nil {
			return cur, true
		}
		if ctx.Err() != nil {
			return "", false
		}
		if errors.Is(err, store.ErrClosed) {
			c.setErr(fmt.Errorf("event: durable subscription %s stopped: %w", c.name, err))
			return "", false
		}
		c.bus.log.LogAttrs(ctx, slog.LevelWarn, "event: durable subscription cannot load its checkpoint, retrying",
			slog.String("subscription", c.name), slog.Any("error", err))
		if !c.sleep(backoff) {
			return "", false
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (c *durable[T]) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// verdict says how the delivery of one record ended, for the checkpoint.
type verdict uint8

const (
	moveOn   verdict = iota // handled or dead-lettered: move past it
	stopped                 // the subscription stopped first: handle it on the next start
	tryAgain                // it failed and its dead letter could not be stored: deliver it again later
)

// handle delivers one record.
func (c *durable[T]) handle(rec *store.Record) verdict {
	b := c.bus
	ev, err := b.decode(rec)
	d := &delivery[T]{bus: b, parent: context.Background(), async: true, stop: c.ctx.Done(), ev: ev, rec: rec}
	if err != nil {
		// Not dropped: counted, logged and dead-lettered with the reason,
		// to be re-driven once the type is registered.
		b.stats.delivered.Add(1)
		if !b.fail(c.sub, d, 0, err) {
			return tryAgain
		}
		return moveOn
	}
	if c.sub.removed.Load() {
		return stopped
	}
	if c.sub.accepts != nil && !c.sub.accepts(ev.Payload) {
		return moveOn
	}
	switch b.deliver(c.sub, d) {
	case abandoned:
		return stopped
	case unkept:
		return tryAgain
	}
	return moveOn
}

// startDurable registers and starts the durable subscription of s.
func (b *Bus[T]) startDurable(s *subscription[T], cfg *subConfig) (*durable[T], error) {
	if b.store == nil {
		return nil, fmt.Errorf("event: subscribe %s: durable subscription %q: %w", s.name, cfg.durable, ErrNoStore)
	}
	if cfg.cpEvery < 0 || cfg.cpInterval < 0 {
		return nil, fmt.Errorf("event: subscribe %s: checkpoint frequency must not be negative, got %d events and %v", s.name, cfg.cpEvery, cfg.cpInterval)
	}
	c := &durable[T]{
		bus:        b,
		sub:        s,
		name:       cfg.durable,
		cpEvery:    orDefault(cfg.cpEvery, DefaultCheckpointEvery),
		cpInterval: orDefault(cfg.cpInterval, DefaultCheckpointInterval),
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(b.abort)
	b.subMu.Lock()
	defer b.subMu.Unlock()
	for _, o := range b.durables.Load().list {
		if o.name == c.name {
			c.cancel()
			return nil, fmt.Errorf("event: subscribe %s: durable subscription %q already runs on this bus", s.name, c.name)
		}
	}
	old := b.durables.Load().list
	b.durables.Store(&durables[T]{list: append(old[:len(old):len(old)], c)})
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		c.run()
	}()
	return c, nil
}

func (b *Bus[T]) stopDurable(c *durable[T]) {
	c.halt()
	b.subMu.Lock()
	defer b.subMu.Unlock()
	var list []*durable[T]
	for _, o := range b.durables.Load().list {
		if o != c {
			list = append(list, o)
		}
	}
	b.durables.Store(&durables[T]{list: list})
}

type durables[T any] struct{ list []*durable[T] }

// wakeDurable tells the durable subscriptions that events were appended.
func (b *Bus[T]) wakeDurable() {
	for _, c := range b.durables.Load().list {
		c.signal()
	}
}

func orDefault[N comparable](v, def N) N {
	var zero N
	if v == zero {
		return def
	}
	return v
}
