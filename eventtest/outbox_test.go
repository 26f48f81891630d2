package eventtest_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventtest"
	"github.com/ncore-io/event/store/sqlitestore"
)

type signup struct{ Email string }

// A service that publishes in its transaction depends on event.TxPublisher;
// its unit test gives it a MockBus, which records the publish.
func TestMockBusPublishTx(t *testing.T) {
	t.Parallel()
	var _ event.TxPublisher[any] = eventtest.NewMockBus[any]()
	bus := eventtest.NewMockBus[any](eventtest.RunHandlers())
	var handled []string
	if _, err := event.Subscribe(bus, "user.>", func(ctx context.Context, ev event.Event[signup]) error {
		handled = append(handled, ev.Payload.Email)
		// A follow-up published by the handler is not a PublishTx.
		return bus.Publish(ctx, "mail.welcome", signup{ev.Payload.Email})
	}); err != nil {
		t.Fatal(err)
	}
	var tx struct{ fake bool } // the mock does not use the transaction
	if err := bus.PublishTx(t.Context(), &tx, "user.registered", signup{"ada@example.com"}, event.Aggregate("u-1")); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(t.Context(), "user.other", signup{"bob@example.com"}); err != nil {
		t.Fatal(err)
	}
	ev := eventtest.RequirePublished[signup](t, bus, "user.registered")
	if ev.AggregateID != "u-1" || ev.Payload.Email != "ada@example.com" {
		t.Errorf("recorded %+v", ev)
	}
	inTx := bus.PublishedTx(">")
	if len(inTx) != 1 || inTx[0].ID != ev.ID {
		t.Errorf("PublishedTx = %v, want only the user.registered event", inTx)
	}
	if len(handled) != 2 {
		t.Errorf("handler ran for %v, want the two user events", handled)
	}
	if err := bus.PublishTx(t.Context(), nil, "user.registered", signup{}); err == nil {
		t.Error("PublishTx with a nil transaction succeeded")
	}
	if f := bus.FailedPublishes(); len(f) != 1 {
		t.Errorf("FailedPublishes = %v, want the nil-transaction call", f)
	}
}

// A Watcher is an in-process subscription: on a bus with a store, its
// failure message says why an event stored with PublishTx is not seen.
func TestRequireReceivedOutboxHint(t *testing.T) {
	t.Parallel()
	s, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	bus := newBus[string](t, event.WithStore(s))
	w := eventtest.Watch(t, bus, ">")
	tx, err := s.DB().BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.PublishTx(t.Context(), tx, "user.registered", "x"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	f := runTB(func(tb testing.TB) { eventtest.RequireReceived[string](shortCtx(t), tb, w, "user.registered") })
	wantFatal(t, f, "PublishTx reach only durable subscriptions", "event.Durable")
}

// MockBus records a batch published in a transaction, and tells its
// events apart from those its handlers publish in turn.
func TestMockBusPublishBatchTx(t *testing.T) {
	t.Parallel()
	bus := eventtest.NewMockBus[any](eventtest.RunHandlers())
	if _, err := event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[signup]) error {
		return bus.Publish(ctx, "mail.welcome", ev.Payload)
	}); err != nil {
		t.Fatal(err)
	}
	var tx struct{}
	err := bus.PublishBatchTx(t.Context(), &tx, []event.Message[any]{
		{Topic: "user.registered", Payload: signup{"a@example.com"}},
		{Topic: "user.registered", Payload: signup{"b@example.com"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(bus.PublishedTx(">")); n != 2 {
		t.Errorf("PublishedTx holds %d events, want the 2 of the batch", n)
	}
	if n := bus.PublishedCount(">"); n != 4 {
		t.Errorf("recorded %d events, want the 2 and their 2 welcomes", n)
	}
	if err := bus.PublishBatchTx(t.Context(), &tx, []event.Message[any]{{Topic: "ok"}, {Topic: "bad..topic"}}); err == nil {
		t.Error("a batch with an invalid topic was published")
	}
	if n := bus.PublishedCount("ok"); n != 0 {
		t.Errorf("the refused batch recorded %d events", n)
	}
}
