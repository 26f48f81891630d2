package eventtest_test

import (
	"context"
	"testing"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventtest"
)

// BenchmarkMockBusPublish measures what recording costs over its baseline,
// BenchmarkSyncBusPublish: a synchronous bus with one no-op subscription,
// which is what a MockBus wraps.
func BenchmarkMockBusPublish(b *testing.B) {
	bus := eventtest.NewMockBus[int]()
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := bus.Publish(ctx, "bench.topic", i); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSyncBusPublish(b *testing.B) {
	bus, err := event.New[int](event.WithSync())
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close(context.Background())
	if _, err := event.Subscribe(bus, ">", func(context.Context, event.Event[int]) error { return nil }); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := bus.Publish(ctx, "bench.topic", i); err != nil {
			b.Fatal(err)
		}
	}
}
