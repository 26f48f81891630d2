package event_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
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
			subscribe(t, b, "work.>", check.handler(i), event.Durable("workers"), event.Shared(), event.Lease(2*time.Second))
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

// A group member whose reads fail keeps retrying and says so, and its Err
// clears once the store answers again, not only at its next renewal of
// its partitions (a minute's lease renews every 20 seconds).
func TestGroupReadFailureIsExposed(t *testing.T) {
	t.Parallel()
	s := openSQLite(t).(*sqlitestore.Store)
	bus := newStoreBus[int](t, s)
	got := newSeen[int]()
	sub := subscribe(t, bus, "n", got.handler, event.Durable("workers"), event.Shared(), event.Lease(time.Minute))
	publish(t, bus, "n", 1)
	got.waitFor(t, "the first event", atLeast[int](1))
	if _, err := s.DB().ExecContext(t.Context(), `ALTER TABLE event_log RENAME TO event_log_gone`); err != nil {
		t.Fatal(err)
	}
	bus.Publish(t.Context(), "n", 2) // fails, but wakes the reader
	waitUntil(t, "Err to report the failing reads", func() bool { return sub.Err() != nil })
	if err := sub.Err(); !strings.Contains(err.Error(), "cannot read the store, retrying") || !strings.Contains(err.Error(), "event_log") {
		t.Errorf("Err = %v, want the read error", err)
	}
	if _, err := s.DB().ExecContext(t.Context(), `ALTER TABLE event_log_gone RENAME TO event_log`); err != nil {
		t.Fatal(err)
	}
	publish(t, bus, "n", 3)
	got.waitFor(t, "the event after recovery", atLeast[int](2))
	waitUntil(t, "Err to clear", func() bool { return sub.Err() == nil })
}

// scriptedClaims is a store whose Claim runs script, when set, in place
// of the store's own, to stage what other members do between two claims.
type scriptedClaims struct {
	*sqlitestore.Store
	mu     sync.Mutex
	script func(ctx context.Context, group, member string, ttl time.Duration) (store.Assignment, error)
}

func (s *scriptedClaims) Claim(ctx context.Context, group, member string, ttl time.Duration) (store.Assignment, error) {
	s.mu.Lock()
	script := s.script
	s.mu.Unlock()
	if script != nil {
		return script(ctx, group, member, ttl)
	}
	return s.Store.Claim(ctx, group, member, ttl)
}

// A member that loses a partition in the middle of a batch, and gets it
// back before the batch is done, must not go on with the batch's later
// records of the partition: it passed over the ones in between, and the
// partition's checkpoint is from before them. Here the claim at the
// partition's second record finds another member holding it, and the claim
// at the next record, of the other partition, takes it back.
func TestGroupPartitionRegainedMidBatch(t *testing.T) {
	t.Parallel()
	s, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "events.db"), sqlitestore.WithPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// An aggregate in each partition.
	aggs := map[int]string{}
	for i := 0; len(aggs) < 2; i++ {
		a := fmt.Sprintf("agg-%d", i)
		if p := store.Partition(a, "", 2); aggs[p] == "" {
			aggs[p] = a
		}
	}
	w := &scriptedClaims{Store: s}
	bus := newStoreBus[int](t, w)
	const lease = 300 * time.Millisecond
	var mu sync.Mutex
	var handled []int
	staged := false
	h := func(_ context.Context, ev event.Event[int]) error {
		mu.Lock()
		handled = append(handled, ev.Payload)
		first := !staged && ev.Payload == 1
		staged = staged || first
		mu.Unlock()
		if !first {
			return nil
		}
		// Make the next record find the renewal due, and stage the next
		// two claims: in the first another member takes partition 0; by
		// the second it has let it go.
		calls := 0
		w.mu.Lock()
		w.script = func(ctx context.Context, group, member string, ttl time.Duration) (store.Assignment, error) {
			calls++
			switch calls {
			case 1:
				if err := s.Release(ctx, group, member, 0); err != nil {
					return store.Assignment{}, err
				}
				if _, err := s.Claim(ctx, group, "other", time.Minute); err != nil {
					return store.Assignment{}, err
				}
				time.Sleep(lease / 2) // so that the next record finds the renewal due again
			case 2:
				if err := s.Release(ctx, group, "other"); err != nil {
					return store.Assignment{}, err
				}
				w.mu.Lock()
				w.script = nil
				w.mu.Unlock()
			}
			return s.Claim(ctx, group, member, ttl)
		}
		w.mu.Unlock()
		time.Sleep(lease / 2)
		return nil
	}
	subscribe(t, bus, "n", h, event.Durable("workers"), event.Shared(), event.Lease(lease))
	waitUntil(t, "the member to hold both partitions", func() bool {
		info, err := bus.Group(t.Context(), "workers")
		return err == nil && len(info.Members) == 1 && info.Members[0].Partitions == 2
	})
	// Records 1, 2 and 4 are partition 0's, 3 is partition 1's.
	msgs := []event.Message[int]{
		{Topic: "n", Payload: 1, Options: []event.PublishOption{event.Aggregate(aggs[0])}},
		{Topic: "n", Payload: 2, Options: []event.PublishOption{event.Aggregate(aggs[0])}},
		{Topic: "n", Payload: 3, Options: []event.PublishOption{event.Aggregate(aggs[1])}},
		{Topic: "n", Payload: 4, Options: []event.PublishOption{event.Aggregate(aggs[0])}},
	}
	if err := bus.PublishBatch(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "events 3 and 4 to be handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(handled, 3) && slices.Contains(handled, 4)
	})
	if err := bus.CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(handled, 2) {
		t.Fatalf("handled %v: event 2 was passed over", handled)
	}
	i2, i4 := slices.Index(handled, 2), slices.Index(handled, 4)
	if i4 < i2 {
		t.Errorf("handled %v: event 4 before event 2 of the same aggregate", handled)
	}
}
