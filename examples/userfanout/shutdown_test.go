package main

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store/sqlitestore"
)

// drain waits until a durable subscription has handled the events stored
// through the outbox, which Bus.Close does not wait for; when its context
// ends first, it says how many are left.
func TestDrain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	bus, err := event.New[int](event.WithStore(s))
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close(ctx)
	release := make(chan struct{})
	sub, err := event.Subscribe(bus, "user.>", func(ctx context.Context, ev event.Event[int]) error {
		<-release
		return nil
	}, event.Durable("slow"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := event.Subscribe(bus, "order.>", func(ctx context.Context, ev event.Event[int]) error { return nil }, event.Durable("other"))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := bus.PublishTx(ctx, tx, "user.registered", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	left, err := drain(short, bus, s, []*event.Subscription{sub, other})
	if !errors.Is(err, context.DeadlineExceeded) || len(left) != 1 || left["slow"] != 3 {
		t.Errorf("drain with a subscription held up = %v, %v; want 3 left for slow, none for other, and the deadline", left, err)
	}
	close(release)
	long, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if left, err := drain(long, bus, s, []*event.Subscription{sub, other}); err != nil || left != nil {
		t.Errorf("drain after the release = %v, %v; want nothing left", left, err)
	}
}
