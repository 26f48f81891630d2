package eventtest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventtest"
)

type userRegistered struct {
	ID, Email string
}

type emailSent struct{ To string }

func TestMockBusRecordsEnvelope(t *testing.T) {
	t.Parallel()
	bus := eventtest.NewMockBus[any]()
	ctx := t.Context()
	id := uuid.Must(uuid.NewV7())
	corr := uuid.Must(uuid.NewV7())
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	err := bus.Publish(ctx, "user.registered", userRegistered{"u1", "ada@example.com"},
		event.Aggregate("user-1"), event.AsKind(event.KindIntegration), event.Meta("k", "v"),
		event.EventID(id), event.EventTime(at), event.Correlation(corr))
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(ctx, "user.deleted", "u2"); err != nil {
		t.Fatal(err)
	}

	got := bus.Published("user.registered")
	if len(got) != 1 {
		t.Fatalf("Published(user.registered) = %d events, want 1", len(got))
	}
	ev := got[0]
	if ev.ID != id || ev.Topic != "user.registered" || ev.Kind != event.KindIntegration ||
		ev.AggregateID != "user-1" || !ev.Time.Equal(at) || ev.CorrelationID != corr ||
		ev.CausationID != uuid.Nil || ev.Metadata["k"] != "v" {
		t.Errorf("recorded envelope = %+v", ev)
	}
	if p, ok := ev.Payload.(userRegistered); !ok || p.Email != "ada@example.com" {
		t.Errorf("payload = %#v", ev.Payload)
	}

	// A publish without options gets a fresh ID, the time, the default kind
	// and its own correlation.
	plain := bus.Published("user.deleted")[0]
	if plain.ID == uuid.Nil || plain.CorrelationID != plain.ID || plain.Kind != event.KindDomain || plain.Time.IsZero() {
		t.Errorf("default envelope = %+v", plain)
	}

	for topic, want := range map[string]int{
		"user.registered": 1, "user.*": 2, ">": 2, "user": 0, "order.placed": 0, "user..x": 0,
	} {
		if n := bus.PublishedCount(topic); n != want {
			t.Errorf("PublishedCount(%q) = %d, want %d", topic, n, want)
		}
	}
	all := bus.All()
	if len(all) != 2 || all[0].Topic != "user.registered" || all[1].Topic != "user.deleted" {
		t.Errorf("All() topics = %v, want [user.registered user.deleted]", topics(all))
	}

	bus.Reset()
	if n := len(bus.All()); n != 0 {
		t.Errorf("after Reset, All() has %d events", n)
	}
	if err := bus.Publish(ctx, "user.registered", nil); err != nil {
		t.Fatal(err)
	}
	if n := bus.PublishedCount("user.registered"); n != 1 {
		t.Errorf("after Reset and one publish, PublishedCount = %d, want 1", n)
	}
}

func topics[T any](evs []event.Event[T]) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Topic)
	}
	return out
}

func TestMockBusConcurrentPublish(t *testing.T) {
	t.Parallel()
	const goroutines, each = 8, 250
	bus := eventtest.NewMockBus[int]()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if err := bus.Publish(context.Background(), fmt.Sprintf("load.g%d", g), i); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					_ = bus.PublishedCount("load.>") // readers race with writers too
				}
			}
		})
	}
	wg.Wait()

	all := bus.All()
	if len(all) != goroutines*each {
		t.Fatalf("recorded %d events, want %d", len(all), goroutines*each)
	}
	ids := make(map[uuid.UUID]bool, len(all))
	for _, ev := range all {
		if ids[ev.ID] {
			t.Fatalf("duplicate event ID %s", ev.ID)
		}
		ids[ev.ID] = true
	}
	// Each goroutine's events are recorded in the order it published them.
	for g := range goroutines {
		evs := bus.Published(fmt.Sprintf("load.g%d", g))
		if len(evs) != each {
			t.Fatalf("goroutine %d: %d events, want %d", g, len(evs), each)
		}
		for i, ev := range evs {
			if ev.Payload != i {
				t.Fatalf("goroutine %d: event %d has payload %d", g, i, ev.Payload)
			}
		}
	}
}

