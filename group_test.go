package event_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// orderCheck is the handler state that members of one group share: the
// last version handled per aggregate, across members, and who handled how
// many.
type orderCheck struct {
	mu      sync.Mutex
	last    map[string]int64
	handled map[int]int // per member
	repeats int
	total   int
	errs    []string
}

func (o *orderCheck) handler(member int) event.Handler[int] {
	return func(_ context.Context, ev event.Event[int]) error {
		o.mu.Lock()
		defer o.mu.Unlock()
		last := o.last[ev.AggregateID]
		switch {
		case ev.Version == last+1:
			o.last[ev.AggregateID] = ev.Version
			o.total++
		case ev.Version <= last:
			o.repeats++
		default:
			o.errs = append(o.errs, fmt.Sprintf("member %d: %s version %d after %d", member, ev.AggregateID, ev.Version, last))
		}
		o.handled[member]++
		return nil
	}
}

func (o *orderCheck) done(n int) func() bool {
	return func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.total >= n || len(o.errs) > 0
	}
}

// TestGroupSharesWork runs three buses on one store as members of one
// group: they split the partitions, handle every event once and each
// aggregate in order, and when one closes the others take over its
// partitions and finish.
func TestGroupSharesWork(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		s := open(t)
		g := s.(store.Grouper)
		n := g.Partitions()
		check := &orderCheck{last: map[string]int64{}, handled: map[int]int{}}
		var members []*event.Bus[int]
		for i := range 3 {
			b := newStoreBus[int](t, s)
			subscribe(t, b, "work.>", check.handler(i), event.Durable("workers"), event.Shared(), event.Lease(900*time.Millisecond))
			members = append(members, b)
		}
		pub := newStoreBus[int](t, s)
		waitUntil(t, "three members to share every partition", func() bool {
			info, err := pub.Group(t.Context(), "workers")
			if err != nil {
				t.Fatal(err)
			}
			held := 0
			for _, m := range info.Members {
				if m.Partitions > store.Share(n, 3) {
					return false
				}
				held += m.Partitions
			}
			return len(info.Members) == 3 && held == n
		})
		const aggs, perAgg = 100, 50
		// One batch per round of versions, spread over the log's
		// partitions by aggregate.
		publishAll := func(from, to int) {
			for v := from; v < to; v++ {
				msgs := make([]event.Message[int], aggs)
				for a := range msgs {
					msgs[a] = event.Message[int]{Topic: "work.item", Payload: v, Options: []event.PublishOption{event.Aggregate(fmt.Sprintf("agg-%d", a))}}
				}
				if err := pub.PublishBatch(t.Context(), msgs); err != nil {
					t.Fatalf("PublishBatch: %v", err)
				}
			}
		}
		publishAll(0, perAgg/2)
		waitUntil(t, "the first half to be handled", check.done(aggs*perAgg/2))
		check.mu.Lock()
		for i := range 3 {
			if check.handled[i] == 0 {
				t.Errorf("member %d handled nothing of %d events", i, check.total)
			}
		}
		check.mu.Unlock()

		closeBus(t, members[0])
		publishAll(perAgg/2, perAgg)
		waitUntil(t, "every event to be handled", check.done(aggs*perAgg))
		check.mu.Lock()
		defer check.mu.Unlock()
		if len(check.errs) > 0 {
			t.Fatalf("order violated: %v", check.errs[:min(len(check.errs), 5)])
		}
		if check.repeats != 0 {
			t.Errorf("%d events handled twice, though every hand-over was clean", check.repeats)
		}
		for a := range aggs {
			if v := check.last[fmt.Sprintf("agg-%d", a)]; v != perAgg {
				t.Errorf("agg-%d: last version handled %d, want %d", a, v, perAgg)
			}
		}
		info, err := pub.Group(t.Context(), "workers")
		if err != nil {
			t.Fatal(err)
		}
		held := map[string]int{}
		for _, p := range info.Partitions {
			if p.Owner == "" {
				t.Errorf("partition %d has no owner after the first member closed", p.Partition)
			}
			held[p.Owner]++
		}
		if len(info.Members) != 2 || len(held) != 2 {
			t.Errorf("after one member closed: %d members hold partitions %v, want 2", len(info.Members), held)
		}
		t.Logf("handled per member: %v, %d events", check.handled, check.total)
	})
}

