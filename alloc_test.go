package event_test

import (
	"context"
	"testing"

	"github.com/ncore-io/event"
)

// TestPublishAllocations checks what one Publish allocates: the delivery
// of a queued event, or only the handlers' context for a synchronous one,
// whose event stays in the publisher's frame.
func TestPublishAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	type payload struct{ N int }
	ctx := context.Background()
	cases := []struct {
		name string
		opts []event.Option
		sub  []event.SubscribeOption
		want float64
	}{
		{"sync bus", []event.Option{event.WithSync()}, nil, 1},
		{"sync subscription on an async bus", nil, []event.SubscribeOption{event.Sync()}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBus[payload](t, c.opts...)
			n := 0
			subscribe(t, b, "a.b", func(context.Context, event.Event[payload]) error { n++; return nil }, c.sub...)
			got := testing.AllocsPerRun(1000, func() {
				if err := b.Publish(ctx, "a.b", payload{N: 1}); err != nil {
					t.Fatal(err)
				}
			})
			if got > c.want {
				t.Errorf("Publish allocates %.1f times per event, want at most %.0f", got, c.want)
			}
			if n == 0 {
				t.Error("the handler did not run")
			}
		})
	}
}