func TestMockBusFailNext(t *testing.T) {
	t.Parallel()
	bus := eventtest.NewMockBus[string]()
	ctx := t.Context()
	errA, errB := errors.New("a"), errors.New("b")
	bus.FailNext(errA)
	bus.FailNext(errB)

	if err := bus.Publish(ctx, "x.one", "1"); err != errA {
		t.Errorf("first publish: err = %v, want %v", err, errA)
	}
	if err := bus.Publish(ctx, "x.two", "2"); err != errB {
		t.Errorf("second publish: err = %v, want %v", err, errB)
	}
	if err := bus.Publish(ctx, "x.three", "3"); err != nil {
		t.Errorf("third publish: err = %v, want nil", err)
	}
	if got := topics(bus.All()); len(got) != 1 || got[0] != "x.three" {
		t.Errorf("published = %v, want only x.three", got)
	}
	failed := bus.FailedPublishes()
	if len(failed) != 2 || failed[0].Topic != "x.one" || failed[0].Payload != "1" || failed[0].Err != errA ||
		failed[1].Topic != "x.two" || failed[1].Err != errB {
		t.Errorf("FailedPublishes = %+v", failed)
	}

	// A nil entry lets one publish through, and defers to topic failures.
	bus.Reset()
	errTopic := errors.New("topic")
	bus.FailTopic("x.blocked", errTopic)
	bus.FailNext(nil)
	bus.FailNext(nil)
	bus.FailNext(errA)
	for _, c := range []struct {
		topic string
		want  error
	}{{"x.open", nil}, {"x.blocked", errTopic}, {"x.open", errA}, {"x.open", nil}} {
		if err := bus.Publish(ctx, c.topic, "p"); err != c.want {
			t.Errorf("publish %s: err = %v, want %v", c.topic, err, c.want)
		}
	}
	if n := bus.PublishedCount("x.open"); n != 2 {
		t.Errorf("PublishedCount(x.open) = %d, want 2", n)
	}
}

func TestMockBusFailTopic(t *testing.T) {
	t.Parallel()
	bus := eventtest.NewMockBus[string]()
	ctx := t.Context()
	errDown := errors.New("broker down")
	bus.FailTopic("user.*", errDown)

	if err := bus.Publish(ctx, "user.registered", "a"); err != errDown {
		t.Errorf("user.registered: err = %v, want %v", err, errDown)
	}
	if err := bus.Publish(ctx, "user.deleted", "b"); err != errDown {
		t.Errorf("user.deleted: err = %v, want %v", err, errDown)
	}
	if err := bus.Publish(ctx, "order.placed", "c"); err != nil {
		t.Errorf("order.placed: err = %v, want nil", err)
	}
	// FailNext wins over a topic failure.
	errNext := errors.New("next")
	bus.FailNext(errNext)
	if err := bus.Publish(ctx, "user.registered", "d"); err != errNext {
		t.Errorf("with FailNext: err = %v, want %v", err, errNext)
	}

	bus.FailTopic("user.*", nil)
	if err := bus.Publish(ctx, "user.registered", "e"); err != nil {
		t.Errorf("after clearing: err = %v, want nil", err)
	}
	if n := bus.PublishedCount("user.registered"); n != 1 {
		t.Errorf("PublishedCount(user.registered) = %d, want 1 (failed publishes are not published)", n)
	}
	if n := len(bus.FailedPublishes()); n != 3 {
		t.Errorf("FailedPublishes has %d entries, want 3", n)
	}

	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "user..x") {
			t.Errorf("FailTopic with an invalid pattern: recovered %v, want a panic naming it", r)
		}
	}()
	bus.FailTopic("user..x", errDown)
}

