package eventtest_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventtest"
)

// publishAll publishes each payload to its topic, failing t on error.
func publishAll[T any](t *testing.T, bus *eventtest.MockBus[T], pairs ...any) {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if err := bus.Publish(t.Context(), pairs[i].(string), pairs[i+1].(T)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRequirePublished(t *testing.T) {
	t.Parallel()

	t.Run("one match", func(t *testing.T) {
		t.Parallel()
		bus := eventtest.NewMockBus[any]()
		publishAll(t, bus,
			"user.registered", userRegistered{"u1", "ada@example.com"},
			"user.registered", "a string on the same topic",
			"email.sent", emailSent{"ada@example.com"})
		// With a real *testing.T: E explicit, T inferred from bus.
		ev := eventtest.RequirePublished[userRegistered](t, bus, "user.registered")
		if ev.Payload.Email != "ada@example.com" || ev.Topic != "user.registered" {
			t.Errorf("got %+v", ev)
		}
		if want := bus.Published("user.registered")[0].ID; ev.ID != want {
			t.Errorf("ID = %s, want the recorded %s", ev.ID, want)
		}
		// A pattern works too.
		if ev := eventtest.RequirePublished[emailSent](t, bus, "email.*"); ev.Payload.To != "ada@example.com" {
			t.Errorf("got %+v", ev)
		}
	})

	t.Run("typed bus", func(t *testing.T) {
		t.Parallel()
		bus := eventtest.NewMockBus[userRegistered]()
		publishAll(t, bus, "user.registered", userRegistered{"u1", "ada@example.com"})
		if ev := eventtest.RequirePublished[userRegistered](t, bus, "user.registered"); ev.Payload.ID != "u1" {
			t.Errorf("got %+v", ev)
		}
	})

	t.Run("none lists what was published", func(t *testing.T) {
		t.Parallel()
		bus := eventtest.NewMockBus[any]()
		publishAll(t, bus,
			"user.created", userRegistered{"u1", "a@example.com"},
			"user.created", userRegistered{"u2", "b@example.com"},
			"user.registered", "wrong type")
		bus.FailNext(errors.New("broker down"))
		_ = bus.Publish(t.Context(), "user.registered", userRegistered{"u3", "c@example.com"})
		f := runTB(func(tb testing.TB) {
			eventtest.RequirePublished[userRegistered](tb, bus, "user.registered")
		})
		wantFatal(t, f,
			`want 1 event(s) on "user.registered" with a payload of type eventtest_test.userRegistered, got 0`,
			"published 3 event(s)",
			"user.created (eventtest_test.userRegistered) ×2",
			"user.registered (string) ×1",
			"1 publish(es) failed",
			"user.registered (eventtest_test.userRegistered): broker down")
	})

	t.Run("nothing published", func(t *testing.T) {
		t.Parallel()
		bus := eventtest.NewMockBus[any]()
		f := runTB(func(tb testing.TB) { eventtest.RequirePublished[userRegistered](tb, bus, "user.registered") })
		wantFatal(t, f, "got 0; nothing was published")
	})

	t.Run("two is not one", func(t *testing.T) {
		t.Parallel()
		bus := eventtest.NewMockBus[any]()
		publishAll(t, bus,
			"user.registered", userRegistered{"u1", "a@example.com"},
			"user.registered", userRegistered{"u1", "a@example.com"})
		f := runTB(func(tb testing.TB) { eventtest.RequirePublished[userRegistered](tb, bus, "user.registered") })
		wantFatal(t, f, "got 2", "user.registered (eventtest_test.userRegistered) ×2")
	})

	t.Run("invalid pattern", func(t *testing.T) {
		t.Parallel()
		bus := eventtest.NewMockBus[any]()
		f := runTB(func(tb testing.TB) { eventtest.RequirePublished[userRegistered](tb, bus, "user..registered") })
		wantFatal(t, f, "RequirePublished", "user..registered")
	})
}

func TestRequirePublishedN(t *testing.T) {
	t.Parallel()
	bus := eventtest.NewMockBus[any]()
	publishAll(t, bus,
		"user.registered", userRegistered{"u1", "a@example.com"},
		"email.sent", emailSent{"a@example.com"},
		"user.registered", userRegistered{"u2", "b@example.com"})

	evs := eventtest.RequirePublishedN[userRegistered](t, bus, "user.registered", 2)
	if len(evs) != 2 || evs[0].Payload.ID != "u1" || evs[1].Payload.ID != "u2" {
		t.Errorf("got %+v, want u1 then u2", evs)
	}
	if evs := eventtest.RequirePublishedN[emailSent](t, bus, "user.registered", 0); len(evs) != 0 {
		t.Errorf("n=0 returned %v", evs)
	}

	f := runTB(func(tb testing.TB) { eventtest.RequirePublishedN[userRegistered](tb, bus, "user.registered", 3) })
	wantFatal(t, f, "want 3 event(s)", "got 2", "email.sent (eventtest_test.emailSent) ×1")

	f = runTB(func(tb testing.TB) { eventtest.RequirePublishedN[userRegistered](tb, bus, "user.registered", -1) })
	wantFatal(t, f, "n must be zero or more, got -1")
}

func TestRequirePublishedFunc(t *testing.T) {
	t.Parallel()
	bus := eventtest.NewMockBus[any]()
	publishAll(t, bus,
		"user.registered", userRegistered{"u1", "a@example.com"},
		"user.registered", userRegistered{"u2", "b@example.com"})

	byEmail := func(email string) func(event.Event[userRegistered]) bool {
		return func(ev event.Event[userRegistered]) bool { return ev.Payload.Email == email }
	}
	if ev := eventtest.RequirePublishedFunc(t, bus, "user.registered", byEmail("b@example.com")); ev.Payload.ID != "u2" {
		t.Errorf("got %+v, want u2", ev)
	}

	f := runTB(func(tb testing.TB) {
		eventtest.RequirePublishedFunc(tb, bus, "user.registered", byEmail("c@example.com"))
	})
	wantFatal(t, f, "matching the function, got 0", "user.registered (eventtest_test.userRegistered) ×2")

	f = runTB(func(tb testing.TB) {
		eventtest.RequirePublishedFunc[userRegistered](tb, bus, "user.registered", nil)
	})
	wantFatal(t, f, "nil match function")
}

func TestRequireNotPublished(t *testing.T) {
	t.Parallel()
	bus := eventtest.NewMockBus[any]()
	publishAll(t, bus, "user.registered", userRegistered{"u1", "a@example.com"})

	f := runTB(func(tb testing.TB) { eventtest.RequireNotPublished(tb, bus, "order.>") })
	wantPass(t, f)
	eventtest.RequireNotPublished(t, bus, "user.deleted") // with a real *testing.T

	f = runTB(func(tb testing.TB) { eventtest.RequireNotPublished(tb, bus, "user.*") })
	wantFatal(t, f, `want no event on "user.*", got 1`, "user.registered (eventtest_test.userRegistered) ×1")

	f = runTB(func(tb testing.TB) { eventtest.RequireNotPublished(tb, bus, "") })
	wantFatal(t, f, "RequireNotPublished", "empty pattern")
}

// TestSummaryIsReadable pins the whole failure message once, so that a
// change to its layout is a deliberate one.
func TestSummaryIsReadable(t *testing.T) {
	t.Parallel()
	bus := eventtest.NewMockBus[any]()
	publishAll(t, bus, "a.b", 1, "a.b", 2, "c.d", "x")
	f := runTB(func(tb testing.TB) { eventtest.RequirePublished[string](tb, bus, "a.b") })
	want := "eventtest: want 1 event(s) on \"a.b\" with a payload of type string, got 0; published 3 event(s):\n" +
		"\ta.b (int) ×2\n" +
		"\tc.d (string) ×1"
	if got := f.message(); got != want {
		t.Errorf("message:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(f.message(), "failed") {
		t.Error("no failed publishes, but the message mentions some")
	}
}