// A member that dies keeps its partitions until its lease runs out; then a
// live member takes them over from their checkpoints. Meanwhile a closing
// bus does not wait for its events in partitions the dead member holds.
func TestGroupTakesOverExpiredLeases(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		s := open(t)
		g := s.(store.Grouper)
		// The dead member: it claimed everything and will never renew.
		if a, err := g.Claim(t.Context(), "workers", "ghost", 1500*time.Millisecond); err != nil || len(a.Leases) != g.Partitions() {
			t.Fatalf("ghost's Claim = %d leases, %v", len(a.Leases), err)
		}
		got := newSeen[int]()
		b := newStoreBus[int](t, s)
		subscribe(t, b, "work.>", got.handler, event.Durable("workers"), event.Shared(), event.Lease(300*time.Millisecond))
		early := newStoreBus[int](t, s)
		subscribe(t, early, "work.>", func(context.Context, event.Event[int]) error { return nil }, event.Durable("workers"), event.Shared())
		publish(t, early, "work.item", 1, event.Aggregate("a"))
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if err := early.Close(ctx); err != nil {
			t.Fatalf("Close of a member holding none of its events' partitions: %v", err)
		}
		if evs := got.snapshot(); len(evs) != 0 {
			t.Fatalf("handled %d events while the dead member's lease was live", len(evs))
		}
		got.waitFor(t, "the event after the lease ran out", atLeast[int](1))
		info, err := b.Group(t.Context(), "workers")
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Members) != 1 || info.Members[0].Partitions != g.Partitions() {
			t.Fatalf("after the takeover: %+v, want one member holding all %d partitions", info.Members, g.Partitions())
		}
	})
}

// onlyStore hides every optional interface of a store.
type onlyStore struct{ store.Store }

// Shared needs a store that runs consumer groups, and says so.
func TestSharedNeedsGroups(t *testing.T) {
	t.Parallel()
	bus := newStoreBus[int](t, onlyStore{openSQLite(t)})
	_, err := event.Subscribe(bus, "a", func(context.Context, event.Event[int]) error { return nil }, event.Durable("d"), event.Shared())
	if err == nil || !strings.Contains(err.Error(), "does not run consumer groups") {
		t.Fatalf("Subscribe Shared on a store without groups = %v", err)
	}
}

// A group member saves its checkpoints every n events, as a durable
// subscription alone does, also in the middle of the records it read at
// once: a crash repeats at most n events.
func TestGroupCheckpointsEveryN(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		s := open(t)
		const total, every, stop = 150, 10, 35
		pub := newStoreBus[int](t, s)
		msgs := make([]event.Message[int], total)
		for i := range msgs {
			msgs[i] = event.Message[int]{Topic: "work.item", Payload: i + 1, Options: []event.PublishOption{event.Aggregate("a")}}
		}
		if err := pub.PublishBatch(t.Context(), msgs); err != nil {
			t.Fatal(err)
		}
		blocked, release := make(chan struct{}), make(chan struct{})
		b := newStoreBus[int](t, s)
		subscribe(t, b, "work.>", func(_ context.Context, ev event.Event[int]) error {
			if ev.Payload == stop {
				close(blocked)
				<-release
			}
			return nil
		}, event.Durable("workers"), event.Shared(), event.Checkpoint(every, time.Hour))
		defer close(release)
		recv(t, blocked, "the member to reach the event it stops at")
		p := store.Partition("a", "", s.(store.Grouper).Partitions())
		info, err := b.Group(t.Context(), "workers")
		if err != nil {
			t.Fatal(err)
		}
		// stop-1 handled; a crash now must repeat at most every of them.
		if lag, most := info.Partitions[p].Lag, int64(total-(stop-1-every)); lag > most {
			t.Fatalf("with %d of %d events handled and a checkpoint every %d, the checkpoint leaves %d to handle again, more than %d", stop-1, total, every, lag, most)
		}
	})
}

