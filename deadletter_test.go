package event_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
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

func TestDeadLettersStoredAndRedriven(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		bus := newStoreBus[Registered](t, open(t), event.WithSync())
		var mu sync.Mutex
		broken := true
		var handled []int
		event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[Registered]) error {
			mu.Lock()
			defer mu.Unlock()
			if broken {
				return errors.New("mail server down")
			}
			handled = append(handled, ev.Payload.N)
			return nil
		}, event.Name("mailer"), event.Retry(event.RetryPolicy{MaxRetries: 1, InitialInterval: time.Millisecond}))
		for i := range 3 {
			bus.Publish(ctx, "user.registered", Registered{N: i})
		}
		dls, err := bus.DeadLetters(ctx, "mailer", 0)
		if err != nil || len(dls) != 3 {
			t.Fatalf("DeadLetters = %d, %v; want 3", len(dls), err)
		}
		if dls[0].Attempts != 2 || dls[0].Error != "mail server down" || dls[0].Subscription != "mailer" {
			t.Fatalf("dead letter %+v", dls[0])
		}
		if st := bus.Stats(); st.Failed != 3 || st.DeadLettered != 3 {
			t.Fatalf("stats %+v", st)
		}
		// Still broken: re-driving fails and keeps the dead letter.
		if err := bus.Redrive(ctx, "mailer", dls[0].Record.ID); err == nil {
			t.Fatal("Redrive succeeded while the handler fails")
		}
		mu.Lock()
		broken = false
		mu.Unlock()
		if err := bus.Redrive(ctx, "mailer", dls[0].Record.ID); err != nil {
			t.Fatal(err)
		}
		n, err := bus.RedriveAll(ctx, "mailer")
		if err != nil || n != 2 {
			t.Fatalf("RedriveAll = %d, %v", n, err)
		}
		if dls, _ := bus.DeadLetters(ctx, "mailer", 0); len(dls) != 0 {
			t.Fatalf("%d dead letters left after re-driving", len(dls))
		}
		if len(handled) != 3 {
			t.Fatalf("handled %v after re-driving", handled)
		}
		if err := bus.Redrive(ctx, "mailer", dls0ID(dls)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Redrive of a missing dead letter: %v", err)
		}
	})
}

func dls0ID(dls []store.DeadLetterRecord) string {
	if len(dls) > 0 {
		return dls[0].Record.ID
	}
	return "0190c6a8-0000-7000-8000-000000000000"
}

// A durable subscription does not move past a failed event whose dead
// letter the store could not keep: it delivers it again later.
func TestDurableKeepsEventWhenDeadLetterFails(t *testing.T) {
	ctx := t.Context()
	s := &flakyDeadLetters{Store: openSQLite(t).(*sqlitestore.Store)}
	s.down.Store(true)
	bus := newStoreBus[Registered](t, s)
	var attempts atomic.Int64
	event.Subscribe(bus, ">", func(ctx context.Context, ev event.Event[Registered]) error {
		if attempts.Add(1) == 3 {
			s.down.Store(false) // the database is back for the third delivery
		}
		return errors.New("handler fails")
	}, event.Durable("billing"))
	bus.Publish(ctx, "user.registered", Registered{N: 1})
	deadline := time.Now().Add(10 * time.Second)
	for {
		dls, err := bus.DeadLetters(ctx, "billing", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(dls) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter stored after %d attempts", attempts.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := attempts.Load(); n < 3 {
		t.Fatalf("event delivered %d times; it must be delivered again while its dead letter cannot be stored", n)
	}
}

// flakyDeadLetters is a real SQLite store whose dead-letter writes fail
// while down is set, as when the database is briefly unreachable.
type flakyDeadLetters struct {
	*sqlitestore.Store
	down atomic.Bool
}

func (f *flakyDeadLetters) PutDeadLetter(ctx context.Context, d store.DeadLetterRecord) error {
	if f.down.Load() {
		return errors.New("database unreachable")
	}
	return f.Store.PutDeadLetter(ctx, d)
}
