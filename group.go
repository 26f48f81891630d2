package event

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/ncore-io/event/store"
)

// A [Shared] durable subscription on a store that implements [store.Grouper] is a
// member of a consumer group named after it: the buses (in this process or
// others) that subscribe with one durable name on one store share its
// events, partition by partition.
//
// Two goroutines run a member. The heartbeat claims the member's share of
// the partitions every third of the lease, whatever the handler is doing,
// so that a slow event does not cost the member its other partitions. The
// runner applies each claim between events (rebalance), reads the
// partitions it holds in one call, hands their events to the handler one
// at a time, and commits each partition's checkpoint, fenced by its lease;
// it gives up what exceeds its share, checkpointed first. A partition is
// never handled after it was given up, and the member stops handling a
// partition once its lease may have run out (the local deadline is taken
// before the claim, so it ends before the database's). Events of one
// partition are handled in their order; partitions interleave.

// DefaultLease is how long a group member's lease on its partitions lasts
// unless renewed (see [Lease]); members renew every third of it.
const DefaultLease = 5 * time.Second

// shortClaimInterval is how often a member holding less than its share
// claims again.
const shortClaimInterval = 100 * time.Millisecond

// groupBatch is how many records a member reads per partition at a time.
const groupBatch = 100

// held is a partition the member holds.
type held struct {
	token    int64
	cursor   store.Cursor // where handling has got to
	saved    store.Cursor // last committed
	deadline time.Time    // the lease may run out after this
	stuck    bool         // its lease may have run out: leave it to the next claim
	retryAt  time.Time    // an event could not be settled: not read again before this
	failures int          // consecutive events that could not be settled
	dirty    bool         // events handled since the last commit
	read     uint64       // the member's step that last read it
}

// waiting reports whether the partition has events it cannot handle now.
func (h *held) waiting(now time.Time) bool { return h.stuck || now.Before(h.retryAt) }

// newMemberID names a member for [Bus.Group]: host, process and a random
// part, so that restarts and buses of one process differ.
func newMemberID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "host"
	}
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + uuid.NewString()[:8]
}

// claimed is one claim of the heartbeat, for the runner to apply.
type claimed struct {
	a       store.Assignment
	start   time.Time // taken before the claim: the leases last until start+ttl at least
	gen     uint64    // the member's gen when the claim began
	err     error
	retryIn time.Duration // after a failed claim, when the heartbeat tries again
}

// runGroup is run for a durable subscription whose store is a Grouper.
func (c *durable[T]) runGroup(g store.Grouper) {
	b := c.bus
	ctx := c.sub.ctx()
	m := &groupMember[T]{c: c, g: g, id: newMemberID(), ttl: c.lease, n: g.Partitions(), parts: map[int]*held{},
		claims: make(chan claimed, 1), claimNow: make(chan struct{}, 1)}
	beat, stopBeat := context.WithCancel(ctx)
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		m.heartbeat(beat)
	}()
	defer func() {
		// No claim may follow the release of everything.
		stopBeat()
		<-beating
		m.leave()
	}()
	watch := c.watch(ctx)
	// Nothing is known to be handled before the first claim.
	for !m.joined {
		select {
		case <-ctx.Done():
			return
		case cl := <-m.claims:
			m.rebalance(ctx, cl)
		}
		if m.stop != nil {
			c.fatal(ctx, m.stop)
			return
		}
	}
	wait := time.NewTimer(0)
	defer wait.Stop()
	retry := retries{p: storeRetry}
	m.lastSave = time.Now()
	for ctx.Err() == nil {
		select {
		case cl := <-m.claims:
			m.rebalance(ctx, cl)
		default:
		}
		mark, n := b.settledMark(c), c.reads.Add(1)
		progressed, atEnd, err := m.step(ctx)
		if m.stop != nil {
			c.fatal(ctx, m.stop)
			return
		}
		switch {
		case errors.Is(err, errAbandoned):
			return
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, store.ErrCursorExpired) || errors.Is(err, store.ErrInvalidCursor) || errors.Is(err, store.ErrClosed) {
				c.fatal(ctx, err)
				return
			}
			d := retry.next()
			c.trouble(ctx, "cannot read the store", err, d)
			if !c.sleep(ctx, d) {
				return
			}
			continue
		}
		if retry.n > 0 {
			retry.reset()
			c.recovered()
		}
		switch {
		case time.Since(m.lastSave) >= c.cpInterval:
			m.commit(ctx, true)
		case m.handled >= c.cpEvery:
			m.commit(ctx, false)
		}
		// A read that came back short, all of it handled, read the log
		// to its end, as a read that finds nothing would: on a store that
		// signals appends there is no need for that second read.
		if progressed && (!atEnd || watch == nil) {
			continue
		}
		// Read to the end, unless events wait in partitions that could not
		// handle them: settle what Close and CatchUp wait for.
		idle := b.cfg.pollInterval
		if m.waited {
			if next, ok := m.nextRetry(); ok {
				idle = min(idle, max(time.Until(next), 0))
			} else {
				idle = 0
			}
		} else {
			b.caughtUp(c, mark)
			c.reachedEnd(n)
		}
		if m.handled > 0 {
			// Caught up with events handled since the last save: save
			// them when the interval is up, not now, which at light load
			// would be a write for every event. A crash repeats at most
			// the interval's events, as while busy.
			idle = min(idle, max(time.Until(m.lastSave.Add(c.cpInterval)), 0))
		}
		// Idle: wait for an append, a poll, a claim, or a retry.
		resetTimer(wait, idle)
		select {
		case <-ctx.Done():
			return
		case cl := <-m.claims:
			m.rebalance(ctx, cl)
		case <-c.wake:
		case <-watch:
		case <-wait.C:
		}
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// errAbandoned: the subscription stopped in the middle of an event.
var errAbandoned = errors.New("abandoned")

