package event

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
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

// durable runs one durable subscription: a goroutine that reads the store
// from the subscription's checkpoint and hands each event to its handler
// (with, while it handles a full page, a second goroutine reading the next;
// see readAhead). It stops when its subscription's context ends
// (Unsubscribe, or Close once drained or given up), between events.
type durable[T any] struct {
	bus        *Bus[T]
	sub        *subscription[T]
	name       string
	cpEvery    int
	cpInterval time.Duration
	lease      time.Duration // of a group member; see group.go
	grouped    bool          // the store runs consumer groups
	held       atomic.Int64  // partitions a group member holds, for Stats
	wake       chan struct{}
	owed       owed // events appended by this bus that it has yet to pass

	mu      sync.Mutex
	err     error // what keeps it from going on, now; see Subscription.Err
	stopped bool  // err is why it stopped by itself, for good

	// For CatchUp: reads counts the reads begun; atEnd is the number of
	// the last one that found the end of the log, and changed, made by a
	// waiter, is closed (and dropped) when it moves; exited is closed when
	// run returns.
	reads   atomic.Uint64
	endMu   sync.Mutex
	atEnd   uint64
	changed chan struct{}
	exited  chan struct{}
}

// reachedEnd records that read n found the end of the log.
func (c *durable[T]) reachedEnd(n uint64) {
	c.endMu.Lock()
	defer c.endMu.Unlock()
	if n > c.atEnd {
		c.atEnd = n
		if c.changed != nil {
			close(c.changed)
			c.changed = nil // a read at the end is one per event at light load: make none without a waiter
		}
	}
}

// catchUp waits until a read begun after the call finds the end of the log.
func (c *durable[T]) catchUp(ctx context.Context) error {
	target := c.reads.Load() + 1
	c.signal()
	for {
		c.endMu.Lock()
		done := c.atEnd >= target
		if !done && c.changed == nil {
			c.changed = make(chan struct{})
		}
		changed := c.changed
		c.endMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-c.exited:
			if err := c.Err(); err != nil {
				return err
			}
			return fmt.Errorf("event: durable subscription %s stopped before catching up", c.name)
		case <-ctx.Done():
			return fmt.Errorf("event: durable subscription %s catching up: %w", c.name, ctx.Err())
		}
	}
}

func (c *durable[T]) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// trouble records a store failure that the subscription retries.
func (c *durable[T]) trouble(ctx context.Context, msg string, err error, wait time.Duration) {
	c.bus.stats.storeErrors.Add(1)
	c.mu.Lock()
	c.err = fmt.Errorf("event: durable subscription %s: %s, retrying: %w", c.name, msg, err)
	c.mu.Unlock()
	c.bus.log.LogAttrs(ctx, slog.LevelWarn, "event: durable subscription "+msg+", retrying",
		slog.String("subscription", c.name), slog.Duration("retry_in", wait), slog.Any("error", err))
}

// recovered clears the error of a failure the store has recovered from.
func (c *durable[T]) recovered() {
	c.mu.Lock()
	if !c.stopped {
		c.err = nil
	}
	c.mu.Unlock()
}

// fatal records why the subscription stops by itself.
func (c *durable[T]) fatal(ctx context.Context, err error) {
	c.bus.stats.storeErrors.Add(1)
	err = fmt.Errorf("event: durable subscription %s stopped: %w", c.name, err)
	c.mu.Lock()
	c.err, c.stopped = err, true
	c.mu.Unlock()
	c.bus.log.LogAttrs(ctx, slog.LevelError, err.Error(), slog.String("subscription", c.name))
}

// Err is [Subscription.Err].
func (c *durable[T]) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// readAhead is one Read of a durable subscription's log, after a cursor,
// with the marks taken when it began (for Close and CatchUp).
type readAhead struct {
	after  store.Cursor
	mark   owedMark
	n      uint64
	recs   []store.Record
	next   store.Cursor
	err    error
	done   chan struct{} // closed when the fields above are set
	cancel context.CancelFunc
}

// read reads the page after cursor.
func (c *durable[T]) read(ctx context.Context, cursor store.Cursor) *readAhead {
	r := &readAhead{after: cursor, mark: c.bus.settledMark(c), n: c.reads.Add(1)}
	r.recs, r.next, r.err = c.bus.store.Read(ctx, store.Query{Topic: c.sub.pattern, After: cursor, Limit: durableBatch})
	return r
}

// readAhead begins reading the page after cursor in a goroutine, so that
// the store's round trip and scan overlap handling the page before it.
func (c *durable[T]) readAhead(ctx context.Context, cursor store.Cursor) *readAhead {
	ctx, cancel := context.WithCancel(ctx)
	r := &readAhead{after: cursor, mark: c.bus.settledMark(c), n: c.reads.Add(1), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(r.done)
		r.recs, r.next, r.err = c.bus.store.Read(ctx, store.Query{Topic: c.sub.pattern, After: cursor, Limit: durableBatch})
	}()
	return r
}

