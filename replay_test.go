package event_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// sparseLog fills st with n records that no test pattern matches, appended
// straight to the store, so that a filtered read finds nothing in its
// first stretch of the log.
func sparseLog(t *testing.T, st store.Store, n int) {
	t.Helper()
	now := time.Now()
	for i := 0; i < n; {
		batch := make([]store.Record, 0, 1000)
		for ; i < n && len(batch) < cap(batch); i++ {
			batch = append(batch, store.Record{ID: fmt.Sprintf("filler-%d", i), Topic: "common.event", Kind: store.KindDomain, Time: now, ContentType: "application/json", Payload: []byte(`{}`)})
		}
		if err := st.Append(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
}

// Replay and a durable subscription's catch-up read on past a page that a
// store returned empty with a moved cursor (a filtered read that looked at
// part of the log), rather than take it for the end. Both drivers look at
// 10,000 records per read of 500.
func TestReadPastEmptyPages(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		// Only the Store interface: no Notifier, so with an hour's poll
		// interval a subscription that waited for news would wait that long.
		st := struct{ store.Store }{open(t)}
		bus := newStoreBus[Registered](t, st, event.WithPollInterval(time.Hour))
		sparseLog(t, st, 10_000)
		if err := bus.Publish(ctx, "rare.found", Registered{N: 7}); err != nil {
			t.Fatal(err)
		}

		var got []int
		n, err := event.Replay(ctx, bus, store.Query{Topic: "rare.*"}, func(ctx context.Context, ev event.Event[Registered]) error {
			got = append(got, ev.Payload.N)
			return nil
		})
		if err != nil || n != 1 || len(got) != 1 || got[0] != 7 {
			t.Fatalf("Replay = %d, %v, delivered %v; want the one rare event", n, err, got)
		}

		delivered := make(chan int, 1)
		_, err = event.Subscribe(bus, "rare.*", func(ctx context.Context, ev event.Event[Registered]) error {
			delivered <- ev.Payload.N
			return nil
		}, event.Durable("rare"))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case v := <-delivered:
			if v != 7 {
				t.Fatalf("durable subscription got %d, want 7", v)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("durable subscription did not catch up past an empty page")
		}
	})
}
