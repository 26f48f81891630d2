package event

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/ncore-io/event/store"
)

// In-flight work. Close waits for the in-flight count (inFlight) to reach
// zero, and this file is the only place that moves it. A unit is one of:
//
//   - a Publish, PublishBatch or PublishTx call between admit and its
//     deferred release, so that no return path, panic included, keeps it;
//   - an asynchronous delivery, from the moment it is queued until its
//     worker has run it (or dropped it): enqueue takes the unit, and the
//     worker releases it after running the delivery;
//   - an event this bus appended that one of its durable subscriptions is
//     due to handle: owe takes the unit before the append, and the durable
//     runner releases it when it moves past the event (or stops). A group
//     member (group.go) only handles the partitions it holds: after each
//     claim it forgives what it owes in the others, which other members
//     handle.
//
// When the count reaches zero on a closing bus, nothing can add to it any
// more (admit refuses, and only admitted callers and running deliveries
// take units), so the bus is drained.
//
// The count is the difference of two counters, each on a cache line of its
// own, as is the state: publishers take units and release their own, and
// workers release the units of deliveries, usually on another core; on one
// shared line, each of an event's four changes moved it from one core to
// the other (about a tenth of an asynchronous publish's CPU time).

// cacheLine is what keeps two fields written by different cores apart: two
// 64-byte lines, which x86 processors fetch in pairs.
const cacheLine = 128

// flight is a bus's state and in-flight count.
type flight struct {
	_     [cacheLine]byte
	state atomic.Int32
	_     [cacheLine - 4]byte
	taken atomic.Int64 // units taken, less those released by release
	_     [cacheLine - 8]byte
	done  atomic.Int64 // units released by releaseRun; it only grows
	_     [cacheLine - 8]byte
}

// inFlight returns the in-flight count. It reads done before taken: as
// done only grows, the difference is then never below the count at the
// moment taken is read, so a zero is a true one.
func (f *flight) inFlight() int64 {
	d := f.done.Load()
	return f.taken.Load() - d
}

// admit takes the unit of a publishing call, or reports false if the bus
// no longer accepts it: once Close has begun only this bus's own handlers
// (nested) may publish, and once drained no one may.
func (b *Bus[T]) admit(nested bool) bool {
	b.taken.Add(1)
	if b.state.Load() == stateOpen {
		return true // the fast path, small enough to inline
	}
	return b.admitClosing(nested)
}

func (b *Bus[T]) admitClosing(nested bool) bool {
	if st := b.state.Load(); st == stateStopped || (st == stateClosing && !nested) {
		b.release()
		return false
	}
	return true
}

// hold takes a unit for work that an admitted caller or a running delivery
// hands on.
func (b *Bus[T]) hold() { b.taken.Add(1) }

// release ends one unit, and finishes the drain of a closing bus at the
// last one. Either release or releaseRun may end any unit; release is for
// the goroutine that took it (a publisher), releaseRun for others (a
// worker, a durable runner), so that each counter stays with one side.
func (b *Bus[T]) release() {
	b.taken.Add(-1)
	b.drainIfIdle()
}

// releaseRun is release for a unit taken by another goroutine.
func (b *Bus[T]) releaseRun() {
	b.done.Add(1)
	b.drainIfIdle()
}

func (b *Bus[T]) drainIfIdle() {
	if b.state.Load() == stateOpen || b.inFlight() != 0 {
		return
	}
	b.finishDrain()
}

// finishDrain stops a closing bus that has nothing in flight.
func (b *Bus[T]) finishDrain() {
	b.state.CompareAndSwap(stateClosing, stateStopped)
	if b.inFlight() == 0 {
		// Stopped with nothing in flight: no caller can be between admit
		// and a send, so the queue can be closed.
		b.drainMu.Do(func() {
			if b.queue != nil {
				close(b.queue)
			}
			close(b.drained)
		})
	}
}

