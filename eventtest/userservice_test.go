package eventtest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventtest"
)

// These tests run, with a real *testing.T, the code that ExampleRequirePublished
// and ExampleRequireReceived show (examples get no *testing.T, so theirs only compile).

func TestUserService_CreateUser(t *testing.T) {
	t.Parallel()
	bus := eventtest.NewMockBus[any]()
	svc := NewUserService(bus)

	user, err := svc.CreateUser(t.Context(), "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if n := bus.PublishedCount("user.registered"); n != 1 {
		t.Fatalf("PublishedCount(user.registered) = %d, want 1", n)
	}
	ev := eventtest.RequirePublished[UserRegistered](t, bus, "user.registered")
	if ev.Payload.Email != "ada@example.com" || ev.Payload.UserID != user.ID || ev.AggregateID != user.ID {
		t.Errorf("event = %+v, want one for %+v", ev, user)
	}
	eventtest.RequireNotPublished(t, bus, "user.deleted")
}

func TestUserService_CreateUserPublishFails(t *testing.T) {
	t.Parallel()
	bus := eventtest.NewMockBus[any]()
	errBroker := errors.New("broker unavailable")
	bus.FailTopic("user.registered", errBroker)

	if _, err := NewUserService(bus).CreateUser(t.Context(), "ada@example.com"); !errors.Is(err, errBroker) {
		t.Fatalf("err = %v, want one wrapping %v", err, errBroker)
	}
	eventtest.RequireNotPublished(t, bus, "user.registered")
}

func TestUserService_WelcomeMailAsync(t *testing.T) {
	t.Parallel()
	bus := newBus[any](t)
	_, err := event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		return bus.Publish(ctx, "email.welcome", "welcome "+ev.Payload.Email)
	})
	if err != nil {
		t.Fatal(err)
	}
	w := eventtest.Watch(t, bus, "email.>")
	if _, err := NewUserService(bus).CreateUser(t.Context(), "ada@example.com"); err != nil {
		t.Fatal(err)
	}
	if ev := eventtest.RequireReceived[string](t.Context(), t, w, "email.welcome"); ev.Payload != "welcome ada@example.com" {
		t.Errorf("sent %q", ev.Payload)
	}
}
