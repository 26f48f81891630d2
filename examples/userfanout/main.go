// Command userfanout shows the fan-out pattern: when a user signs up, the
// notification, analytics and audit services each react to one
// user.registered event, independently and in parallel. The analytics
// service's tracker fails now and then, so its retries show in the output
// and the stats.
//
// Events are kept in an embedded SQLite event log (data/events.db by
// default). The audit service is a durable subscription: it keeps its place
// in the log, so running the program again shows it resume where it left
// off, and -replay rebuilds a sign-up count from the whole log.
//
//	go run ./examples/userfanout
//	go run ./examples/userfanout -replay
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
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
	dbPath := flag.String("db", filepath.Join("data", "events.db"), "SQLite event log `file`")
	replay := flag.Bool("replay", false, "also rebuild a sign-up count by replaying the whole log")
	flag.Parse()
	if err := run(context.Background(), *dbPath, *replay); err != nil {
		fmt.Fprintln(os.Stderr, "userfanout:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dbPath string, replay bool) error {
	out := &log{}
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o755); err != nil {
		return err
	}
	events, err := sqlitestore.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	defer events.Close()

	bus, err := event.New[UserRegistered](
		event.WithStore(events),
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

	// Audit service: a durable subscription to every user event. It reads
	// the event log from its checkpoint, so it also sees what earlier runs
	// published after it last ran.
	audited := make(chan int64, 64)
	if _, err := event.Subscribe(bus, "user.>", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		out.printf("audit: #%d %s %s at %s", ev.Position, ev.Topic, ev.Payload.UserID, ev.Time.Format(time.RFC3339))
		audited <- ev.Position
		return nil
	}, event.Durable("audit")); err != nil {
		return err
	}

	before, err := lastPosition(ctx, events)
	if err != nil {
		return err
	}
	users := &UserService{events: bus}
	users.nextID.Store(before) // number users on from earlier runs
	for _, email := range []string{"ada@example.com", "grace@example.com", "linus@example.com", "barbara@example.com", "ken@example.com", "margaret@example.com"} {
		id, err := users.Register(ctx, email)
		if err != nil {
			return err
		}
		out.printf("user service: registered %s as %s", email, id)
	}

	// Wait for the audit service to reach the last event published. It
	// then has seen this run's events and any an earlier run left behind.
	last, err := lastPosition(ctx, events)
	if err != nil {
		return err
	}
	for pos := int64(0); pos < last; {
		select {
		case pos = <-audited:
		case <-time.After(10 * time.Second):
			return errors.New("audit service did not catch up")
		}
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
	if err := enc.Encode(bus.Stats()); err != nil {
		return err
	}
	if replay {
		// Rebuild a read model from scratch: sign-ups per email domain.
		rebuild, err := event.New[UserRegistered](event.WithStore(events))
		if err != nil {
			return err
		}
		defer rebuild.Close(ctx)
		signups := 0
		n, err := event.Replay(ctx, rebuild, store.Query{Topic: "user.registered"}, func(ctx context.Context, ev event.Event[UserRegistered]) error {
			signups++
			return nil
		})
		if err != nil {
			return err
		}
		fmt.Printf("replay: %d sign-ups in the log (%d events replayed)\n", signups, n)
	}
	fmt.Printf("event log: %s holds %d events; run again to see the audit service resume\n", dbPath, last)
	return nil
}

// lastPosition returns the position of the last event in the log.
func lastPosition(ctx context.Context, s store.Store) (int64, error) {
	var last int64
	for rec, err := range store.All(ctx, s, store.Query{}) {
		if err != nil {
			return 0, err
		}
		last = rec.Position
	}
	return last, nil
}