func TestMockBusBusErrors(t *testing.T) {
	t.Parallel()
	bus := eventtest.NewMockBus[string]()
	if err := bus.Publish(t.Context(), "bad topic", "x"); !errors.Is(err, event.ErrInvalidTopic) {
		t.Errorf("invalid topic: err = %v, want ErrInvalidTopic", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := bus.Publish(ctx, "ok.topic", "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: err = %v, want context.Canceled", err)
	}
	if err := bus.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(t.Context(), "ok.topic", "x"); !errors.Is(err, event.ErrClosed) {
		t.Errorf("after Close: err = %v, want ErrClosed", err)
	}
	if n := len(bus.All()); n != 0 {
		t.Errorf("%d events recorded, want 0", n)
	}
	if n := len(bus.FailedPublishes()); n != 3 {
		t.Errorf("FailedPublishes has %d entries, want 3", n)
	}
}

func TestMockBusHandlersOffByDefault(t *testing.T) {
	t.Parallel()
	bus := eventtest.NewMockBus[string]()
	called := false
	sub, err := bus.Handle("user.*", func(context.Context, event.Event[string]) error {
		called = true
		return nil
	}, event.Name("welcome"))
	if err != nil {
		t.Fatal(err)
	}
	if sub.Name() != "welcome" || sub.Pattern() != "user.*" {
		t.Errorf("subscription = %s %s", sub.Name(), sub.Pattern())
	}
	if err := bus.Publish(t.Context(), "user.registered", "x"); err != nil {
		t.Fatal(err)
	}
	if called {
		t.Error("handler ran without RunHandlers")
	}
	if subs := bus.Subscriptions(); len(subs) != 1 || subs[0] != sub {
		t.Errorf("Subscriptions = %v, want [%v]", subs, sub)
	}

	if _, err := bus.Handle("user..x", func(context.Context, event.Event[string]) error { return nil }); !errors.Is(err, event.ErrInvalidTopic) {
		t.Errorf("invalid pattern: err = %v, want ErrInvalidTopic", err)
	}
	if n := len(bus.Subscriptions()); n != 1 {
		t.Errorf("a failed Handle was listed: %d subscriptions", n)
	}
}

func TestMockBusRunHandlers(t *testing.T) {
	t.Parallel()
	bus := eventtest.NewMockBus[any](eventtest.RunHandlers())
	var handled []string
	_, err := bus.Handle("user.registered", func(ctx context.Context, ev event.Event[any]) error {
		u := ev.Payload.(userRegistered)
		handled = append(handled, u.Email)
		return bus.Publish(ctx, "email.sent", emailSent{To: u.Email})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(t.Context(), "user.registered", userRegistered{"u1", "ada@example.com"}); err != nil {
		t.Fatal(err)
	}
	// Handlers are synchronous: done by the time Publish returns.
	if len(handled) != 1 || handled[0] != "ada@example.com" {
		t.Fatalf("handled = %v", handled)
	}
	all := bus.All()
	if got := topics(all); len(got) != 2 || got[0] != "user.registered" || got[1] != "email.sent" {
		t.Fatalf("recorded %v, want [user.registered email.sent]", got)
	}
	if all[1].CausationID != all[0].ID || all[1].CorrelationID != all[0].CorrelationID {
		t.Errorf("follow-up event: causation %s correlation %s; want %s and %s",
			all[1].CausationID, all[1].CorrelationID, all[0].ID, all[0].CorrelationID)
	}
	if errs := bus.HandlerErrors(); len(errs) != 0 {
		t.Errorf("HandlerErrors = %v", errs)
	}
}

func TestMockBusHandlerErrors(t *testing.T) {
	t.Parallel()
	errSMTP := errors.New("smtp unavailable")
	setup := func(opts ...eventtest.Option) *eventtest.MockBus[string] {
		bus := eventtest.NewMockBus[string](append(opts, eventtest.RunHandlers())...)
		if _, err := bus.Handle("user.registered", func(context.Context, event.Event[string]) error { return errSMTP }, event.Name("welcome-mail")); err != nil {
			t.Fatal(err)
		}
		if _, err := bus.Handle("user.deleted", func(context.Context, event.Event[string]) error { panic("nil map") }); err != nil {
			t.Fatal(err)
		}
		return bus
	}

	t.Run("recorded", func(t *testing.T) {
		t.Parallel()
		bus := setup()
		if err := bus.Publish(t.Context(), "user.registered", "u1"); err != nil {
			t.Errorf("a handler's failure is not Publish's: err = %v", err)
		}
		if err := bus.Publish(t.Context(), "user.deleted", "u1"); err != nil {
			t.Errorf("a handler's panic is not Publish's: err = %v", err)
		}
		errs := bus.HandlerErrors()
		if len(errs) != 2 {
			t.Fatalf("HandlerErrors = %v, want 2", errs)
		}
		if !errors.Is(errs[0], errSMTP) || !strings.Contains(errs[0].Error(), `"welcome-mail"`) || !strings.Contains(errs[0].Error(), "user.registered") {
			t.Errorf("first error = %v", errs[0])
		}
		var pe *event.PanicError
		if !errors.As(errs[1], &pe) || pe.Value != "nil map" {
			t.Errorf("second error = %v, want a PanicError", errs[1])
		}
		// The event was published even though its handler failed.
		if n := bus.PublishedCount("user.*"); n != 2 {
			t.Errorf("PublishedCount = %d, want 2", n)
		}
		bus.Reset()
		if n := len(bus.HandlerErrors()); n != 0 {
			t.Errorf("after Reset, %d handler errors", n)
		}
	})

	t.Run("reported to tb", func(t *testing.T) {
		t.Parallel()
		f := runTB(func(tb testing.TB) {
			bus := setup(eventtest.WithTB(tb))
			_ = bus.Publish(context.Background(), "user.registered", "u1")
		})
		if f.fatal || f.stopped {
			t.Errorf("a handler failure must be reported with Errorf, not stop the publisher")
		}
		msg := f.message()
		for _, want := range []string{`"welcome-mail"`, "user.registered", "smtp unavailable", "1 attempt"} {
			if !strings.Contains(msg, want) {
				t.Errorf("report does not contain %q:\n%s", want, msg)
			}
		}
	})

	t.Run("retries first", func(t *testing.T) {
		t.Parallel()
		bus := eventtest.NewMockBus[string](eventtest.RunHandlers())
		calls := 0
		_, err := bus.Handle("job.run", func(context.Context, event.Event[string]) error {
			calls++
			if calls < 3 {
				return errSMTP
			}
			return nil
		}, event.Retry(event.RetryPolicy{MaxRetries: 2, InitialInterval: time.Microsecond, Jitter: -1}))
		if err != nil {
			t.Fatal(err)
		}
		if err := bus.Publish(t.Context(), "job.run", "x"); err != nil {
			t.Fatal(err)
		}
		if calls != 3 || len(bus.HandlerErrors()) != 0 {
			t.Errorf("calls = %d, handler errors = %v; want 3 calls and none", calls, bus.HandlerErrors())
		}
	})
}

// A typed handler on a mock of an interface type receives only its type.
func TestSubscribeTypedOnInterfaceMock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := eventtest.NewMockBus[any](eventtest.RunHandlers())
	var got []string
	if _, err := event.Subscribe(m, "user.>", func(ctx context.Context, ev event.Event[string]) error {
		got = append(got, ev.Payload)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	m.Publish(ctx, "user.a", "one")
	m.Publish(ctx, "user.b", 2)
	m.Publish(ctx, "user.c", "three")
	if !slices.Equal(got, []string{"one", "three"}) {
		t.Fatalf("typed handler got %v", got)
	}
	if n := m.PublishedCount("user.>"); n != 3 {
		t.Fatalf("PublishedCount = %d, want 3", n)
	}
	// Without RunHandlers the subscription is registered but does not run.
	quiet := eventtest.NewMockBus[any]()
	ran := false
	event.Subscribe(quiet, ">", func(ctx context.Context, ev event.Event[string]) error { ran = true; return nil })
	quiet.Publish(ctx, "x", "y")
	if ran || len(quiet.Subscriptions()) != 1 {
		t.Fatalf("handler ran without RunHandlers (%v) or was not registered", ran)
	}
}
