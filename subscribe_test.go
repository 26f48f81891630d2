package event_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

func TestPublishRejectsInvalidTopics(t *testing.T) {
	t.Parallel()
	b := newBus[int](t)
	var calls atomic.Int64
	subscribe(t, b, ">", func(context.Context, event.Event[int]) error { calls.Add(1); return nil })
	for _, topic := range []string{
		"",
		".",
		"user..registered",
		".user",
		"user.",
		"user.*",
		"user.>",
		"*",
		">",
		"user.reg*",
		"user registered",
		"user.\tregistered",
		"user\nregistered",
		"user\x00",
		"user\x7f",
		"\xff\xfe",
		strings.Repeat("a", 256),
	} {
		err := b.Publish(context.Background(), topic, 1)
		if !errors.Is(err, event.ErrInvalidTopic) {
			t.Errorf("Publish(%q) = %v, want ErrInvalidTopic", topic, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "event: publish") {
			t.Errorf("Publish(%q) error %q lacks the package and operation", topic, err)
		}
	}
	closeBus(t, b)
	if st := b.Stats(); st.Published != 0 || calls.Load() != 0 {
		t.Errorf("invalid topics were published: Stats.Published %d, handler calls %d", st.Published, calls.Load())
	}
}

func TestPublishAcceptsValidTopics(t *testing.T) {
	t.Parallel()
	b := newBus[int](t, event.WithSync())
	var got record[string]
	subscribe(t, b, ">", func(_ context.Context, ev event.Event[int]) error { got.add(ev.Topic); return nil })
	topics := []string{"a", "user.registered", "user.email.changed", "Ünïcode.名前", "a-b_c:d/e", strings.Repeat("a", 255)}
	for _, topic := range topics {
		publish(t, b, topic, 1)
	}
	if !slices.Equal(got.get(), topics) {
		t.Errorf("delivered topics %q, want %q", got.get(), topics)
	}
}

func TestSubscribeRejectsInvalidPatterns(t *testing.T) {
	t.Parallel()
	b := newBus[int](t)
	h := func(context.Context, event.Event[int]) error { return nil }
	for _, pattern := range []string{
		"",
		"user..registered",
		"user.",
		".user",
		"user.>.changed",
		">.user",
		"user.reg*",
		"user.>x",
		"user registered",
		"user\x00",
		strings.Repeat("a", 256),
	} {
		s, err := event.Subscribe(b, pattern, h)
		if !errors.Is(err, event.ErrInvalidTopic) {
			t.Errorf("Subscribe(%q) = %v, want ErrInvalidTopic", pattern, err)
			if s != nil {
				s.Unsubscribe()
			}
			continue
		}
		if s != nil {
			t.Errorf("Subscribe(%q) returned a subscription with its error", pattern)
		}
	}
	if subs := b.Stats().Subscribers; len(subs) != 0 {
		t.Errorf("invalid patterns registered: %v", subs)
	}
}

// TestSubscribeRejectsInvalidNames checks that a name a store could not
// keep with a checkpoint or dead letter is refused at Subscribe, and that an
// empty durable name is not taken to mean "not durable".
func TestSubscribeRejectsInvalidNames(t *testing.T) {
	t.Parallel()
	b := newBus[int](t, event.WithStore(openSQLite(t)))
	h := func(context.Context, event.Event[int]) error { return nil }
	for _, tc := range []struct {
		what string
		opt  event.SubscribeOption
	}{
		{"name with a NUL byte", event.Name("audit\x00")},
		{"name that is not UTF-8", event.Name("audit\xff")},
		{"empty durable name", event.Durable("")},
		{"durable name with a NUL byte", event.Durable("audit\x00")},
		{"durable name that is not UTF-8", event.Durable("\xc3")},
	} {
		s, err := event.Subscribe(b, "user.>", h, tc.opt)
		if !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("Subscribe with a %s = %v, want an error matching store.ErrInvalidName", tc.what, err)
			if s != nil {
				s.Unsubscribe()
			}
		}
	}
	if subs := b.Stats().Subscribers; len(subs) != 0 {
		t.Errorf("subscriptions with invalid names registered: %v", subs)
	}
	s, err := event.Subscribe(b, "user.>", h, event.Name("audit · ünïcode"))
	if err != nil {
		t.Fatalf("Subscribe with a valid UTF-8 name: %v", err)
	}
	s.Unsubscribe()
}

func TestSubscribeNilHandlerPanics(t *testing.T) {
	t.Parallel()
	b := newBus[any](t)
	for name, f := range map[string]func(){
		"Subscribe same type": func() { event.Subscribe[any](b, "a", nil) },
		"Subscribe typed":     func() { event.Subscribe[string](b, "a", nil) },
		"Handle":              func() { b.Handle("a", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with a nil handler did not panic", name)
				}
			}()
			f()
		}()
	}
	if subs := b.Stats().Subscribers; len(subs) != 0 {
		t.Errorf("nil handlers registered: %v", subs)
	}
}

