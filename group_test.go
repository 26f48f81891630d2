package event_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
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
			// A lease long enough that none runs out on a loaded machine
			// (under the race detector, with other packages' tests
			// running, a claim on SQLite has taken over 3s): every
			// hand-over here is to be clean.
			subscribe(t, b, "work.>", check.handler(i), event.Durable("workers"), event.Shared(), event.Lease(10*time.Second))
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
		// Each bus's Stats says what its member holds, once it has applied
		// its latest claim.
		waitUntil(t, "the members' Stats().Partitions to add up to every partition", func() bool {
			fromStats := 0
			for _, b := range members {
				fromStats += b.Stats().Partitions["workers"]
			}
			return fromStats == n
		})
		if _, ok := pub.Stats().Partitions["workers"]; ok {
			t.Error("Stats().Partitions of a bus with no member names the group")
		}
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
		for i, b := range members[1:] {
			if n := b.Stats().Takeovers; n != 0 {
				t.Errorf("member %d counts %d takeovers, though every hand-over was clean", i+1, n)
			}
		}
		if n := members[0].Stats().Partitions["workers"]; n != 0 {
			t.Errorf("a closed member's Stats says it holds %d partitions", n)
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
		if st := b.Stats(); st.Takeovers != uint64(g.Partitions()) || st.Partitions["workers"] != g.Partitions() {
			t.Errorf("after taking over every partition of the dead member: Takeovers %d, Partitions %v; want %d each", st.Takeovers, st.Partitions, g.Partitions())
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

// A partition given up and taken back while the member handles one batch
// resumes from its checkpoint: the batch's later events of that partition
// are neither skipped nor handled out of order, while the events of the
// partition it kept go on being handled.
func TestGroupPartitionBackMidBatch(t *testing.T) {
	t.Parallel()
	s, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "events.db"), sqlitestore.WithPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var aggs [2]string // an aggregate in each partition
	for i := 0; aggs[0] == "" || aggs[1] == ""; i++ {
		a := fmt.Sprintf("a%d", i)
		aggs[store.Partition(a, "", 2)] = a
	}
	const perAgg = 30
	check := &orderCheck{last: map[string]int64{}, handled: map[int]int{}}
	handler := check.handler(0)
	started := make(chan struct{}, 2*perAgg)
	b := newStoreBus[int](t, s)
	subscribe(t, b, "work.>", func(ctx context.Context, ev event.Event[int]) error {
		started <- struct{}{}
		time.Sleep(20 * time.Millisecond) // the work
		return handler(ctx, ev)
	}, event.Durable("workers"), event.Shared(), event.Lease(300*time.Millisecond))
	var msgs []event.Message[int]
	for i := range perAgg {
		for _, a := range aggs {
			msgs = append(msgs, event.Message[int]{Topic: "work.item", Payload: i, Options: []event.PublishOption{event.Aggregate(a)}})
		}
	}
	if err := b.PublishBatch(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	<-started
	// Another member joins, which makes b give partition 1 up; it takes it
	// and leaves at once, and b takes it back, all while b handles the
	// batch it read first.
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err := s.Claim(t.Context(), "workers", "visitor", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Leases) == 1 && a.Leases[0].Partition == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the visitor never got partition 1: %+v", a)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Release(t.Context(), "workers", "visitor"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "every event to be handled", check.done(2*perAgg))
	check.mu.Lock()
	defer check.mu.Unlock()
	if len(check.errs) > 0 {
		t.Fatalf("order violated: %v", check.errs)
	}
	t.Logf("%d handlings, %d repeats", check.handled[0], check.repeats)
}

// A handler that runs longer than the lease keeps its member's partitions:
// the heartbeat renews them meanwhile, and a member that joins then gets
// its share handed over, not taken over.
func TestGroupSlowEventKeepsLeases(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		s := open(t)
		n := s.(store.Grouper).Partitions()
		// Renewals come every third of the lease; 2 s leaves a renewal
		// 1.3 s of slack on a machine loaded by the whole suite under
		// the race detector, where 1 s left too little.
		const lease = 2 * time.Second
		release := make(chan struct{})
		started := make(chan struct{}, 1)
		a := newStoreBus[int](t, s)
		subscribe(t, a, "work.>", func(ctx context.Context, ev event.Event[int]) error {
			if ev.Payload == 0 {
				started <- struct{}{}
				<-release
			}
			return nil
		}, event.Durable("workers"), event.Shared(), event.Lease(lease))
		publish(t, a, "work.item", 0, event.Aggregate("slow"))
		<-started
		// Two and a half leases' time into the event, every partition is
		// still a's, under a live lease.
		until := time.Now().Add(5 * lease / 2)
		for time.Now().Before(until) {
			info, err := a.Group(t.Context(), "workers")
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range info.Partitions {
				if p.Owner == "" {
					close(release)
					t.Fatalf("partition %d lost its owner while the handler ran for %v, longer than the %v lease", p.Partition, time.Since(until.Add(-5*lease/2)), lease)
				}
			}
			time.Sleep(lease / 6)
		}
		b := newStoreBus[int](t, s)
		subscribe(t, b, "work.>", func(context.Context, event.Event[int]) error { return nil },
			event.Durable("workers"), event.Shared(), event.Lease(lease))
		close(release)
		waitUntil(t, "the two members to split the partitions", func() bool {
			sa, sb := a.Stats().Partitions["workers"], b.Stats().Partitions["workers"]
			return sa+sb == n && sa > 0 && sb > 0
		})
		if got := a.Stats().Takeovers + b.Stats().Takeovers; got != 0 {
			t.Errorf("%d partitions were taken over, not handed over", got)
		}
	})
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

// A group member does not move past a failed event whose dead letter the
// store could not keep, nor count its partition caught up meanwhile; it
// delivers the event again with backoff, not on every read that other
// partitions' events cause.
func TestGroupKeepsEventWhenDeadLetterFails(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := &flakyDeadLetters{Store: openSQLite(t).(*sqlitestore.Store)}
	s.down.Store(true)
	bus := newStoreBus[Registered](t, s)
	var attempts atomic.Int64
	event.Subscribe(bus, ">", func(ctx context.Context, ev event.Event[Registered]) error {
		if ev.Payload.N == 1 {
			attempts.Add(1)
			return errors.New("handler fails")
		}
		return nil
	}, event.Durable("billing"), event.Shared())
	publish(t, bus, "user.registered", Registered{N: 1}, event.Aggregate("failing"))
	waitUntil(t, "the failing event to be delivered", func() bool { return attempts.Load() > 0 })
	// Events of other aggregates keep the member reading meanwhile.
	for i := range 100 {
		publish(t, bus, "user.registered", Registered{N: 2}, event.Aggregate(fmt.Sprintf("other-%d", i)))
	}
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := bus.CatchUp(cctx)
	cancel()
	if err == nil {
		t.Fatal("CatchUp returned while an event waits for its dead letter to be stored")
	}
	if n := attempts.Load(); n > 20 {
		t.Errorf("the failing event was delivered %d times in the time of 100 other events: no backoff", n)
	}
	s.down.Store(false)
	if err := bus.CatchUp(ctx); err != nil {
		t.Fatalf("CatchUp once the dead letter could be stored: %v", err)
	}
	dls, err := bus.DeadLetters(ctx, "billing", 0)
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters: %d, %v; want 1", len(dls), err)
	}
}

