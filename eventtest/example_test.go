package eventtest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventtest"
)

// RequirePublished is called from a test function: it returns the event,
// typed, for the test to check its fields, and stops the test with a list of
// what was published if there is not exactly one.
func ExampleRequirePublished() {
	testCreateUser := func(t *testing.T) {
		bus := eventtest.NewMockBus[any]()
		svc := NewUserService(bus)
		if _, err := svc.CreateUser(t.Context(), "ada@example.com"); err != nil {
			t.Fatal(err)
		}
		ev := eventtest.RequirePublished[UserRegistered](t, bus, "user.registered")
		if ev.Payload.Email != "ada@example.com" {
			t.Errorf("registered %q, want ada@example.com", ev.Payload.Email)
		}
		eventtest.RequireNotPublished(t, bus, "user.deleted")
	}
	_ = testCreateUser
}

// FailNext makes the service's publish fail, to test its error path.
func ExampleMockBus_FailNext() {
	bus := eventtest.NewMockBus[any]()
	svc := NewUserService(bus)
	errBroker := errors.New("broker unavailable")
	bus.FailNext(errBroker)

	_, err := svc.CreateUser(context.Background(), "ada@example.com")
	fmt.Println(err)
	fmt.Println("is broker error:", errors.Is(err, errBroker))
	fmt.Println("published:", bus.PublishedCount("user.registered"))
	fmt.Println("failed publishes:", len(bus.FailedPublishes()))
	// Output:
	// create user ada@example.com: broker unavailable
	// is broker error: true
	// published: 0
	// failed publishes: 1
}

// With RunHandlers, handlers registered on the mock run inside Publish, and
// the events they publish record their cause.
func ExampleRunHandlers() {
	ctx := context.Background()
	bus := eventtest.NewMockBus[any](eventtest.RunHandlers())
	_, err := bus.Handle("user.registered", func(ctx context.Context, ev event.Event[any]) error {
		reg := ev.Payload.(UserRegistered)
		return bus.Publish(ctx, "email.welcome", "welcome "+reg.Email)
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _ = bus.Handle("email.welcome", func(context.Context, event.Event[any]) error {
		return errors.New("smtp down")
	}, event.Name("mailer"))

	if _, err := NewUserService(bus).CreateUser(ctx, "ada@example.com"); err != nil {
		fmt.Println(err)
		return
	}
	all := bus.All()
	for _, ev := range all {
		fmt.Println(ev.Topic, ev.Payload)
	}
	fmt.Println("caused by registration:", all[1].CausationID == all[0].ID)
	fmt.Println("handler errors:", len(bus.HandlerErrors()))
	// Output:
	// user.registered {u1 ada@example.com}
	// email.welcome welcome ada@example.com
	// caused by registration: true
	// handler errors: 1
}

// On a real, asynchronous bus, a test watches for the events its handlers
// publish and waits for them with a deadline instead of sleeping.
func ExampleRequireReceived() {
	testWelcomeMail := func(t *testing.T) {
		bus, err := event.New[any]()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bus.Close(context.Background()) })
		_, err = event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
			return bus.Publish(ctx, "email.welcome", "welcome "+ev.Payload.Email)
		})
		if err != nil {
			t.Fatal(err)
		}

		w := eventtest.Watch(t, bus, "email.>")
		if _, err := NewUserService(bus).CreateUser(t.Context(), "ada@example.com"); err != nil {
			t.Fatal(err)
		}
		// Waits until the handler has run, for at most 5s (or t.Context's
		// deadline), then fails the test listing what the watcher saw.
		ev := eventtest.RequireReceived[string](t.Context(), t, w, "email.welcome")
		if ev.Payload != "welcome ada@example.com" {
			t.Errorf("sent %q", ev.Payload)
		}
	}
	_ = testWelcomeMail
}

// Next returns a watched event at a time, in publish order, waiting for
// each with a deadline.
func ExampleWatcher_Next() {
	// t is the test's *testing.T; Watch unsubscribes when the test ends.
	testAudit := func(t *testing.T) {
		bus, err := event.New[string]()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bus.Close(context.Background()) })
		w := eventtest.Watch(t, bus, "audit.*")
		for _, action := range []string{"login", "logout"} {
			if err := bus.Publish(t.Context(), "audit."+action, action); err != nil {
				t.Fatal(err)
			}
		}
		for _, want := range []string{"login", "logout"} {
			ev, err := w.Next(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if ev.Payload != want {
				t.Errorf("got %q, want %q", ev.Payload, want)
			}
		}
	}
	_ = testAudit
}