// owed is the set of events a durable subscription is due to handle for
// this bus's Close: those the bus appended, matching the subscription,
// that its runner has not yet moved past. Each is one unit of in-flight
// work.
//
// An event's unit is taken before its append, as the runner may read the
// event before Append returns, and paid when the runner moves past it. An
// append of an ID the store already had (a retry, a re-import) never meets
// that payment: the runner passed the event long ago. So an append that
// returns settles its units with a stamp of the owed clock and the time,
// and a runner that reads the log to its end pays every unit settled at
// least settleGrace before that read began: such an event was committed
// before the read, so the runner has passed it. The grace is for
// PostgreSQL, whose readers do not see a committed event while an older
// transaction anywhere on the server is open; it holds Close back by up to
// about that long after a re-append.
type owed struct {
	mu      sync.Mutex
	ids     map[uuid.UUID]owedEvent
	clock   uint64
	stopped bool // the runner has exited: owe nothing more
}

// owedEvent is what owed keeps of one event.
type owedEvent struct {
	stamp uint64    // 0 while the append runs; then the owed clock it settled at
	at    time.Time // when it settled
	key   uint32    // the event's store.PartitionKey, for a group member
}

// settleGrace is how long a settled unit waits before a read to the end
// of the log may pay it (see owed).
const settleGrace = time.Second

// owe takes a unit for id, due to c, before the bus appends it; it reports
// false if c no longer runs.
func (b *Bus[T]) owe(c *durable[T], id uuid.UUID, aggregateID string) bool {
	o := &c.owed
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped {
		return false
	}
	if o.ids == nil {
		o.ids = make(map[uuid.UUID]owedEvent)
	}
	if _, dup := o.ids[id]; dup {
		return false // one unit per ID: a batch that names it twice is refused by the store
	}
	var key uint32
	if c.grouped {
		key = store.PartitionKey(aggregateID, id.String())
	}
	o.ids[id] = owedEvent{key: key}
	b.hold()
	return true
}

// settle marks id's append as returned (see owed).
func (b *Bus[T]) settle(c *durable[T], id uuid.UUID) {
	o := &c.owed
	o.mu.Lock()
	defer o.mu.Unlock()
	if e, ok := o.ids[id]; ok && e.stamp == 0 {
		o.clock++
		e.stamp, e.at = o.clock, time.Now()
		o.ids[id] = e
	}
}

// settledMark returns the owed clock and the time, for a runner about to
// read.
func (b *Bus[T]) settledMark(c *durable[T]) owedMark {
	o := &c.owed
	o.mu.Lock()
	defer o.mu.Unlock()
	return owedMark{o.clock, time.Now()}
}

// owedMark is the owed clock and the time when a read began.
type owedMark struct {
	clock uint64
	at    time.Time
}

// caughtUp pays the units settled at or before mark, and at least
// settleGrace before it: c read the log to its end since (see owed).
func (b *Bus[T]) caughtUp(c *durable[T], mark owedMark) {
	o := &c.owed
	o.mu.Lock()
	n := 0
	for id, e := range o.ids {
		if e.stamp != 0 && e.stamp <= mark.clock && mark.at.Sub(e.at) >= settleGrace {
			delete(o.ids, id)
			n++
		}
	}
	o.mu.Unlock()
	for range n {
		b.releaseRun()
	}
}

// paid releases the unit of id, if c owed it: when c moved past the event,
// or when the append failed.
func (b *Bus[T]) paid(c *durable[T], id uuid.UUID) {
	o := &c.owed
	o.mu.Lock()
	_, ok := o.ids[id]
	if ok {
		delete(o.ids, id)
	}
	o.mu.Unlock()
	if ok {
		b.releaseRun()
	}
}

// forgive releases every unit c owes, for good: its runner has exited.
func (b *Bus[T]) forgive(c *durable[T]) {
	o := &c.owed
	o.mu.Lock()
	n := len(o.ids)
	o.ids, o.stopped = nil, true
	o.mu.Unlock()
	for range n {
		b.releaseRun()
	}
}

// forgiveOthers releases the units c owes for events in partitions it does
// not hold (holds reports it by PartitionKey): another member handles them.
func (b *Bus[T]) forgiveOthers(c *durable[T], holds func(key uint32) bool) {
	o := &c.owed
	o.mu.Lock()
	n := 0
	for id, e := range o.ids {
		if !holds(e.key) {
			delete(o.ids, id)
			n++
		}
	}
	o.mu.Unlock()
	for range n {
		b.releaseRun()
	}
}

