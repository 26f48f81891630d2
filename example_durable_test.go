package event_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

// tempStore opens an SQLite event store in a new temporary directory.
func tempStore() (*sqlitestore.Store, func()) {
	dir, err := os.MkdirTemp("", "event-example")
	if err != nil {
		panic(err)
	}
	s, err := sqlitestore.Open(context.Background(), filepath.Join(dir, "events.db"))
	if err != nil {
		panic(err)
	}
	return s, func() { s.Close(); os.RemoveAll(dir) }
}

// A durable subscription keeps its place in the store: events published
// while it was not running are handled when it starts again.
func ExampleDurable() {
	ctx := context.Background()
	s, cleanup := tempStore()
	defer cleanup()

	// The first run of a service: the billing subscription handles two
	// events, then the process stops.
	bus, _ := event.New[UserRegistered](event.WithStore(s))
	done := make(chan struct{})
	event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		fmt.Printf("run 1: billing account for %s (position %d)\n", ev.Payload.UserID, ev.Position)
		if ev.Payload.UserID == "2" {
			close(done)
		}
		return nil
	}, event.Durable("billing"))
	bus.Publish(ctx, "user.registered", UserRegistered{UserID: "1"})
	bus.Publish(ctx, "user.registered", UserRegistered{UserID: "2"})
	<-done
	bus.Close(ctx)

	// While billing is down, another instance publishes.
	other, _ := event.New[UserRegistered](event.WithStore(s))
	other.Publish(ctx, "user.registered", UserRegistered{UserID: "3"})
	other.Close(ctx)

	// The second run catches up from its checkpoint.
	bus, _ = event.New[UserRegistered](event.WithStore(s))
	done = make(chan struct{})
	event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		fmt.Printf("run 2: billing account for %s (position %d)\n", ev.Payload.UserID, ev.Position)
		close(done)
		return nil
	}, event.Durable("billing"))
	<-done
	bus.Close(ctx)
	// Output:
	// run 1: billing account for 1 (position 1)
	// run 1: billing account for 2 (position 2)
	// run 2: billing account for 3 (position 3)
}

// The transactional outbox: the user row and its event commit together, or
// neither does.
func ExampleBus_PublishTx() {
	ctx := context.Background()
	s, cleanup := tempStore()
	defer cleanup()
	bus, _ := event.New[UserRegistered](event.WithStore(s))
	defer bus.Close(ctx)

	db := s.DB() // the application's tables live in the same file
	db.ExecContext(ctx, `CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT)`)
	register := func(id, email string, commit bool) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, `INSERT INTO users VALUES (?, ?)`, id, email); err != nil {
			return err
		}
		if err := bus.PublishTx(ctx, tx, "user.registered", UserRegistered{UserID: id, Email: email}); err != nil {
			return err
		}
		if !commit {
			return nil // rolled back by the deferred Rollback
		}
		return tx.Commit()
	}
	register("1", "ada@example.com", true)
	register("2", "grace@example.com", false)

	n, _ := event.Replay(ctx, bus, store.Query{}, func(ctx context.Context, ev event.Event[UserRegistered]) error {
		fmt.Println("stored event for", ev.Payload.Email)
		return nil
	})
	fmt.Println("events in the log:", n)
	// Output:
	// stored event for ada@example.com
	// events in the log: 1
}

// Replay rebuilds a read model from the log, from scratch.
func ExampleReplay() {
	ctx := context.Background()
	s, cleanup := tempStore()
	defer cleanup()
	bus, _ := event.New[OrderPlaced](event.WithStore(s))
	defer bus.Close(ctx)
	bus.Publish(ctx, "order.placed", OrderPlaced{OrderID: "o-1", Amount: 10}, event.Aggregate("customer-1"))
	bus.Publish(ctx, "order.placed", OrderPlaced{OrderID: "o-2", Amount: 25}, event.Aggregate("customer-2"))
	bus.Publish(ctx, "order.placed", OrderPlaced{OrderID: "o-3", Amount: 5}, event.Aggregate("customer-1"))

	spent := map[string]float64{}
	n, err := event.Replay(ctx, bus, store.Query{Topic: "order.>"}, func(ctx context.Context, ev event.Event[OrderPlaced]) error {
		spent[ev.AggregateID] += ev.Payload.Amount
		return nil
	})
	fmt.Println(n, err, spent)
	// Output:
	// 3 <nil> map[customer-1:15 customer-2:25]
}

type Opened struct{ Owner string }
type Deposited struct{ Amount int }

type Account struct {
	Owner   string
	Balance int
}

func (a Account) Apply(ev event.Event[any]) Account {
	switch p := ev.Payload.(type) {
	case Opened:
		a.Owner = p.Owner
	case Deposited:
		a.Balance += p.Amount
	}
	return a
}

// Event sourcing: fold an aggregate's events into its state, decide, and
// publish at the version it was loaded at. A concurrent writer that decided
// on the same version gets a conflict instead of a lost update.
func ExampleFold() {
	ctx := context.Background()
	s, cleanup := tempStore()
	defer cleanup()
	bus, _ := event.New[any](event.WithStore(s), event.WithTypes(Opened{}, Deposited{}))
	defer bus.Close(ctx)
	bus.Publish(ctx, "account.opened", Opened{Owner: "ada"}, event.Aggregate("acc-1"), event.ExpectVersion(0))
	bus.Publish(ctx, "account.deposited", Deposited{Amount: 100}, event.Aggregate("acc-1"))

	acc, version, _ := event.Fold(ctx, bus, "acc-1", Account{}, Account.Apply)
	fmt.Printf("%s has %d at version %d\n", acc.Owner, acc.Balance, version)

	err := bus.Publish(ctx, "account.deposited", Deposited{Amount: 50}, event.Aggregate("acc-1"), event.ExpectVersion(version))
	fmt.Println("first writer:", err)
	err = bus.Publish(ctx, "account.deposited", Deposited{Amount: 50}, event.Aggregate("acc-1"), event.ExpectVersion(version))
	fmt.Println("second writer:", err)
	// Output:
	// ada has 100 at version 2
	// first writer: <nil>
	// second writer: event: publish account.deposited: sqlitestore: append: version conflict on aggregate "acc-1": expected version 2, actual 3
}
