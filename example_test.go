package event_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ncore-io/event"
)

type UserRegistered struct {
	UserID string
	Email  string
}

type OrderPlaced struct {
	OrderID string
	Amount  float64
}

func Example() {
	ctx := context.Background()
	bus, err := event.New[UserRegistered]()
	if err != nil {
		panic(err)
	}
	_, err = event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		fmt.Printf("welcome email to %s (%s event on %s)\n", ev.Payload.Email, ev.Kind, ev.Topic)
		return nil
	})
	if err != nil {
		panic(err)
	}
	if err := bus.Publish(ctx, "user.registered", UserRegistered{UserID: "42", Email: "ada@example.com"}); err != nil {
		panic(err)
	}
	// Close waits for the handler to finish.
	if err := bus.Close(ctx); err != nil {
		panic(err)
	}
	// Output:
	// welcome email to ada@example.com (domain event on user.registered)
}

// Three services react to one event, each on its own subscription.
func Example_fanOut() {
	ctx := context.Background()
	bus, _ := event.New[UserRegistered]()
	var mu sync.Mutex
	var seen []string
	for _, service := range []string{"notification", "analytics", "audit"} {
		event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, service+" saw "+ev.Payload.UserID)
			return nil
		}, event.Name(service))
	}
	bus.Publish(ctx, "user.registered", UserRegistered{UserID: "42"})
	bus.Close(ctx)

	slices.Sort(seen) // the three run in parallel, in any order
	for _, s := range seen {
		fmt.Println(s)
	}
	st := bus.Stats()
	fmt.Printf("published %d, delivered %d, processed %d\n", st.Published, st.Delivered, st.Processed)
	// Output:
	// analytics saw 42
	// audit saw 42
	// notification saw 42
	// published 1, delivered 3, processed 3
}

// A handler that fails is retried with backoff; one that keeps failing is
// dead-lettered.
func Example_retry() {
	ctx := context.Background()
	bus, _ := event.New[UserRegistered](
		event.WithRetry(event.RetryPolicy{MaxRetries: 2, InitialInterval: time.Millisecond}),
		event.WithDeadLetter(func(ctx context.Context, dl event.DeadLetter) {
			fmt.Printf("dead letter: %s after %d attempts: %v\n", dl.Subscription, dl.Attempts, dl.Err)
		}),
	)
	attempts := 0
	event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		attempts++
		if attempts < 3 {
			return errors.New("mail server unavailable")
		}
		fmt.Printf("sent on attempt %d\n", attempts)
		return nil
	}, event.Name("welcome-email"))
	event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		return errors.New("crm rejected the user")
	}, event.Name("crm-sync"))

	bus.Publish(ctx, "user.registered", UserRegistered{UserID: "42"})
	bus.Close(ctx)
	st := bus.Stats()
	fmt.Printf("processed %d, failed %d, retried %d\n", st.Processed, st.Failed, st.Retried)
	// Unordered output:
	// sent on attempt 3
	// dead letter: crm-sync after 3 attempts: crm rejected the user
	// processed 1, failed 1, retried 4
}

// Events of one aggregate reach a subscription in publish order, even with
// many workers.
func Example_ordering() {
	ctx := context.Background()
	bus, _ := event.New[string](event.WithWorkers(10))
	var mu sync.Mutex
	history := map[string][]string{}
	event.Subscribe(bus, "account.>", func(ctx context.Context, ev event.Event[string]) error {
		mu.Lock()
		defer mu.Unlock()
		history[ev.AggregateID] = append(history[ev.AggregateID], ev.Payload)
		return nil
	})
	for _, account := range []string{"acc-1", "acc-2"} {
		for _, step := range []string{"opened", "deposited", "withdrew", "closed"} {
			bus.Publish(ctx, "account."+step, step, event.Aggregate(account))
		}
	}
	bus.Close(ctx)
	fmt.Println("acc-1:", history["acc-1"])
	fmt.Println("acc-2:", history["acc-2"])
	// Output:
	// acc-1: [opened deposited withdrew closed]
	// acc-2: [opened deposited withdrew closed]
}

// One bus of type any carries several event types; a handler for a concrete
// type receives only events of that type.
func ExampleSubscribe_interfaceBus() {
	ctx := context.Background()
	bus, _ := event.New[any](event.WithSync())
	event.Subscribe(bus, ">", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		fmt.Println("user:", ev.Payload.Email)
		return nil
	})
	event.Subscribe(bus, ">", func(ctx context.Context, ev event.Event[OrderPlaced]) error {
		fmt.Printf("order: %s for %.2f\n", ev.Payload.OrderID, ev.Payload.Amount)
		return nil
	})
	bus.Publish(ctx, "user.registered", UserRegistered{Email: "ada@example.com"})
	bus.Publish(ctx, "order.placed", OrderPlaced{OrderID: "o-7", Amount: 19.9})
	bus.Publish(ctx, "user.registered", "not a UserRegistered: no handler takes it")
	bus.Close(ctx)
	fmt.Println("without a subscriber:", bus.Stats().NoSubscriber)
	// Output:
	// user: ada@example.com
	// order: o-7 for 19.90
	// without a subscriber: 1
}

// A handler that publishes with its context links the new event to the one
// it handles.
func ExampleBus_Publish_causation() {
	ctx := context.Background()
	bus, _ := event.New[string](event.WithSync())
	var first event.Event[string]
	event.Subscribe(bus, "order.placed", func(ctx context.Context, ev event.Event[string]) error {
		first = ev
		return bus.Publish(ctx, "payment.requested", "pay "+ev.Payload)
	})
	event.Subscribe(bus, "payment.requested", func(ctx context.Context, ev event.Event[string]) error {
		fmt.Println(ev.Payload)
		fmt.Println("caused by the order event:", ev.CausationID == first.ID)
		fmt.Println("same correlation:", ev.CorrelationID == first.CorrelationID)
		return nil
	})
	bus.Publish(ctx, "order.placed", "o-7")
	bus.Close(ctx)
	// Output:
	// pay o-7
	// caused by the order event: true
	// same correlation: true
}