// TestPatternMatching checks the wildcard semantics through real
// deliveries: every subscription must get exactly the topics it matches.
func TestPatternMatching(t *testing.T) {
	t.Parallel()
	topics := []string{"user", "user.registered", "user.email.changed", "user.registered.v2", "usr.registered", "order.placed"}
	want := map[string][]string{
		"user.registered":   {"user.registered"},
		"user":              {"user"},
		"user.*":            {"user.registered"},
		"user.>":            {"user.registered", "user.email.changed", "user.registered.v2"},
		"*.registered":      {"user.registered", "usr.registered"},
		"*":                 {"user"},
		"*.*":               {"user.registered", "usr.registered", "order.placed"},
		">":                 topics,
		"user.*.changed":    {"user.email.changed"},
		"*.>":               {"user.registered", "user.email.changed", "user.registered.v2", "usr.registered", "order.placed"},
		"order.>":           {"order.placed"},
		"user.registered.>": {"user.registered.v2"},
	}
	b := newBus[string](t)
	got := make(map[string]*record[string])
	for pattern := range want {
		r := &record[string]{}
		got[pattern] = r
		subscribe(t, b, pattern, func(_ context.Context, ev event.Event[string]) error {
			if ev.Payload != ev.Topic {
				t.Errorf("payload %q on topic %q", ev.Payload, ev.Topic)
			}
			r.add(ev.Topic)
			return nil
		})
	}
	for _, topic := range topics {
		publish(t, b, topic, topic)
	}
	closeBus(t, b)
	for pattern, w := range want {
		g := got[pattern].get()
		slices.Sort(g)
		w = slices.Sorted(slices.Values(w))
		if !slices.Equal(g, w) {
			t.Errorf("pattern %q got %q, want %q", pattern, g, w)
		}
	}
}

// Payload types for a bus carrying many event types.
type (
	domainEvent      interface{ eventName() string }
	userRegisteredEv struct{ Email string }
	userRenamedEv    struct{ Name string }
	userDeletedEv    struct{}
)

func (userRegisteredEv) eventName() string { return "registered" }
func (userRenamedEv) eventName() string    { return "renamed" }
func (userDeletedEv) eventName() string    { return "deleted" }

func TestTypedSubscriptionOnInterfaceBus(t *testing.T) {
	t.Parallel()
	var dead record[event.DeadLetter]
	b := newBus[domainEvent](t, event.WithDeadLetter(func(_ context.Context, dl event.DeadLetter) { dead.add(dl) }))
	var regs record[userRegisteredEv]
	var renames, all record[string]
	subscribe(t, b, "user.>", func(_ context.Context, ev event.Event[userRegisteredEv]) error {
		regs.add(ev.Payload)
		if ev.Payload.Email == "fail@x" {
			return errors.New("refused")
		}
		return nil
	}, event.Name("registrations"))
	subscribe(t, b, "user.>", func(_ context.Context, ev event.Event[*userRenamedEv]) error {
		renames.add(ev.Payload.Name)
		return nil
	})
	subscribe(t, b, "user.*", func(_ context.Context, ev event.Event[domainEvent]) error {
		all.add(ev.Payload.eventName())
		return nil
	})
	publish[domainEvent](t, b, "user.registered", userRegisteredEv{Email: "a@x"})
	publish[domainEvent](t, b, "user.renamed", &userRenamedEv{Name: "pointer"})
	publish[domainEvent](t, b, "user.renamed", userRenamedEv{Name: "value"}) // the *userRenamedEv handler takes it too
	publish[domainEvent](t, b, "user.registered", userRegisteredEv{Email: "fail@x"})
	publish[domainEvent](t, b, "user.x.deleted", userDeletedEv{}) // matches no handler's type
	publish[domainEvent](t, b, "user.deleted", userDeletedEv{})   // only the interface handler
	closeBus(t, b)

	g := regs.get()
	slices.SortFunc(g, func(a, b userRegisteredEv) int { return strings.Compare(a.Email, b.Email) })
	if !slices.Equal(g, []userRegisteredEv{{"a@x"}, {"fail@x"}}) {
		t.Errorf("registration handler got %v", g)
	}
	g2 := renames.get()
	slices.Sort(g2)
	if !slices.Equal(g2, []string{"pointer", "value"}) {
		t.Errorf("*userRenamedEv handler got %q", g2)
	}
	all2 := all.get()
	slices.Sort(all2)
	if !slices.Equal(all2, []string{"deleted", "registered", "registered", "renamed", "renamed"}) {
		t.Errorf("interface handler got %q", all2)
	}
	st := b.Stats()
	if st.Published != 6 || st.NoSubscriber != 1 {
		t.Errorf("Published %d NoSubscriber %d, want 6 and 1", st.Published, st.NoSubscriber)
	}
	if st.Delivered != 9 || st.Processed != 8 || st.Failed != 1 {
		t.Errorf("Delivered %d Processed %d Failed %d, want 9, 8, 1", st.Delivered, st.Processed, st.Failed)
	}
	dls := dead.get()
	if len(dls) != 1 || dls[0].Subscription != "registrations" {
		t.Fatalf("dead letters %+v, want one from registrations", dls)
	}
	if p, ok := dls[0].Event.Payload.(userRegisteredEv); !ok || p.Email != "fail@x" {
		t.Errorf("dead letter payload %#v, want the userRegisteredEv", dls[0].Event.Payload)
	}
}