// A member whose handler outlives its lease may get the partition back
// once the member that took it over has let it go. It must then read the
// partition again from the checkpoint the other left, not go on with the
// records it read under the lease it lost: the other has handled them.
func TestGroupRereadsPartitionClaimedAgain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		s := open(t)
		pub := newStoreBus[int](t, s)
		publishN := func(from, to int) {
			for v := from; v <= to; v++ {
				publish(t, pub, "work.item", v, event.Aggregate("a"))
			}
		}
		publishN(1, 5)
		const lease = 300 * time.Millisecond
		var slow record[int]
		blocked, release := make(chan struct{}), make(chan struct{})
		unblock := sync.OnceFunc(func() { close(release) })
		defer unblock() // before the buses close
		a := newStoreBus[int](t, s)
		subscribe(t, a, "work.>", func(_ context.Context, ev event.Event[int]) error {
			slow.add(ev.Payload)
			if ev.Payload == 2 {
				close(blocked)
				<-release
			}
			return nil
		}, event.Durable("workers"), event.Shared(), event.Lease(lease))
		recv(t, blocked, "the slow member to handle event 2")

		// Its lease runs out; another member takes the partition over,
		// handles the rest and leaves, letting the partition go.
		other := newSeen[int]()
		b := newStoreBus[int](t, s)
		subscribe(t, b, "work.>", other.handler, event.Durable("workers"), event.Shared(), event.Lease(lease))
		other.waitFor(t, "the other member to handle event 5", func(evs []event.Event[int]) bool {
			return len(evs) > 0 && evs[len(evs)-1].Payload == 5
		})
		closeBus(t, b)

		unblock()
		publishN(6, 6)
		waitUntil(t, "the slow member to handle event 6", func() bool { return slices.Contains(slow.get(), 6) })
		if got := slow.get(); !slices.Equal(got, []int{1, 2, 6}) {
			t.Fatalf("the slow member handled %v, want [1 2 6]: after its lease ran out, events 3 to 5 were the other member's", got)
		}
	})
}

// A member whose handler outlives its lease cannot save the checkpoint of
// the partition it lost: the member that took the partition over has
// handled further, and its checkpoint stands.
func TestGroupFencesLostPartitionCheckpoint(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		s := open(t)
		pub := newStoreBus[int](t, s)
		for v := 1; v <= 3; v++ {
			publish(t, pub, "work.item", v, event.Aggregate("a"))
		}
		const lease = 300 * time.Millisecond
		lost := make(chan struct{}, 1)
		logger := slog.New(handlerFunc(func(r slog.Record) {
			if strings.Contains(r.Message, "lost partitions") {
				select {
				case lost <- struct{}{}:
				default:
				}
			}
		}))
		blocked, release := make(chan struct{}), make(chan struct{})
		unblock := sync.OnceFunc(func() { close(release) })
		defer unblock() // before the buses close
		slow := newStoreBus[int](t, s, event.WithLogger(logger))
		subscribe(t, slow, "work.>", func(_ context.Context, ev event.Event[int]) error {
			if ev.Payload == 1 {
				close(blocked)
				<-release
			}
			return nil
		}, event.Durable("workers"), event.Shared(), event.Lease(lease), event.Checkpoint(1, time.Hour))
		recv(t, blocked, "the slow member to handle event 1")

		other := newSeen[int]()
		b := newStoreBus[int](t, s)
		subscribe(t, b, "work.>", other.handler, event.Durable("workers"), event.Shared(), event.Lease(lease), event.Checkpoint(1, time.Hour))
		p := store.Partition("a", "", s.(store.Grouper).Partitions())
		lag := func() int64 {
			info, err := b.Group(t.Context(), "workers")
			if err != nil {
				t.Fatal(err)
			}
			return info.Partitions[p].Lag
		}
		waitUntil(t, "the other member to take the partition over and save it to its end", func() bool {
			return len(other.snapshot()) >= 3 && lag() == 0
		})

		// The slow member's handler returns; it saves its checkpoint at
		// once (one event per checkpoint), and finds the lease lost.
		unblock()
		waitUntil(t, "the slow member to save its checkpoint", func() bool { return len(lost) > 0 || lag() != 0 })
		if l := lag(); l != 0 {
			t.Fatalf("after the slow member tried to save the partition it lost, %d of its events are to be handled again, want 0", l)
		}
	})
}

// handlerFunc is a slog.Handler that passes every record to a function,
// whatever its level, attributes and group.
type handlerFunc func(slog.Record)

func (h handlerFunc) Enabled(context.Context, slog.Level) bool      { return true }
func (h handlerFunc) Handle(_ context.Context, r slog.Record) error { h(r); return nil }
func (h handlerFunc) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h handlerFunc) WithGroup(string) slog.Handler                 { return h }