// wait returns the read once it is done.
func (r *readAhead) wait() *readAhead {
	<-r.done
	r.cancel()
	return r
}

// drop ends a read begun ahead whose page is not wanted (the subscription
// stopped, or did not handle the whole page before it), and waits for it.
func (r *readAhead) drop() {
	if r != nil && r.done != nil {
		r.cancel()
		<-r.done
	}
}

// run is the subscription's goroutine.
func (c *durable[T]) run() {
	defer close(c.exited)
	b := c.bus
	ctx := c.sub.ctx()
	// Whatever happens below, this bus's Close must not wait for events
	// the subscription will not handle now.
	defer b.forgive(c)
	if g, ok := b.store.(store.Grouper); ok && c.grouped {
		c.runGroup(g)
		return
	}
	watch := c.watch(ctx)
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
			b.stats.storeErrors.Add(1)
			b.log.LogAttrs(ctx, slog.LevelError, "event: durable subscription could not save its checkpoint",
				slog.String("subscription", c.name), slog.Any("error", err))
			return
		}
		saved, handled, lastSave = cursor, 0, time.Now()
	}
	defer save()
	poll := time.NewTimer(b.cfg.pollInterval)
	defer poll.Stop()
	retry := retries{p: storeRetry}
	var ahead *readAhead
	defer func() { ahead.drop() }()
	for ctx.Err() == nil {
		var r *readAhead
		if ahead != nil && ahead.after == cursor {
			r = ahead.wait()
		} else {
			ahead.drop()
			r = c.read(ctx, cursor)
		}
		ahead = nil
		mark, n, recs, next, err := r.mark, r.n, r.recs, r.next, r.err
		if err == nil && len(recs) == durableBatch {
			// A full page: read the next while handling this one.
			ahead = c.readAhead(ctx, next)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, store.ErrCursorExpired) || errors.Is(err, store.ErrInvalidCursor) || errors.Is(err, store.ErrClosed) {
				c.fatal(ctx, err)
				return
			}
			wait := retry.next()
			c.trouble(ctx, "cannot read the store", err, wait)
			if !c.sleep(ctx, wait) {
				return
			}
			continue
		}
		stuck := false
		for i := range recs {
			switch c.handle(&recs[i]) {
			case abandoned:
				return // the event will be handled on the next start
			case lost:
				stuck = true
			}
			if stuck {
				break
			}
			cursor = recs[i].Cursor
			handled++
			if handled >= c.cpEvery || time.Since(lastSave) >= c.cpInterval {
				save()
			}
		}
		if stuck {
			// Moving past a failed event whose dead letter was not stored
			// would lose it: deliver it again once the store recovers.
			save()
			wait := retry.next()
			c.trouble(ctx, "could not store a dead letter; will deliver the event again", errors.New("dead letter not stored"), wait)
			if !c.sleep(ctx, wait) {
				return
			}
			continue
		}
		if retry.n > 0 {
			retry.reset()
			c.recovered()
		}
		if len(recs) > 0 {
			// Every record handled: go on from where the read says, which
			// is also where the read ahead began.
			cursor = next
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
		b.caughtUp(c, mark)
		c.reachedEnd(n)
		save()
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(b.cfg.pollInterval)
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-watch:
		case <-poll.C:
		}
	}
}

// watch returns the store's signal of appends (see [store.Notifier]), or
// nil to poll: for a store that cannot signal, one configured not to
// (quietly), and one whose Notify fails (with a warning).
func (c *durable[T]) watch(ctx context.Context) <-chan struct{} {
	w, ok := c.bus.store.(store.Notifier)
	if !ok {
		return nil
	}
	ch, err := w.Notify(ctx)
	switch {
	case err == nil:
		return ch
	case errors.Is(err, errors.ErrUnsupported):
	default:
		c.bus.log.LogAttrs(ctx, slog.LevelWarn, "event: durable subscription cannot watch the store, polling instead",
			slog.String("subscription", c.name), slog.Any("error", err))
	}
	return nil
}

// checkpoint loads the saved cursor, retrying while the store fails.
func (c *durable[T]) checkpoint(ctx context.Context) (store.Cursor, bool) {
	retry := retries{p: storeRetry}
	for {
		cur, err := c.bus.store.Checkpoint(ctx, c.name)
		if err == nil {
			if retry.n > 0 {
				c.recovered()
			}
			return cur, true
		}
		if ctx.Err() != nil {
			return "", false
		}
		if errors.Is(err, store.ErrClosed) {
			c.fatal(ctx, err)
			return "", false
		}
		wait := retry.next()
		c.trouble(ctx, "cannot load its checkpoint", err, wait)
		if !c.sleep(ctx, wait) {
			return "", false
		}
	}
}

func (c *durable[T]) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// handle delivers one record and, unless it is to be delivered again,
// settles what this bus's Close and Stats keep of it.
func (c *durable[T]) handle(rec *store.Record) outcome {
	b := c.bus
	o := c.deliver(rec)
	if o == succeeded || o == failed {
		if id, err := parseID(rec.ID); err == nil {
			b.paid(c, id)
			if b.outbox.seen(id) {
				b.stats.published.Add(1)
			}
		}
	}
	return o
}

