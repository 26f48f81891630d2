package event_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// Redrive looks up the one dead letter it is given, by subscription and
// event ID, and touches no other.
func TestRedriveOneOfMany(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		bus := newStoreBus[Registered](t, open(t), event.WithSync())
		var broken atomic.Bool
		broken.Store(true)
		var handled atomic.Int64
		h := func(ctx context.Context, ev event.Event[Registered]) error {
			if broken.Load() {
				return errors.New("down")
			}
			handled.Add(1)
			return nil
		}
		noRetry := event.Retry(event.RetryPolicy{MaxRetries: 0})
		event.Subscribe(bus, "user.registered", h, event.Name("mailer"), noRetry)
		event.Subscribe(bus, "user.registered", h, event.Name("billing"), noRetry)
		for i := range 5 {
			bus.Publish(ctx, "user.registered", Registered{N: i})
		}
		dls, err := bus.DeadLetters(ctx, "mailer", 0)
		if err != nil || len(dls) != 5 {
			t.Fatalf("DeadLetters(mailer) = %d, %v; want 5", len(dls), err)
		}
		broken.Store(false)
		id := dls[2].Record.ID
		if err := bus.Redrive(ctx, "mailer", id); err != nil {
			t.Fatalf("Redrive(mailer, %s): %v", id, err)
		}
		if n := handled.Load(); n != 1 {
			t.Fatalf("Redrive handled %d events, want 1", n)
		}
		left, _ := bus.DeadLetters(ctx, "mailer", 0)
		var ids []string
		for _, d := range left {
			ids = append(ids, d.Record.ID)
		}
		if want := []string{dls[0].Record.ID, dls[1].Record.ID, dls[3].Record.ID, dls[4].Record.ID}; !slices.Equal(ids, want) {
			t.Fatalf("mailer's dead letters after Redrive = %v, want %v", ids, want)
		}
		if b, _ := bus.DeadLetters(ctx, "billing", 0); len(b) != 5 {
			t.Fatalf("billing has %d dead letters after mailer's Redrive, want 5", len(b))
		}
		if err := bus.Redrive(ctx, "mailer", id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second Redrive of %s: %v, want ErrNotFound", id, err)
		}
		if err := bus.Redrive(ctx, "", dls[0].Record.ID); !errors.Is(err, store.ErrInvalidName) {
			t.Fatalf("Redrive without a subscription: %v, want ErrInvalidName", err)
		}
		if err := bus.Redrive(ctx, "mailer", ""); !errors.Is(err, store.ErrInvalidName) {
			t.Fatalf("Redrive without an event ID: %v, want ErrInvalidName", err)
		}
	})
}

// A handler error whose text is not valid UTF-8 or holds NUL bytes, which
// stores refuse, still leaves a dead letter, with those bytes replaced.
func TestDeadLetterOfBinaryError(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		bus := newStoreBus[Registered](t, open(t), event.WithSync())
		event.Subscribe(bus, "user.registered", func(context.Context, event.Event[Registered]) error {
			return errors.New("bad frame \x00\xff\xfe end")
		}, event.Name("decoder"), event.Retry(event.RetryPolicy{MaxRetries: 0}))
		bus.Publish(ctx, "user.registered", Registered{N: 1})
		dls, err := bus.DeadLetters(ctx, "decoder", 0)
		if err != nil || len(dls) != 1 {
			t.Fatalf("DeadLetters = %d, %v; want 1 (stats %+v)", len(dls), err, bus.Stats())
		}
		if want := "bad frame \uFFFD\uFFFD end"; dls[0].Error != want {
			t.Fatalf("dead letter error = %q, want %q", dls[0].Error, want)
		}
	})
}
