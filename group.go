package event

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/ncore-io/event/store"
)

// A [Shared] durable subscription on a store that implements [store.Grouper] is a
// member of a consumer group named after it: the buses (in this process or
// others) that subscribe with one durable name on one store share its
// events, partition by partition.
//
// One goroutine runs a member, as it runs a durable subscription alone: it
// claims its share of the partitions (rebalance), reads the partitions it
// holds in one call, hands their events to the handler one at a time, and
// commits each partition's checkpoint, fenced by its lease. Renewals and
// hand-overs happen between events, so a partition is never handled by
// this member after it was given up, and the member stops handling a
// partition once its lease may have run out (the local deadline is taken
// before the claim, so it ends before the database's). Events of one
// partition are handled in their order; partitions interleave.

// DefaultLease is how long a group member's lease on its partitions lasts
// unless renewed (see [Lease]); members renew every third of it.
const DefaultLease = 5 * time.Second

// groupBatch is how many records a member reads per partition at a time.
const groupBatch = 100

// held is a partition the member holds.
type held struct {
	token    int64
	cursor   store.Cursor // where handling has got to
	saved    store.Cursor // last committed
	deadline time.Time    // the lease may run out after this
	stuck    bool         // an event could not be settled: retry it later
}

// newMemberID names a member for [Bus.Group]: host, process and a random
// part, so that restarts and buses of one process differ.
func newMemberID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "host"
	}
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + uuid.NewString()[:8]
}

