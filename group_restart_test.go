package event_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
)

// TestPostgresRestartMidStream crashes and restarts PostgreSQL while three
// members of a consumer group and a plain durable subscription, each bus
// with a store and pool of its own, consume what a publisher appends over
// many aggregates. Every connection is cut; the publisher retries each
// failed publish with the same event ID and time until it succeeds. The
// consumers must reconnect by themselves and lose nothing: every event is
// stored once, handled by the group and by the plain subscription, each
// aggregate in order, and the group ends with no lag. With a poll interval
// of a minute only NOTIFY wakes the plain subscription, so handling an
// event published afterwards within seconds shows that the LISTEN
// connections came back.
func TestPostgresRestartMidStream(t *testing.T) {
	aggs, perAgg := 100, 100
	if testing.Short() {
		aggs, perAgg = 50, 40
	}
	const publishers, members = 10, 3
	total := aggs * perAgg
	began := time.Now()
	srv := pgtest.NewServer(t)
	dsn := srv.DSN()
	serverUp := time.Now()
	var pubWG sync.WaitGroup
	defer pubWG.Wait()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel() // before the wait: a test that fails stops the publishers

	logs := &logTally{}
	logger := slog.New(logs)
	open := func() *pgstore.Store {
		s, err := pgstore.Open(ctx, dsn, pgstore.WithLogger(logger))
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	// Only NOTIFY (or a lease renewal, for a member) wakes a consumer:
	// none of their buses publishes, and polls are a minute apart.
	consumer := func() *event.Bus[int] {
		return newStoreBus[int](t, open(), event.WithPollInterval(time.Minute), event.WithLogger(logger))
	}

	group := newArrivals()
	var groupBuses []*event.Bus[int]
	var subs []*event.Subscription
	for i := range members {
		b := consumer()
		subs = append(subs, subscribe(t, b, "work.>", group.handler(fmt.Sprintf("member %d", i)),
			event.Durable("workers"), event.Shared(), event.Lease(3*time.Second)))
		groupBuses = append(groupBuses, b)
	}
	plain := newArrivals()
	plainBus := consumer()
	subs = append(subs, subscribe(t, plainBus, "work.>", plain.handler("plain"), event.Durable("audit")))

	pubStore := open()
	pub := newStoreBus[int](t, pubStore, event.WithLogger(logger))
	n := pubStore.Partitions()
	waitFor(t, 15*time.Second, "the members to share every partition", func() (bool, string) {
		info, err := pub.Group(ctx, "workers")
		if err != nil {
			return false, err.Error()
		}
		held := 0
		for _, m := range info.Members {
			if m.Partitions > store.Share(n, members) {
				return false, fmt.Sprintf("%+v", info.Members)
			}
			held += m.Partitions
		}
		return len(info.Members) == members && held == n, fmt.Sprintf("%+v", info.Members)
	})

	balanced := time.Now()

	// The events, planned in full so that a retry publishes the same one.
	type planned struct {
		id  uuid.UUID
		at  time.Time
		agg string
		seq int
	}
	plan := make([][]planned, aggs) // by aggregate, in publish order
	var ids []uuid.UUID
	for a := range plan {
		for s := range perAgg {
			plan[a] = append(plan[a], planned{id: uuid.New(), at: time.Now(), agg: fmt.Sprintf("agg-%03d", a), seq: s + 1})
			ids = append(ids, plan[a][s].id)
		}
	}
	var (
		published atomic.Int64
		pubErrs   errorTally
		recovered atomic.Int64 // unix nanoseconds of the first publish that succeeded after failing
	)
	for p := range publishers {
		pubWG.Go(func() {
			for s := range perAgg {
				for a := p; a < aggs; a += publishers {
					ev := plan[a][s]
					for attempt := 1; ; attempt++ {
						err := pub.Publish(ctx, "work.item", ev.seq, event.Aggregate(ev.agg), event.EventID(ev.id), event.EventTime(ev.at))
						if err == nil {
							if attempt > 1 {
								recovered.CompareAndSwap(0, time.Now().UnixNano())
							}
							break
						}
						if ctx.Err() != nil {
							t.Errorf("publisher %d gave up on %s #%d after %d attempts: %v", p, ev.agg, ev.seq, attempt, err)
							return
						}
						pubErrs.add(err)
						time.Sleep(10 * time.Millisecond)
					}
					published.Add(1)
				}
			}
		})
	}

	// Midway, crash the server: every connection is cut.
	waitFor(t, 30*time.Second, "half of the events to be published", func() (bool, string) {
		return published.Load() >= int64(total/2), fmt.Sprint(published.Load())
	})
	halfway := time.Now()
	atRestart := published.Load()
	handledAtRestart := group.distinct()
	down := time.Now()
	if err := srv.Restart(ctx, nil); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	var subErrs errorTally
	waitFor(t, 30*time.Second, "the publishers to publish every event", func() (bool, string) {
		for _, s := range subs {
			if err := s.Err(); err != nil {
				subErrs.add(err)
			}
		}
		return published.Load() == int64(total), fmt.Sprint(published.Load())
	})
	pubWG.Wait()
	pubDone := time.Now()
	if t.Failed() {
		t.FailNow()
	}

	for _, c := range []struct {
		name string
		a    *arrivals
	}{{"the group", group}, {"the plain subscription", plain}} {
		waitFor(t, 15*time.Second, c.name+" to handle every event", func() (bool, string) {
			for _, s := range subs {
				if err := s.Err(); err != nil {
					subErrs.add(err)
				}
			}
			return c.a.inOrder() == total || c.a.broken(), fmt.Sprintf("%d of %d", c.a.inOrder(), total)
		})
		c.a.check(t, c.name, ids)
	}
	caughtUp := time.Now()
	waitFor(t, 15*time.Second, "the group's lag to reach 0 on every partition", func() (bool, string) {
		info, err := pub.Group(ctx, "workers")
		if err != nil {
			return false, err.Error()
		}
		var lagging []string
		for _, p := range info.Partitions {
			if p.Lag != 0 || p.Owner == "" {
				lagging = append(lagging, fmt.Sprintf("%d: lag %d, owner %q", p.Partition, p.Lag, p.Owner))
			}
		}
		return len(info.Partitions) == n && len(lagging) == 0 && len(info.Members) == members, fmt.Sprintf("%d members; %v", len(info.Members), lagging)
	})
	for i, s := range subs {
		if err := s.Err(); err != nil {
			t.Errorf("subscription %d still reports an error after catching up: %v", i, err)
		}
	}

	// Every event the publishers meant is stored once, each aggregate's in
	// publish order.
	for a := range plan {
		recs, err := pubStore.LoadAggregate(ctx, plan[a][0].agg, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != perAgg {
			t.Errorf("%s: %d events stored, want %d", plan[a][0].agg, len(recs), perAgg)
			continue
		}
		for i, r := range recs {
			var seq int
			if err := json.Unmarshal(r.Payload, &seq); err != nil || r.ID != plan[a][i].id.String() || seq != plan[a][i].seq {
				t.Errorf("%s version %d: stored %s with payload %s, want %s with %d", plan[a][0].agg, r.Version, r.ID, r.Payload, plan[a][i].id, plan[a][i].seq)
				break
			}
		}
	}

	// LISTEN is back: the four watching connections are there again, and
	// an event published now reaches the plain subscription, which only a
	// NOTIFY can wake, at once.
	const watchers = members + 1
	waitFor(t, 15*time.Second, "the consumers to LISTEN again", func() (bool, string) {
		var k int
		err := pubStore.Pool().QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'").Scan(&k)
		if err != nil {
			return false, err.Error()
		}
		return k == watchers, fmt.Sprintf("%d of %d listening", k, watchers)
	})
	probe := uuid.New()
	sent := time.Now()
	publish(t, pub, "work.probe", 1, event.EventID(probe))
	const notifyBound = 3 * time.Second
	var plainLatency, groupLatency time.Duration
	deadline := time.Now().Add(notifyBound)
	for plainLatency == 0 || groupLatency == 0 {
		if plainLatency == 0 && plain.has(probe) {
			plainLatency = time.Since(sent)
		}
		if groupLatency == 0 && group.has(probe) {
			groupLatency = time.Since(sent)
		}
		if time.Now().After(deadline) {
			t.Fatalf("an event published after the restart was not handled within %v (plain subscription: %v, group: %v): NOTIFY does not wake the consumers", notifyBound, plainLatency, groupLatency)
		}
		time.Sleep(time.Millisecond)
	}

	for _, b := range append(groupBuses, plainBus) {
		closeBus(t, b)
	}
	t.Logf("server started in %v; members balanced in %v; first half published in %v",
		serverUp.Sub(began).Round(time.Millisecond), balanced.Sub(serverUp).Round(time.Millisecond), halfway.Sub(balanced).Round(time.Millisecond))
	t.Logf("%d events over %d aggregates; %d published and %d handled by the group when the restart began; server down and up again in %v",
		total, aggs, atRestart, handledAtRestart, up.Sub(down).Round(time.Millisecond))
	if r := recovered.Load(); r != 0 {
		t.Logf("first publish that succeeded after failing: %v after the server was up again", time.Unix(0, r).Sub(up).Round(time.Millisecond))
	}
	t.Logf("publishing done %v after the server was up; consumers caught up %v after that; probe handled after %v (plain), %v (group)",
		pubDone.Sub(up).Round(time.Millisecond), caughtUp.Sub(pubDone).Round(time.Millisecond), plainLatency.Round(time.Millisecond), groupLatency.Round(time.Millisecond))
	t.Logf("group: handled per member %v, %d repeats; plain subscription: %d repeats", group.perMember(), group.repeats(), plain.repeats())
	t.Logf("failed publishes: %s", pubErrs.String())
	t.Logf("subscription errors (Err, sampled every 5ms): %s", subErrs.String())
	t.Logf("log: %s", logs.String())
}

// waitFor polls cond until it holds, failing the test after timeout with
// what cond last said.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// arrivals is what the handlers of one consumer (a group, or a plain
// subscription) saw: per aggregate, the highest version handled with all
// before it; per event, how often it was handled.
type arrivals struct {
	mu     sync.Mutex
	last   map[string]int64
	times  map[uuid.UUID]int
	by     map[string]int
	rep    int
	total  int
	errs   []string
	maxErr int
}

func newArrivals() *arrivals {
	return &arrivals{last: map[string]int64{}, times: map[uuid.UUID]int{}, by: map[string]int{}, maxErr: 10}
}

// handler records an event handled by who. An aggregate's event is in
// order if it is the next version, or one handled already (delivery is at
// least once: after a restart or a hand-over, a consumer goes on from its
// last checkpoint); a later one means an earlier one was skipped.
func (a *arrivals) handler(who string) event.Handler[int] {
	return func(_ context.Context, ev event.Event[int]) error {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.times[ev.ID]++
		a.by[who]++
		if ev.AggregateID == "" {
			return nil
		}
		switch last := a.last[ev.AggregateID]; {
		case ev.Version == last+1:
			a.last[ev.AggregateID] = ev.Version
			a.total++
		case ev.Version <= last:
			a.rep++
		default:
			if len(a.errs) < a.maxErr {
				a.errs = append(a.errs, fmt.Sprintf("%s: %s version %d after %d", who, ev.AggregateID, ev.Version, last))
			}
		}
		return nil
	}
}

func (a *arrivals) inOrder() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total
}

func (a *arrivals) broken() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.errs) > 0
}