func TestTypedSubscriptionOnAnyBus(t *testing.T) {
	t.Parallel()
	b := newBus[any](t, event.WithSync())
	var strs record[string]
	var anys record[any]
	subscribe(t, b, "t", func(_ context.Context, ev event.Event[string]) error { strs.add(ev.Payload); return nil })
	subscribe(t, b, "t", func(_ context.Context, ev event.Event[any]) error { anys.add(ev.Payload); return nil })
	subscribe(t, b, "only.ints", func(_ context.Context, ev event.Event[int]) error { return nil })
	publish[any](t, b, "t", "s")
	publish[any](t, b, "t", 1)
	publish[any](t, b, "t", nil)
	publish[any](t, b, "only.ints", "not an int")
	if g := strs.get(); !slices.Equal(g, []string{"s"}) {
		t.Errorf("string handler got %q", g)
	}
	if g := anys.get(); len(g) != 3 || g[0] != "s" || g[1] != 1 || g[2] != nil {
		t.Errorf("any handler got %v, want [s 1 <nil>]", g)
	}
	if st := b.Stats(); st.NoSubscriber != 1 || st.Published != 4 {
		t.Errorf("Published %d NoSubscriber %d, want 4 and 1", st.Published, st.NoSubscriber)
	}
}

// TestUnsubscribe checks that no delivery to a subscription starts after
// Unsubscribe returns, even for events already queued, while other
// subscriptions keep theirs.
func TestUnsubscribe(t *testing.T) {
	t.Parallel()
	b := newBus[int](t, event.WithWorkers(1))
	gate := make(chan struct{})
	entered := make(chan int, 1)
	var first, second, third atomic.Int64
	// Subscriptions run in the order they were made, so while the one
	// worker is held in the first handler, the second's deliveries of
	// every queued event are still to start.
	subscribe(t, b, "a", func(_ context.Context, ev event.Event[int]) error {
		if ev.Payload == 0 {
			entered <- ev.Payload
			<-gate
		}
		first.Add(1)
		return nil
	})
	s := subscribe(t, b, "a", func(context.Context, event.Event[int]) error { second.Add(1); return nil }, event.Name("second"))
	subscribe(t, b, "a", func(context.Context, event.Event[int]) error { third.Add(1); return nil })
	if s.Name() != "second" || s.Pattern() != "a" {
		t.Errorf("Name %q Pattern %q", s.Name(), s.Pattern())
	}
	for i := range 5 {
		publish(t, b, "a", i, event.Aggregate(fmt.Sprint(i%2)))
	}
	recv(t, entered, "the first handler")
	s.Unsubscribe()
	s.Unsubscribe() // idempotent
	if got := b.Stats().Subscribers["a"]; got != 2 {
		t.Errorf("Subscribers[a] = %d after unsubscribing one of three twice, want 2", got)
	}
	close(gate)
	publish(t, b, "a", 5)
	closeBus(t, b)
	if second.Load() != 0 {
		t.Errorf("unsubscribed handler got %d deliveries", second.Load())
	}
	if first.Load() != 6 || third.Load() != 6 {
		t.Errorf("other handlers got %d and %d events, want 6 each", first.Load(), third.Load())
	}
}

func TestSubscribeAfterClose(t *testing.T) {
	t.Parallel()
	b := newBus[int](t)
	closeBus(t, b)
	_, err := event.Subscribe(b, "a", func(context.Context, event.Event[int]) error { return nil })
	if !errors.Is(err, event.ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
}

// A handler whose type no payload of the bus can have is refused, rather
// than registered to receive nothing.
func TestSubscribeRefusesImpossibleType(t *testing.T) {
	t.Parallel()
	nop := func(context.Context, event.Event[string]) error { return nil }
	ints := newBus[int](t)
	if _, err := event.Subscribe(ints, ">", nop); err == nil || !strings.Contains(err.Error(), "never receives") {
		t.Fatalf("Subscribe[string] on Bus[int]: %v", err)
	}
	stringers := newBus[fmt.Stringer](t)
	if _, err := event.Subscribe(stringers, ">", nop); err == nil {
		t.Fatal("Subscribe[string] on a bus of fmt.Stringer accepted: a string is never a Stringer")
	}
	// Possible pairings are accepted.
	if _, err := event.Subscribe(newBus[any](t), ">", nop); err != nil {
		t.Fatal(err)
	}
	if _, err := event.Subscribe(newBus[time.Duration](t), ">", func(context.Context, event.Event[fmt.Stringer]) error { return nil }); err != nil {
		t.Fatal(err)
	}
}