// groupMember is member with the bus's type. Apart from the channels and
// what leaseMu guards, it belongs to the runner.
type groupMember[T any] struct {
	c        *durable[T]
	g        store.Grouper
	id       string
	ttl      time.Duration
	n        int
	parts    map[int]*held
	order    []int                   // the held partitions in order; nil when parts changed since
	from     []store.PartitionCursor // step's, kept for the next
	cps      []store.Checkpoint      // commit's, kept for the next
	steps    uint64                  // steps begun
	handled  int                     // events handled since the last commit
	lastSave time.Time               // when commit last saved every moved cursor
	joined   bool                    // a claim has been applied
	waited   bool                    // the last step left events of a partition for later
	failing  bool                    // the last claim failed
	stop     error                   // the member cannot go on: a claim found the store closed

	claims   chan claimed  // capacity 1: the heartbeat's latest claim, not yet applied
	claimNow chan struct{} // capacity 1: asks the heartbeat for a claim at once

	// leaseMu orders the heartbeat's claims and the runner's releases: a
	// claim runs wholly before or after a release. A release bumps gen, so
	// a claim begun before it, which may list partitions given up since,
	// is known to be stale.
	leaseMu sync.Mutex
	gen     uint64
}

// heartbeat claims the member's share every third of the lease, at once
// when asked, and sooner again (with backoff) after a failure, and hands
// each claim to the runner, replacing one not yet applied.
func (m *groupMember[T]) heartbeat(ctx context.Context) {
	retry := retries{p: storeRetry}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.claimNow:
		}
		m.leaseMu.Lock()
		cl := claimed{start: time.Now(), gen: m.gen}
		cl.a, cl.err = m.g.Claim(ctx, m.c.name, m.id, m.ttl)
		m.leaseMu.Unlock()
		if ctx.Err() != nil {
			return
		}
		next := m.ttl / 3
		if cl.err != nil {
			next = retry.next()
			cl.retryIn = next
		} else {
			retry.reset()
			if len(cl.a.Leases) < cl.a.Share {
				// Short of its share: the members holding more give it up
				// at their next renewal, and this one takes it soon after.
				next = min(next, shortClaimInterval)
			}
		}
		select {
		case <-m.claims: // superseded
		default:
		}
		m.claims <- cl // only the heartbeat sends, and the channel is empty now
		resetTimer(t, next)
	}
}