func (a *arrivals) distinct() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.times)
}

func (a *arrivals) has(id uuid.UUID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.times[id] > 0
}

func (a *arrivals) repeats() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rep
}

func (a *arrivals) perMember() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for k, v := range a.by {
		out[k] = v
	}
	return out
}

// check fails t unless every one of ids was handled, each aggregate in
// order.
func (a *arrivals) check(t *testing.T, name string, ids []uuid.UUID) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.errs) > 0 {
		t.Fatalf("%s handled events out of order: %v", name, a.errs)
	}
	missing := 0
	for _, id := range ids {
		if a.times[id] == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%s never handled %d of %d events", name, missing, len(ids))
	}
}

// errorTally counts errors by message, with what varies between them (IDs,
// addresses) cut off.
type errorTally struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *errorTally) add(err error) {
	e.addText(errText(err))
}

func (e *errorTally) addText(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n = map[string]int{}
	}
	e.n[s]++
}

func (e *errorTally) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.n) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(e.n))
	for k := range e.n {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n\t%5d× %s", e.n[k], k)
	}
	return b.String()
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// errText is err's message, marked when it matches ErrMaybePublished.
func errText(err error) string {
	s := uuidRE.ReplaceAllString(err.Error(), "<id>")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if errors.Is(err, event.ErrMaybePublished) {
		s = "[maybe published] " + s
	}
	return s
}

// logTally is a slog.Handler that counts records by level and message,
// keeping the first error of each.
type logTally struct {
	errorTally
}

func (l *logTally) Enabled(context.Context, slog.Level) bool { return true }

func (l *logTally) Handle(_ context.Context, r slog.Record) error {
	msg := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			s := uuidRE.ReplaceAllString(a.Value.String(), "<id>")
			if len(s) > 160 {
				s = s[:160] + "…"
			}
			msg += ": " + s
			return false
		}
		return true
	})
	l.addText(msg)
	return nil
}

func (l *logTally) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logTally) WithGroup(string) slog.Handler      { return l }
