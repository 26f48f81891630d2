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
			b.queue.close()
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
// never waits for room: d goes past the queue's limit instead.
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
	q := &b.queue
	for {
		q.mu.Lock()
		if noWait || q.hasRoom() {
			q.push(d)
			q.wakeOneAndUnlock()
			return nil
		}
		if b.cfg.failFast {
			q.mu.Unlock()
			return ErrQueueFull
		}
		if q.room == nil {
			q.room = make(chan struct{})
		}
		room := q.room
		q.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// workQueue is the FIFO of asynchronous deliveries waiting for a worker,
// and the set of workers waiting for deliveries.
//
// It is a ring under a mutex rather than a channel so that a publisher
// wakes a worker only when none is already awake to take its event: a
// worker that finishes an event looks at the queue before it parks, so
// while events keep coming the awake workers take them without a wake-up
// each, and the publisher and the workers meet only on the mutex. A worker
// that leaves events behind when it takes one wakes another if no other
// is awake, so that slow handlers still get every worker.
//
// Ordinary publishers wait while the queue holds limit events (or, with
// limit 0, while no worker is free to take one more); events that must not
// wait go past the limit, and the ring grows for them.
type workQueue[T any] struct {
	mu      sync.Mutex
	buf     []*delivery[T] // a ring of n events from head
	head, n int
	limit   int             // the buffer size
	awake   int             // workers awake and not running a delivery
	idle    []chan struct{} // the wake-up channels of parked workers, last parked last
	room    chan struct{}   // closed when room appears; nil while no publisher waits
	closed  bool            // no more events: workers exit once it is empty
}

func (q *workQueue[T]) init(limit int) {
	q.limit = limit
	q.buf = make([]*delivery[T], max(limit, minRing))
}

// minRing is the least length of the ring.
const minRing = 16

// hasRoom reports whether an ordinary publisher may queue an event.
func (q *workQueue[T]) hasRoom() bool {
	if q.limit == 0 {
		return q.n < q.awake+len(q.idle)
	}
	return q.n < q.limit
}

func (q *workQueue[T]) push(d *delivery[T]) {
	if q.n == len(q.buf) {
		grown := make([]*delivery[T], 2*len(q.buf))
		k := copy(grown, q.buf[q.head:])
		copy(grown[k:], q.buf[:q.head])
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = d
	q.n++
}

func (q *workQueue[T]) pop() *delivery[T] {
	d := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	if q.n == 0 {
		q.head = 0
		if len(q.buf) > 4*max(q.limit, minRing) {
			// A burst past the limit grew the ring: let it go.
			q.buf = make([]*delivery[T], max(q.limit, minRing))
		}
	}
	return d
}

// wakeOneAndUnlock wakes a parked worker if there is an event and no
// worker is awake to take it, and unlocks q.
func (q *workQueue[T]) wakeOneAndUnlock() {
	var wake chan struct{}
	if q.n > 0 && q.awake == 0 && len(q.idle) > 0 {
		wake = q.idle[len(q.idle)-1]
		q.idle = q.idle[:len(q.idle)-1]
		q.awake++ // on the woken worker's behalf, so that no one else wakes another
	}
	var room chan struct{}
	if q.room != nil && q.hasRoom() {
		room, q.room = q.room, nil
	}
	q.mu.Unlock()
	if wake != nil {
		wake <- struct{}{} // buffered: one wake-up per park
	}
	if room != nil {
		close(room)
	}
}

// close makes the workers exit once the queue is empty, waking the parked
// ones.
func (q *workQueue[T]) close() {
	q.mu.Lock()
	q.closed = true
	idle := q.idle
	q.idle = nil
	q.awake += len(idle)
	q.mu.Unlock()
	for _, w := range idle {
		w <- struct{}{}
	}
}

func (q *workQueue[T]) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// work runs queued events until the queue is closed and empty.
func (b *Bus[T]) work() {
	q := &b.queue
	wake := make(chan struct{}, 1)
	q.mu.Lock()
	q.awake++
	for {
		if q.n > 0 {
			d := q.pop()
			q.awake--
			q.wakeOneAndUnlock()
			b.handle(d)
			q.mu.Lock()
			q.awake++
			continue
		}
		q.awake--
		if q.closed {
			q.mu.Unlock()
			return
		}
		q.idle = append(q.idle, wake)
		q.wakeOneAndUnlock() // with limit 0, a parked worker is room
		<-wake
		q.mu.Lock() // awake was counted by the waker
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
