// Command saga runs an order saga on a durable event log: an order is
// placed, inventory is reserved, the payment is processed and a
// confirmation is sent, each step a durable subscription that reacts to the
// previous step's event. A declined payment is compensated: the reservation
// is released and the order cancelled.
//
// Each step writes the domain tables (orders, inventory, payments, …) and
// publishes the next event in one SQLite transaction, through the outbox
// (Bus.PublishTx), and marks the event it handled as processed in the same
// transaction. A crash between steps therefore loses nothing and repeats
// nothing: the next start resumes each step from its checkpoint and skips
// the events it had already handled. Every event of one order's saga
// carries the order's correlation ID.
//
//	go run ./examples/saga                                # three orders: confirmed, declined, out of stock
//	go run ./examples/saga -crash-after process-payment   # exit abruptly mid-saga …
//	go run ./examples/saga                                # … and resume it
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ncore-io/event/store/sqlitestore"
)

func main() {
	dbPath := flag.String("db", filepath.Join("data", "saga.db"), "SQLite `file` for the event log and the domain tables (created if missing)")
	crashAfter := flag.String("crash-after", "", "exit abruptly once `step` has committed, to show the next run resume (steps: "+strings.Join(Steps, ", ")+")")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *dbPath, *crashAfter); err != nil {
		fmt.Fprintln(os.Stderr, "saga:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, dbPath, crashAfter string) (err error) {
	out := &syncWriter{w: w} // the steps print from their goroutines
	opts := Options{Out: out}
	if crashAfter != "" {
		if !slices.Contains(Steps, crashAfter) {
			return fmt.Errorf("-crash-after: no step %q (the steps are %s)", crashAfter, strings.Join(Steps, ", "))
		}
		opts.AfterCommit = func(ctx context.Context, step, orderID string) error {
			if step == crashAfter {
				// No Close, no checkpoint: as if the power went out.
				fmt.Fprintf(out, "crash: exiting right after %s committed for %s; run again without -crash-after to resume\n", step, orderID)
				os.Exit(3)
			}
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o755); err != nil {
		return err
	}
	events, err := sqlitestore.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	defer events.Close()
	sg, err := New(ctx, events, opts)
	if err != nil {
		return err
	}
	defer func() {
		// Close lets the steps finish the event in hand and save their
		// checkpoints.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err = errors.Join(err, sg.Close(cctx))
	}()

	unfinished, err := sg.Pending(ctx)
	if err != nil {
		return err
	}
	if len(unfinished) > 0 {
		fmt.Fprintf(out, "resuming the sagas of %s, left unfinished by an earlier run\n", strings.Join(unfinished, ", "))
	}
	// A delivery to the warehouse; nobody stocks telescopes.
	if err := sg.AddStock(ctx, "book", 5); err != nil {
		return err
	}
	if err := sg.AddStock(ctx, "lamp", 2); err != nil {
		return err
	}
	if err := sg.Start(); err != nil {
		return err
	}

	orders := unfinished
	for _, o := range []struct {
		email, sku string
		quantity   int
		cents      int64
		card       string
	}{
		{"ada@example.com", "book", 2, 2500, "4242 4242 4242 4242"},
		{"grace@example.com", "lamp", 1, 4990, declinedCard},
		{"linus@example.com", "telescope", 1, 30000, "4242 4242 4242 4242"},
	} {
		id, err := sg.PlaceOrder(ctx, o.email, o.sku, o.quantity, o.cents, o.card)
		if err != nil {
			return err
		}
		orders = append(orders, id)
	}

	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	final, err := sg.Wait(wctx, orders...)
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	for _, o := range final {
		evs, err := sg.Events(ctx, o.ID)
		if err != nil {
			return err
		}
		topics := make([]string, len(evs))
		same := true
		for i, ev := range evs {
			topics[i] = ev.Topic
			same = same && ev.CorrelationID.String() == o.CorrelationID
		}
		state := o.Status
		if o.Reason != "" {
			state += " (" + o.Reason + ")"
		}
		fmt.Fprintf(out, "%s %s\n  events: %s\n  correlation %s shared by all %d: %v\n", o.ID, state, strings.Join(topics, " → "), o.CorrelationID, len(evs), same)
	}
	for _, sku := range []string{"book", "lamp"} {
		n, err := sg.Stock(ctx, sku)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "in stock: %d × %s\n", n, sku)
	}
	if n := sg.Duplicates(); n > 0 {
		fmt.Fprintf(out, "redelivered events skipped: %d\n", n)
	}
	fmt.Fprintf(out, "state and event log in %s\n", dbPath)
	return nil
}