// rebalance applies a claim: it renews the leases that it lists, drops
// partitions it no longer lists, takes on new ones, and gives up what
// exceeds the member's share.
func (m *groupMember[T]) rebalance(ctx context.Context, cl claimed) {
	c := m.c
	if cl.err != nil {
		if errors.Is(cl.err, store.ErrClosed) {
			m.stop = cl.err
			return
		}
		m.failing = true
		c.trouble(ctx, "cannot claim partitions", cl.err, cl.retryIn)
		return
	}
	if m.failing {
		m.failing = false
		c.recovered()
	}
	m.leaseMu.Lock()
	stale := cl.gen != m.gen
	m.leaseMu.Unlock()
	if stale {
		select {
		case m.claimNow <- struct{}{}:
		default:
		}
		return
	}
	m.joined = true
	deadline := cl.start.Add(m.ttl)
	now := make(map[int]*held, len(cl.a.Leases))
	var taken []int
	for _, l := range cl.a.Leases {
		if h := m.parts[l.Partition]; h != nil && h.token == l.Token {
			h.deadline = deadline
			now[l.Partition] = h
			continue
		}
		now[l.Partition] = &held{token: l.Token, cursor: l.Cursor, saved: l.Cursor, deadline: deadline}
		if l.TakenOver {
			taken = append(taken, l.Partition)
		}
	}
	m.parts, m.order = now, nil
	if len(taken) > 0 {
		c.bus.stats.takeovers.Add(uint64(len(taken)))
		c.bus.log.LogAttrs(ctx, slog.LevelInfo, "event: durable subscription took over partitions of a member that stopped without handing them over; events after their checkpoints may repeat",
			slog.String("subscription", c.name), slog.Any("partitions", taken))
	}
	if extra := len(cl.a.Leases) - cl.a.Share; extra > 0 {
		// Give the highest partitions back, checkpointed first so that the
		// next holder goes on from here; if the checkpoints cannot be
		// saved, keep the partitions rather than have their events
		// handled again.
		list := m.owned()
		give := list[len(list)-extra:]
		if m.commit(ctx, true) == nil {
			m.leaseMu.Lock()
			m.gen++
			err := m.g.Release(ctx, c.name, m.id, give...)
			m.leaseMu.Unlock()
			if err == nil {
				for _, p := range give {
					delete(m.parts, p)
				}
				m.order = nil
			} else if ctx.Err() == nil {
				c.bus.log.LogAttrs(ctx, slog.LevelWarn, "event: durable subscription could not give partitions back; it tries again at the next claim",
					slog.String("subscription", c.name), slog.Any("partitions", give), slog.Any("error", err))
			}
		}
	}
	c.held.Store(int64(len(m.parts)))
	c.bus.forgiveOthers(c, func(key uint32) bool { return m.parts[int(key%uint32(m.n))] != nil })
}

// owned lists the held partitions in order. The list is made again (not
// changed) when the partitions change, so a caller may keep it meanwhile.
func (m *groupMember[T]) owned() []int {
	if m.order == nil {
		m.order = make([]int, 0, len(m.parts))
		for p := range m.parts {
			m.order = append(m.order, p)
		}
		slices.Sort(m.order)
	}
	return m.order
}