// A member cut off from the store while its handler runs loses its lease,
// and may get the partition back once the member that took it over has let
// it go. It must then read the partition again from the checkpoint the
// other left, not go on with the records it read under the lease it lost:
// the other has handled them.
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
		// The slow member is cut off from the store's claims while its
		// handler runs, so that its lease runs out.
		cut := newCutOff(s)
		a := newStoreBus[int](t, cut)
		subscribe(t, a, "work.>", func(_ context.Context, ev event.Event[int]) error {
			slow.add(ev.Payload)
			if ev.Payload == 2 {
				cut.cut.Store(true)
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

		cut.cut.Store(false)
		unblock()
		publishN(6, 6)
		waitUntil(t, "the slow member to handle event 6", func() bool { return slices.Contains(slow.get(), 6) })
		if got := slow.get(); !slices.Equal(got, []int{1, 2, 6}) {
			t.Fatalf("the slow member handled %v, want [1 2 6]: after its lease ran out, events 3 to 5 were the other member's", got)
		}
	})
}

// A member that lost its lease while its handler ran (cut off from the
// store) cannot save the checkpoint of the partition it lost: the member that took the partition over has
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
		cut := newCutOff(s)
		slow := newStoreBus[int](t, cut, event.WithLogger(logger))
		subscribe(t, slow, "work.>", func(_ context.Context, ev event.Event[int]) error {
			if ev.Payload == 1 {
				cut.cut.Store(true) // its lease runs out while the handler runs
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

// cutOff is a store whose consumer-group claims fail while cut is set, as
// when a member is cut off from the database: its leases run out.
type cutOff struct {
	store.Store
	store.Grouper
	cut atomic.Bool
}

func newCutOff(s store.Store) *cutOff { return &cutOff{Store: s, Grouper: s.(store.Grouper)} }

func (c *cutOff) Claim(ctx context.Context, group, member string, ttl time.Duration) (store.Assignment, error) {
	if c.cut.Load() {
		return store.Assignment{}, errors.New("cut off from the database")
	}
	return c.Grouper.Claim(ctx, group, member, ttl)
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

// commitSizes is a store that records how many checkpoints each
// Grouper.Commit carries.
type commitSizes struct {
	*sqlitestore.Store
	mu    sync.Mutex
	sizes []int
}

func (s *commitSizes) Commit(ctx context.Context, group, member string, cps ...store.Checkpoint) error {
	s.mu.Lock()
	s.sizes = append(s.sizes, len(cps))
	s.mu.Unlock()
	return s.Store.Commit(ctx, group, member, cps...)
}

// A member that catches up saves what it handled when the checkpoint
// interval is up, not after each event: at light load that would be a
// write for every event. It saves while idle too, without waiting for the
// next event or poll.
func TestGroupSavesCheckpointsOnInterval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		interval time.Duration
	}{{"long interval", time.Hour}, {"short interval", 200 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &commitSizes{Store: openSQLite(t).(*sqlitestore.Store)}
			got := newSeen[int]()
			bus := newStoreBus[int](t, s, event.WithPollInterval(time.Hour))
			subscribe(t, bus, "work.>", got.handler, event.Durable("workers"), event.Shared(), event.Checkpoint(100, tc.interval))
			waitUntil(t, "the member to hold every partition", func() bool {
				info, err := bus.Group(t.Context(), "workers")
				return err == nil && len(info.Members) == 1 && info.Members[0].Partitions == s.Partitions()
			})
			const events = 5
			for i := range events {
				publish(t, bus, "work.item", i, event.Aggregate(fmt.Sprintf("agg-%d", i)))
				got.waitFor(t, "the event", atLeast[int](i+1))
			}
			commits := func() int {
				s.mu.Lock()
				defer s.mu.Unlock()
				return len(s.sizes)
			}
			if tc.interval == time.Hour {
				if n := commits(); n != 0 {
					t.Fatalf("%d commits for %d events handled within the interval, want none before leaving", n, events)
				}
				closeBus(t, bus)
				if n := commits(); n != 1 {
					t.Fatalf("%d commits at leaving, want 1", n)
				}
				return
			}
			waitUntil(t, "the handled events' checkpoints to be saved while idle", func() bool {
				info, err := bus.Group(t.Context(), "workers")
				if err != nil {
					return false
				}
				for _, p := range info.Partitions {
					if p.Lag != 0 {
						return false
					}
				}
				return len(info.Partitions) > 0
			})
		})
	}
}

// readCount is a store that counts Grouper.ReadPartitions calls.
type readCount struct {
	*pgstore.Store
	reads atomic.Int64
}

func (s *readCount) ReadPartitions(ctx context.Context, from []store.PartitionCursor, limit int) ([]store.Record, error) {
	s.reads.Add(1)
	return s.Store.ReadPartitions(ctx, from, limit)
}

// A member on a store that signals appends reads once per event at light
// load: a read that comes back short has read the log to its end, and
// reading again would find nothing.
func TestGroupReadsOncePerEvent(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	open := func() *pgstore.Store {
		s, err := pgstore.Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s := &readCount{Store: open()}
	got := newSeen[int]()
	bus := newStoreBus[int](t, s, event.WithPollInterval(time.Hour))
	subscribe(t, bus, "work.>", got.handler, event.Durable("workers"), event.Shared(), event.Lease(time.Hour))
	waitUntil(t, "the member to hold every partition", func() bool {
		info, err := bus.Group(t.Context(), "workers")
		return err == nil && len(info.Members) == 1 && info.Members[0].Partitions == s.Partitions()
	})
	if err := bus.CatchUp(t.Context()); err != nil {
		t.Fatal(err)
	}
	pub := newStoreBus[int](t, open()) // another process, as far as the member can tell
	const events = 10
	before := s.reads.Load()
	for i := range events {
		publish(t, pub, "work.item", i, event.Aggregate(fmt.Sprintf("agg-%d", i)))
		got.waitFor(t, "the event", atLeast[int](i+1))
	}
	if reads := s.reads.Load() - before; reads > events+2 {
		t.Fatalf("%d reads for %d events published one at a time, want one each", reads, events)
	}
}
