package benchmarks_test

import (
	"context"
	"encoding/binary"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	eventbus "github.com/asaskevich/EventBus"

	"github.com/ncore-io/event"
)

// In-memory benchmarks: from the first publish until every handler has
// handled every event, on this library and on:
//
//   - chan: a buffered channel (1000, the bus's default buffer) feeding 10
//     goroutines (the bus's default workers) that call the handlers
//     directly, the least an asynchronous bus can cost; for per-key order,
//     10 channels, one per worker, picked by key;
//   - map: a map[string][]func under a sync.RWMutex, the least a
//     synchronous bus can cost;
//   - watermill-gochannel: Watermill's in-process Pub/Sub with its default
//     config, 10 goroutines reading each subscription's channel and acking;
//   - watermill-gochannel-block: the same with
//     BlockPublishUntilSubscriberAck, so Publish returns once every
//     subscriber acked (which also keeps order);
//   - eventbus-async / eventbus-sync / eventbus-transactional:
//     asaskevich/EventBus with SubscribeAsync (one goroutine per event and
//     handler), Subscribe, and SubscribeAsync with transactional=true (one
//     event at a time per handler, in order).
//
// Every handler records the event's number; the benchmark fails unless
// each handler saw each event exactly once (and, for the ordered workload,
// each key's events in publish order).

const (
	topic   = "user.registered"
	workers = event.DefaultWorkers
)

type userEvent struct {
	N      int
	UserID string
}

// inmemImpl is one implementation of the in-memory workloads. start sets it
// up with handlers handlers, each calling hit(handler, n) for event n, and
// returns how to publish event i and how to tear down once all is handled.
// keys > 0 asks for per-key order, key i%keys.
type inmemImpl struct {
	name  string
	start func(b *testing.B, handlers, keys int, hit func(h, n int)) (publish func(i int) error, stop func())
}

var (
	implOurs = inmemImpl{"ours", func(b *testing.B, handlers, keys int, hit func(h, n int)) (func(int) error, func()) {
		return startOurs(b, handlers, keys, hit)
	}}
	implOursSync = inmemImpl{"ours", func(b *testing.B, handlers, keys int, hit func(h, n int)) (func(int) error, func()) {
		return startOurs(b, handlers, keys, hit, event.WithSync())
	}}
	implChan                 = inmemImpl{"chan", startChan}
	implMap                  = inmemImpl{"map", startMap}
	implWatermillGoChannel   = inmemImpl{"watermill-gochannel", gochannelStarter(false)}
	implWatermillBlock       = inmemImpl{"watermill-gochannel-block", gochannelStarter(true)}
	implEventBusAsync        = inmemImpl{"eventbus-async", eventBusStarter(true, false)}
	implEventBusTransactinal = inmemImpl{"eventbus-transactional", eventBusStarter(true, true)}
	implEventBusSync         = inmemImpl{"eventbus-sync", eventBusStarter(false, false)}
)

func BenchmarkAsync1Handler(b *testing.B) {
	runInmem(b, 1, 0, 1, implOurs, implChan, implWatermillGoChannel, implWatermillBlock, implEventBusAsync)
}

func BenchmarkAsync3Handlers(b *testing.B) {
	runInmem(b, 3, 0, 1, implOurs, implChan, implWatermillGoChannel, implWatermillBlock, implEventBusAsync)
}

// BenchmarkOrdered1000Keys publishes events of 1,000 keys round robin and
// checks each key's order. Only implementations that keep order take part:
// Watermill's default gochannel and EventBus's plain async mode do not.
func BenchmarkOrdered1000Keys(b *testing.B) {
	runInmem(b, 1, 1000, 1, implOurs, implChan, implWatermillBlock, implEventBusTransactinal)
}

func BenchmarkSync(b *testing.B) {
	runInmem(b, 1, 0, 1, implOursSync, implMap, implEventBusSync)
}

// BenchmarkParallel4Publishers is the 1-handler asynchronous workload with
// 4 goroutines publishing at once.
func BenchmarkParallel4Publishers(b *testing.B) {
	runInmem(b, 1, 0, 4, implOurs, implChan, implWatermillGoChannel, implWatermillBlock, implEventBusAsync)
}