// nextRetry reports whether any held partition has events it cannot
// handle now, and the earliest time to try again.
func (m *groupMember[T]) nextRetry() (time.Time, bool) {
	now := time.Now()
	var next time.Time
	for _, h := range m.parts {
		if !h.waiting(now) {
			continue
		}
		at := h.retryAt
		if h.stuck {
			at = now.Add(storeRetry.backoff(1))
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, !next.IsZero()
}

// step reads the held partitions once and handles what it read. It
// reports whether it handled or passed any record, and whether it read
// every held partition to the end of the log: the read came back short,
// every record it returned was settled, and no claim was applied in
// between (which may have brought partitions that were not read).
func (m *groupMember[T]) step(ctx context.Context) (progressed, atEnd bool, err error) {
	now := time.Now()
	// The partitions read, as held now: one given up and taken again
	// while this batch is handled is a new holding, whose cursor is its
	// checkpoint, and is left to the next read.
	m.steps++
	from := m.from[:0]
	m.waited = false
	for _, p := range m.owned() {
		h := m.parts[p]
		h.stuck = false
		if now.Before(h.retryAt) {
			m.waited = true
			continue
		}
		h.read = m.steps
		from = append(from, store.PartitionCursor{Partition: p, After: h.cursor})
	}
	m.from = from
	if len(from) == 0 {
		return false, !m.waited, nil
	}
	recs, err := m.g.ReadPartitions(ctx, from, groupBatch)
	if err != nil {
		return false, false, err
	}
	c := m.c
	step := m.steps
	current := func(p int) *held {
		if h := m.parts[p]; h != nil && h.read == step && !h.waiting(time.Now()) {
			return h
		}
		return nil
	}
	atEnd = len(recs) < groupBatch
	for i := range recs {
		rec := &recs[i]
		p := store.Partition(rec.AggregateID, rec.ID, m.n)
		if current(p) == nil {
			continue // given up, or waiting, since the read
		}
		// Apply a claim between events, so that leases held for long
		// batches are renewed.
		select {
		case cl := <-m.claims:
			m.rebalance(ctx, cl)
			atEnd = false
			if m.stop != nil {
				return progressed, false, nil
			}
		default:
		}
		h := current(p)
		if h == nil {
			continue
		}
		if !time.Now().Before(h.deadline) {
			h.stuck = true // the lease may be gone: leave it to the next claim
			m.waited = true
			continue
		}
		if c.sub.pattern != "" && !store.MatchTopic(c.sub.pattern, rec.Topic) {
			h.cursor = rec.Cursor
			progressed = true
			continue
		}
		switch c.handle(rec) {
		case abandoned:
			return progressed, false, errAbandoned
		case lost:
			// Moving past a failed event whose dead letter was not stored
			// would lose it: deliver it again later, with backoff.
			h.failures++
			wait := storeRetry.backoff(h.failures)
			h.retryAt = time.Now().Add(wait)
			m.waited = true
			c.trouble(ctx, "could not store a dead letter; will deliver the event again", errors.New("dead letter not stored"), wait)
			continue
		}
		h.failures = 0
		h.cursor, h.dirty = rec.Cursor, true
		m.handled++
		progressed = true
		if m.handled >= c.cpEvery {
			// As often as Checkpoint says, also within one read's records.
			m.commit(ctx, false)
		}
	}
	// Partitions read to their end move on to where the read ended (the
	// read moved from's cursors there).
	for _, f := range from {
		if h := current(f.Partition); h != nil && f.After != h.cursor && m.readAll(recs, f.Partition, h) {
			h.cursor = f.After
		}
	}
	return progressed, atEnd && !m.waited, nil
}

// readAll reports whether h handled every record of partition p in recs.
func (m *groupMember[T]) readAll(recs []store.Record, p int, h *held) bool {
	for i := len(recs) - 1; i >= 0; i-- {
		if store.Partition(recs[i].AggregateID, recs[i].ID, m.n) == p {
			return recs[i].Cursor == h.cursor
		}
	}
	return true
}

// commit saves the checkpoints that moved, all of them or only those of
// partitions that handled events since their last commit, dropping
// partitions whose lease was lost. It returns an error only if the
// checkpoints could not be saved (a lost lease is not one).
func (m *groupMember[T]) commit(ctx context.Context, all bool) error {
	cps := m.cps[:0]
	for p, h := range m.parts {
		if h.cursor != h.saved && (all || h.dirty) {
			cps = append(cps, store.Checkpoint{Partition: p, Token: h.token, Cursor: h.cursor})
		}
	}
	m.cps = cps
	if all {
		m.lastSave = time.Now()
	}
	if len(cps) == 0 {
		m.handled = 0
		return nil
	}
	c := m.c
	// The checkpoints must be saved even while stopping.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := m.g.Commit(sctx, c.name, m.id, cps...)
	var lost *store.LeaseLostError
	if errors.As(err, &lost) {
		for _, p := range lost.Partitions {
			delete(m.parts, p)
		}
		m.order = nil
		c.held.Store(int64(len(m.parts)))
		c.bus.log.LogAttrs(ctx, slog.LevelWarn, "event: durable subscription lost partitions to another member",
			slog.String("subscription", c.name), slog.Any("partitions", lost.Partitions))
		err = nil
	}
	if err != nil {
		c.bus.stats.storeErrors.Add(1)
		c.bus.log.LogAttrs(ctx, slog.LevelError, "event: durable subscription could not save its checkpoints",
			slog.String("subscription", c.name), slog.Any("error", err))
		return err
	}
	for _, cp := range cps {
		if h := m.parts[cp.Partition]; h != nil {
			h.saved, h.dirty = cp.Cursor, false
		}
	}
	m.handled = 0
	return nil
}

// leave checkpoints and releases every partition, so that other members
// take them over at once. The heartbeat has stopped.
func (m *groupMember[T]) leave() {
	defer m.c.held.Store(0)
	m.commit(context.Background(), true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.g.Release(ctx, m.c.name, m.id); err != nil && !errors.Is(err, store.ErrClosed) {
		m.c.bus.log.LogAttrs(ctx, slog.LevelWarn, "event: durable subscription could not release its partitions; they pass to other members when the lease runs out",
			slog.String("subscription", m.c.name), slog.Any("error", err))
	}
}

// Group describes the consumer group of the durable subscription name on
// the bus's store: its live members, which partitions each holds, and each
// partition's checkpoint and lag. It works for any name, also one this bus
// does not subscribe to. It fails with [ErrNoStore] without a store, and
// with an error saying so if the store does not run consumer groups (see
// [store.Grouper]).
func (b *Bus[T]) Group(ctx context.Context, name string) (store.GroupInfo, error) {
	if ctx == nil {
		return store.GroupInfo{}, errNilContext("group")
	}
	if b.store == nil {
		return store.GroupInfo{}, fmt.Errorf("event: group %s: %w", name, ErrNoStore)
	}
	g, ok := b.store.(store.Grouper)
	if !ok {
		return store.GroupInfo{}, fmt.Errorf("event: group %s: the store (%T) does not run consumer groups", name, b.store)
	}
	info, err := g.Group(ctx, name)
	if err != nil {
		return info, fmt.Errorf("event: group %s: %w", name, err)
	}
	return info, nil
}