// runGroup is run for a durable subscription whose store is a Grouper.
func (c *durable[T]) runGroup(g store.Grouper) {
	b := c.bus
	ctx := c.sub.ctx()
	m := groupMember[T]{c: c, g: g, id: newMemberID(), ttl: c.lease, n: g.Partitions(), parts: map[int]*held{}}
	defer m.leave()
	var watch <-chan struct{}
	if w, ok := b.store.(store.Notifier); ok {
		if ch, err := w.Notify(ctx); err == nil {
			watch = ch
		} else {
			b.log.LogAttrs(ctx, slog.LevelWarn, "event: durable subscription cannot watch the store, polling instead",
				slog.String("subscription", c.name), slog.Any("error", err))
		}
	}
	wait := time.NewTimer(0)
	defer wait.Stop()
	retry := retries{p: storeRetry}
	m.lastSave = time.Now()
	for ctx.Err() == nil {
		if !time.Now().Before(m.next) {
			if err := m.rebalance(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, store.ErrClosed) {
					c.fatal(ctx, err)
					return
				}
				d := retry.next()
				c.trouble(ctx, "cannot claim partitions", err, d)
				m.next = time.Now().Add(d)
			} else if retry.n > 0 {
				retry.reset()
				c.recovered()
			}
		}
		mark, n := b.settledMark(c), c.reads.Add(1)
		progressed, err := m.step(ctx)
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
		if m.handled >= c.cpEvery || time.Since(m.lastSave) >= c.cpInterval {
			m.commit(ctx)
		}
		if progressed {
			continue
		}
		// Read to the end: settle what Close and CatchUp wait for.
		b.caughtUp(c, mark)
		c.reachedEnd(n)
		if m.handled > 0 {
			// Caught up: save what was handled. Cursors that only moved
			// past other partitions' records, or to the end of the log,
			// wait for the interval: they change with every read, and
			// saving them each time would write on every poll.
			m.commit(ctx)
		}
		// Idle: wait for an append, a poll, or the next renewal.
		d := min(b.cfg.pollInterval, max(time.Until(m.next), 0))
		if m.anyStuck() {
			d = min(d, retry.p.backoff(1))
		}
		resetTimer(wait, d)
		select {
		case <-ctx.Done():
			return
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

// groupMember is member with the bus's type.
type groupMember[T any] struct {
	c        *durable[T]
	g        store.Grouper
	id       string
	ttl      time.Duration
	n        int
	parts    map[int]*held
	next     time.Time
	handled  int       // events handled since the last commit
	lastSave time.Time // when commit last ran
}

// rebalance claims the member's share and gives up what exceeds it.
func (m *groupMember[T]) rebalance(ctx context.Context) error {
	start := time.Now()
	a, err := m.g.Claim(ctx, m.c.name, m.id, m.ttl)
	if err != nil {
		return err
	}
	deadline := start.Add(m.ttl)
	m.next = start.Add(m.ttl / 3)
	now := make(map[int]*held, len(a.Leases))
	for _, l := range a.Leases {
		if h := m.parts[l.Partition]; h != nil && h.token == l.Token {
			h.deadline = deadline
			now[l.Partition] = h
			continue
		}
		now[l.Partition] = &held{token: l.Token, cursor: l.Cursor, saved: l.Cursor, deadline: deadline}
	}
	m.parts = now
	if extra := len(a.Leases) - a.Share; extra > 0 {
		// Give the highest partitions back, checkpointed first so that
		// the next holder goes on from here.
		list := m.owned()
		give := list[len(list)-extra:]
		m.commit(ctx)
		if err := m.g.Release(ctx, m.c.name, m.id, give...); err != nil {
			return err
		}
		for _, p := range give {
			delete(m.parts, p)
		}
	}
	m.c.bus.forgiveOthers(m.c, func(key uint32) bool { return m.parts[int(key%uint32(m.n))] != nil })
	return nil
}

// owned lists the held partitions in order.
func (m *groupMember[T]) owned() []int {
	list := make([]int, 0, len(m.parts))
	for p := range m.parts {
		list = append(list, p)
	}
	slices.Sort(list)
	return list
}

func (m *groupMember[T]) anyStuck() bool {
	for _, h := range m.parts {
		if h.stuck {
			return true
		}
	}
	return false
}

// step reads the held partitions once and handles what it read. It
// reports whether it handled or passed any record.
func (m *groupMember[T]) step(ctx context.Context) (bool, error) {
	if len(m.parts) == 0 {
		return false, nil
	}
	list := m.owned()
	from := make([]store.PartitionCursor, len(list))
	// The leases the read is made under. A partition lost and claimed
	// again meanwhile (renewals keep the lease) is read again from its
	// checkpoint: what this read holds of it may have been handled since
	// by the member that took it over.
	read := make(map[int]*held, len(list))
	for i, p := range list {
		h := m.parts[p]
		h.stuck = false
		read[p] = h
		from[i] = store.PartitionCursor{Partition: p, After: h.cursor}
	}
	recs, next, err := m.g.ReadPartitions(ctx, from, groupBatch)
	if err != nil {
		return false, err
	}
	c := m.c
	progressed := false
	for i := range recs {
		rec := &recs[i]
		p := store.Partition(rec.AggregateID, rec.ID, m.n)
		h := m.parts[p]
		if h != read[p] || h.stuck {
			continue // given up, lost (or failed) earlier in this batch
		}
		if !time.Now().Before(m.next) {
			// Renew between events, so that a long batch keeps its leases.
			if err := m.rebalance(ctx); err != nil {
				return progressed, err
			}
			if h = m.parts[p]; h != read[p] {
				continue
			}
		}
		if !time.Now().Before(h.deadline) {
			h.stuck = true // the lease may be gone: leave it to the next claim
			continue
		}
		if c.sub.pattern != "" && !store.MatchTopic(c.sub.pattern, rec.Topic) {
			h.cursor = rec.Cursor
			progressed = true
			continue
		}
		switch c.handle(rec) {
		case abandoned:
			return progressed, errAbandoned
		case lost:
			// Moving past a failed event whose dead letter was not stored
			// would lose it: deliver it again later.
			h.stuck = true
			c.trouble(ctx, "could not store a dead letter; will deliver the event again", errors.New("dead letter not stored"), storeRetry.backoff(1))
			continue
		}
		h.cursor = rec.Cursor
		m.handled++
		progressed = true
		if m.handled >= c.cpEvery {
			// Between events, as a durable subscription alone saves: a
			// crash repeats at most cpEvery events, however many were read.
			m.commit(ctx)
		}
	}
	// Partitions read to their end move on to where the read ended.
	for i, p := range list {
		h := m.parts[p]
		if h != read[p] || h.stuck || next[i] == "" || next[i] == from[i].After {
			continue
		}
		if m.readAll(recs, p, h) {
			h.cursor = next[i]
		}
	}
	return progressed, nil
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

// commit saves the checkpoints that moved, dropping partitions whose lease
// was lost.
func (m *groupMember[T]) commit(ctx context.Context) {
	m.lastSave = time.Now()
	var cps []store.Checkpoint
	for p, h := range m.parts {
		if h.cursor != h.saved {
			cps = append(cps, store.Checkpoint{Partition: p, Token: h.token, Cursor: h.cursor})
		}
	}
	if len(cps) == 0 {
		m.handled = 0
		return
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
		c.bus.log.LogAttrs(ctx, slog.LevelWarn, "event: durable subscription lost partitions to another member",
			slog.String("subscription", c.name), slog.Any("partitions", lost.Partitions))
		err = nil
	}
	if err != nil {
		c.bus.stats.storeErrors.Add(1)
		c.bus.log.LogAttrs(ctx, slog.LevelError, "event: durable subscription could not save its checkpoints",
			slog.String("subscription", c.name), slog.Any("error", err))
		return
	}
	for _, cp := range cps {
		if h := m.parts[cp.Partition]; h != nil {
			h.saved = cp.Cursor
		}
	}
	m.handled = 0
}

// leave checkpoints and releases every partition, so that other members
// take them over at once.
func (m *groupMember[T]) leave() {
	m.commit(context.Background())
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
