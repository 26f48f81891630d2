// Command userfanout shows the fan-out pattern: when a user signs up, the
// notification, analytics and audit services each react to one
// user.registered event, independently and in parallel. The analytics
// service's tracker fails now and then, so its retries show in the output
// and the stats.
//
//	go run ./examples/userfanout
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ncore-io/event"
)

// UserRegistered is published when a user signs up.
type UserRegistered struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
}

// UserService registers users and announces them. It depends on
// event.Publisher, not on the bus, so its tests can use eventtest.MockBus.
type UserService struct {
	events event.Publisher[UserRegistered]
	nextID atomic.Int64
}

// Register creates a user and publishes user.registered.
func (s *UserService) Register(ctx context.Context, email string) (string, error) {
	id := fmt.Sprintf("user-%d", s.nextID.Add(1))
	// A real service would insert the user here.
	err := s.events.Publish(ctx, "user.registered", UserRegistered{UserID: id, Email: email}, event.Aggregate(id))
	if err != nil {
		return "", fmt.Errorf("register %s: %w", email, err)
	}
	return id, nil
}

// log serialises the services' output lines.
type log struct{ mu sync.Mutex }

func (l *log) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Printf(format+"\n", args...)
}

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "userfanout:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	out := &log{}
	bus, err := event.New[UserRegistered](
		event.WithBufferSize(1000),
		event.WithWorkers(10),
		event.WithTimeout(30*time.Second),
		event.WithRetry(event.RetryPolicy{MaxRetries: 3, InitialInterval: 10 * time.Millisecond}),
		event.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
		event.WithDeadLetter(func(ctx context.Context, dl event.DeadLetter) {
			out.printf("dead letter: %s gave up on %v after %d attempts: %v", dl.Subscription, dl.Event.Payload, dl.Attempts, dl.Err)
		}),
	)
	if err != nil {
		return err
	}

	// Notification service: sends the welcome email.
	if _, err := event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		out.printf("notification: welcome email sent to %s", ev.Payload.Email)
		return nil
	}, event.Name("notification")); err != nil {
		return err
	}

	// Analytics service: its tracker times out on every third sign-up's first
	// try, and the retry succeeds.
	var tracked sync.Map
	var calls atomic.Int64
	if _, err := event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		_, retry := tracked.LoadOrStore(ev.ID, true)
		if !retry && calls.Add(1)%3 == 0 {
			out.printf("analytics: tracker timed out for %s, will retry", ev.Payload.UserID)
			return errors.New("analytics tracker timed out")
		}
		out.printf("analytics: tracked sign-up of %s", ev.Payload.UserID)
		return nil
	}, event.Name("analytics")); err != nil {
		return err
	}

	// Audit service: keeps a record of every event, whatever its topic.
	if _, err := event.Subscribe(bus, "user.>", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		out.printf("audit: %s %s at %s (event %s)", ev.Topic, ev.Payload.UserID, ev.Time.Format(time.RFC3339), ev.ID)
		return nil
	}, event.Name("audit")); err != nil {
		return err
	}

	users := &UserService{events: bus}
	for _, email := range []string{"ada@example.com", "grace@example.com", "linus@example.com", "barbara@example.com", "ken@example.com", "margaret@example.com"} {
		id, err := users.Register(ctx, email)
		if err != nil {
			return err
		}
		out.printf("user service: registered %s as %s", email, id)
	}

	// Close waits for every handler, retries included.
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := bus.Close(closeCtx); err != nil {
		return err
	}
	fmt.Print("stats: ")
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false) // show the pattern "user.>" as it is
	enc.SetIndent("", "  ")
	return enc.Encode(bus.Stats())
}