// outboxSeen remembers the IDs of events this bus stored with PublishTx
// for one of its durable subscriptions, so that the first durable
// subscription to read one counts it as published: only then is it known to
// have committed. It holds the latest maxOutboxSeen IDs, as a transaction
// that rolls back leaves its IDs behind; older ones are forgotten, and
// their events not counted.
type outboxSeen struct {
	mu   sync.Mutex
	ids  map[uuid.UUID]struct{}
	ring []uuid.UUID // insertion order, for eviction
	next int
	n    atomic.Int32 // len(ids), so that readers skip the lock while it is empty
}

const maxOutboxSeen = 1 << 16

func (o *outboxSeen) add(id uuid.UUID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ids == nil {
		o.ids = make(map[uuid.UUID]struct{})
		o.ring = make([]uuid.UUID, maxOutboxSeen)
	}
	if old := o.ring[o.next]; old != uuid.Nil {
		delete(o.ids, old)
	}
	o.ring[o.next] = id
	o.next = (o.next + 1) % maxOutboxSeen
	o.ids[id] = struct{}{}
	o.n.Store(int32(len(o.ids)))
}

// seen reports whether id was stored by this bus with PublishTx and not
// seen before, forgetting it.
func (o *outboxSeen) seen(id uuid.UUID) bool {
	if o.n.Load() == 0 {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.ids[id]; !ok {
		return false
	}
	delete(o.ids, id) // its ring slot is overwritten in turn
	o.n.Store(int32(len(o.ids)))
	return true
}

// enqueue queues d for the workers, with a unit of its own. With noWait it
// never waits for room: d spills over a full queue instead.
func (b *Bus[T]) enqueue(ctx context.Context, d *delivery[T], noWait bool) error {
	if d.ev.AggregateID != "" {
		b.keys.reserve(d)
	}
	b.hold()
	err := b.send(ctx, d, noWait)
	if err != nil {
		if d.key != nil {
			if next := b.keys.release(d); next != nil {
				// A later event of the key was queued by another publisher
				// and is parked waiting for this one, which will never
				// come: run it here rather than strand it.
				b.runKeyed(next)
			}
		}
		b.release()
	}
	return err
}

func (b *Bus[T]) send(ctx context.Context, d *delivery[T], noWait bool) error {
	select {
	case b.queue <- d:
		return nil
	default:
	}
	if noWait {
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

// work runs queued events until the queue is closed.
func (b *Bus[T]) work() {
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

// newDelivery returns a zero delivery, recycled if one is at hand.
func (b *Bus[T]) newDelivery() *delivery[T] {
	if d, ok := b.pool.Get().(*delivery[T]); ok {
		return d
	}
	return new(delivery[T])
}

// recycle hands d, which a worker has run to the end, back for a later
// event. A queued delivery is the publisher's one allocation otherwise,
// at 208 bytes with the event; recycling it leaves the handlers' 64-byte
// context (deliveryCtx) as what an event allocates. Only the worker that
// ran d may recycle it, and only after the last look at it: Publish does
// not read d once it is queued, handlers have their own copy of the event
// and a context of their own, and the key table has let go of it.
func (b *Bus[T]) recycle(d *delivery[T]) {
	*d = delivery[T]{} // let go of the payload and the publisher's context
	b.pool.Put(d)
}

// handle runs a dequeued event, or parks it behind its key's earlier ones.
func (b *Bus[T]) handle(d *delivery[T]) {
	if d.key == nil {
		defer b.releaseRun()
		b.deliverAll(d)
		b.recycle(d)
		return
	}
	if b.keys.acquire(d) {
		b.runKeyed(d)
	}
}

// runKeyed runs d, whose key the caller holds, and then the key's parked
// successors, releasing each one's unit.
func (b *Bus[T]) runKeyed(d *delivery[T]) {
	for d != nil {
		next := b.runOne(d)
		d = next
	}
}

func (b *Bus[T]) runOne(d *delivery[T]) (next *delivery[T]) {
	defer func() {
		next = b.keys.finish(d)
		b.recycle(d)
		b.releaseRun()
	}()
	b.deliverAll(d)
	return nil
}

// spill is an unbounded FIFO for events that must not wait for room in the
// queue: those that handlers publish, and those already stored.
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