func runInmem(b *testing.B, handlers, keys, publishers int, impls ...inmemImpl) {
	for _, impl := range impls {
		b.Run(impl.name, func(b *testing.B) {
			b.ReportAllocs()
			trs := make([]*tracker, handlers)
			for h := range trs {
				trs[h] = newTracker(b.N)
				if keys > 0 {
					trs[h].ordered(keys)
				}
			}
			publish, stop := impl.start(b, handlers, keys, func(h, n int) { trs[h].hit(n) })
			b.ResetTimer()
			if publishers == 1 {
				for i := range b.N {
					if err := publish(i); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				var wg sync.WaitGroup
				for g := range publishers {
					wg.Go(func() {
						for i := g; i < b.N; i += publishers {
							if err := publish(i); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			}
			for _, tr := range trs {
				tr.wait(b, 2*time.Minute)
			}
			b.StopTimer()
			stop()
			for _, tr := range trs {
				tr.check(b)
			}
			report(b, 1)
		})
	}
}

func startOurs(b *testing.B, handlers, keys int, hit func(h, n int), opts ...event.Option) (func(int) error, func()) {
	bus, err := event.New[userEvent](opts...)
	if err != nil {
		b.Fatal(err)
	}
	for h := range handlers {
		if _, err := event.Subscribe(bus, topic, func(_ context.Context, ev event.Event[userEvent]) error {
			hit(h, ev.Payload.N)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	stop := func() {
		if err := bus.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if keys == 0 {
		return func(i int) error { return bus.Publish(ctx, topic, userEvent{N: i}) }, stop
	}
	opt := make([]event.PublishOption, keys)
	for k := range opt {
		opt[k] = event.Aggregate("user-" + strconv.Itoa(k))
	}
	return func(i int) error { return bus.Publish(ctx, topic, userEvent{N: i}, opt[i%keys]) }, stop
}

func startChan(b *testing.B, handlers, keys int, hit func(h, n int)) (func(int) error, func()) {
	chans := make([]chan userEvent, 1)
	if keys > 0 {
		chans = make([]chan userEvent, workers) // one per worker keeps each key's order
	}
	for i := range chans {
		chans[i] = make(chan userEvent, event.DefaultBufferSize/len(chans))
	}
	var wg sync.WaitGroup
	for w := range workers {
		ch := chans[w%len(chans)]
		wg.Go(func() {
			for ev := range ch {
				for h := range handlers {
					hit(h, ev.N)
				}
			}
		})
	}
	stop := func() {
		for _, ch := range chans {
			close(ch)
		}
		wg.Wait()
	}
	if keys == 0 {
		return func(i int) error { chans[0] <- userEvent{N: i}; return nil }, stop
	}
	return func(i int) error { chans[(i%keys)%workers] <- userEvent{N: i}; return nil }, stop
}

func startMap(b *testing.B, handlers, keys int, hit func(h, n int)) (func(int) error, func()) {
	var mu sync.RWMutex
	m := map[string][]func(userEvent){}
	for h := range handlers {
		m[topic] = append(m[topic], func(ev userEvent) { hit(h, ev.N) })
	}
	return func(i int) error {
		mu.RLock()
		hs := m[topic]
		mu.RUnlock()
		for _, h := range hs {
			h(userEvent{N: i})
		}
		return nil
	}, func() {}
}

// gochannelStarter runs Watermill's gochannel. Payloads are bytes, so the
// event number travels as 8 bytes; each message needs its own UUID, as
// Watermill asks of every message.
func gochannelStarter(block bool) func(b *testing.B, handlers, keys int, hit func(h, n int)) (func(int) error, func()) {
	return func(b *testing.B, handlers, keys int, hit func(h, n int)) (func(int) error, func()) {
		ps := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: block}, watermill.NopLogger{})
		var wg sync.WaitGroup
		for h := range handlers {
			msgs, err := ps.Subscribe(context.Background(), topic)
			if err != nil {
				b.Fatal(err)
			}
			for range workers {
				wg.Go(func() {
					for m := range msgs {
						hit(h, int(binary.LittleEndian.Uint64(m.Payload)))
						m.Ack()
					}
				})
			}
		}
		return func(i int) error {
				p := make([]byte, 8)
				binary.LittleEndian.PutUint64(p, uint64(i))
				return ps.Publish(topic, message.NewMessage(watermill.NewUUID(), p))
			}, func() {
				if err := ps.Close(); err != nil {
					b.Fatal(err)
				}
				wg.Wait()
			}
	}
}

func eventBusStarter(async, transactional bool) func(b *testing.B, handlers, keys int, hit func(h, n int)) (func(int) error, func()) {
	return func(b *testing.B, handlers, keys int, hit func(h, n int)) (func(int) error, func()) {
		bus := eventbus.New()
		for h := range handlers {
			fn := func(ev userEvent) { hit(h, ev.N) }
			var err error
			if async {
				err = bus.SubscribeAsync(topic, fn, transactional)
			} else {
				err = bus.Subscribe(topic, fn)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		return func(i int) error { bus.Publish(topic, userEvent{N: i}); return nil }, bus.WaitAsync
	}
}