func (c *durable[T]) deliver(rec *store.Record) outcome {
	b := c.bus
	ev, err := b.decode(rec)
	hc := newDeliveryCtx(b, context.Background(), &ev, true)
	if err != nil {
		// Not dropped: counted, logged and dead-lettered with the reason,
		// to be re-driven once the type is registered or the payload fixed.
		b.stats.delivered.Add(1)
		return b.fail(c.sub, hc, &ev, rec, 0, err)
	}
	if c.sub.stopped() {
		return abandoned
	}
	if c.sub.accepts != nil && !c.sub.accepts(ev.Payload) {
		return succeeded // not this subscription's: passed
	}
	return b.deliver(c.sub, hc, &ev)
}

// startDurable starts the durable subscription of s and registers it.
func (b *Bus[T]) startDurable(s *subscription[T], cfg *subConfig) (*durable[T], error) {
	if b.store == nil {
		return nil, fmt.Errorf("event: subscribe %s: durable subscription %q: %w", s.name, cfg.durable, ErrNoStore)
	}
	if cfg.cpEvery < 0 || cfg.cpInterval < 0 {
		return nil, fmt.Errorf("event: subscribe %s: checkpoint frequency must not be negative, got %d events and %v", s.name, cfg.cpEvery, cfg.cpInterval)
	}
	if cfg.lease < 0 {
		return nil, fmt.Errorf("event: subscribe %s: lease must not be negative, got %v", s.name, cfg.lease)
	}
	c := &durable[T]{
		bus:        b,
		sub:        s,
		name:       cfg.durable,
		cpEvery:    orDefault(cfg.cpEvery, DefaultCheckpointEvery),
		cpInterval: orDefault(cfg.cpInterval, DefaultCheckpointInterval),
		lease:      orDefault(cfg.lease, DefaultLease),
		wake:       make(chan struct{}, 1),
		exited:     make(chan struct{}),
	}
	if cfg.shared {
		if _, ok := b.store.(store.Grouper); !ok {
			return nil, fmt.Errorf("event: subscribe %s: Shared: the store (%T) does not run consumer groups", s.name, b.store)
		}
		c.grouped = true
	}
	s.durable = c
	// From bg, which Close cancels once drained (and which ends when it
	// gives up), so no runner outlives Close's wait.
	ctx, cancel := context.WithCancel(b.bg)
	s.stop, s.cancel, s.ctxv = ctx.Done(), cancel, ctx
	b.subMu.Lock()
	defer b.subMu.Unlock()
	// Checked again under the lock that Close takes to stop the runners: a
	// runner started after Close has read the list would be left behind.
	if b.state.Load() != stateOpen {
		cancel()
		return nil, fmt.Errorf("event: subscribe %s: %w", s.name, ErrClosed)
	}
	list := *b.durables.Load()
	for _, o := range list {
		if o.name == c.name {
			cancel()
			return nil, fmt.Errorf("event: subscribe %s: durable subscription %q already runs on this bus", s.name, c.name)
		}
	}
	list = append(slices.Clip(list), c)
	b.durables.Store(&list)
	b.addSubLocked(s)
	b.running.Go(c.run)
	return c, nil
}

// stopDurable is Unsubscribe of a durable subscription.
func (b *Bus[T]) stopDurable(c *durable[T]) {
	b.removeSub(c.sub)
	b.subMu.Lock()
	defer b.subMu.Unlock()
	list := slices.DeleteFunc(slices.Clone(*b.durables.Load()), func(o *durable[T]) bool { return o == c })
	b.durables.Store(&list)
}

// CatchUp waits until every [Durable] subscription of this bus has handled
// the events in the store when CatchUp was called that it takes: until
// each has read the log to its end, from a read begun after the call. It
// covers what [Bus.Close] does not wait for: events stored with
// [Bus.PublishTx] or by other processes. A service calls it before Close
// to hand nothing over to its next start:
//
//	srv.Shutdown(ctx) // no new requests, so no new events
//	err := bus.CatchUp(ctx)
//	err = errors.Join(err, bus.Close(ctx))
//
// While appends go on, the end of the log moves, and CatchUp returns once a
// subscription's read finds it. It returns ctx's error if ctx ends first,
// or the error of a durable subscription that stopped (see
// [Subscription.Err]). On PostgreSQL an event may stay hidden from readers
// while an older transaction is open (see Close), and CatchUp does not wait
// for it. A bus without durable subscriptions returns at once.
func (b *Bus[T]) CatchUp(ctx context.Context) error {
	if ctx == nil {
		return errNilContext("catch up")
	}
	var errs []error
	for _, c := range *b.durables.Load() {
		if err := c.catchUp(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// wakeDurable tells the durable subscriptions that events were appended.
func (b *Bus[T]) wakeDurable() {
	for _, c := range *b.durables.Load() {
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
