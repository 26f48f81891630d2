package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ncore-io/event/store/sqlitestore"
)

const goodCard = "4242 4242 4242 4242"

// The final state of each kind of order.
var (
	confirmed = want{status: "confirmed", reservation: "held", payment: "charged", confirmations: 1,
		topics: []string{topicOrderPlaced, topicInventoryReserved, topicPaymentCompleted, topicOrderConfirmed}}
	declined = want{status: "cancelled", reason: "payment declined: card ending 0002", reservation: "released", payment: "declined",
		topics: []string{topicOrderPlaced, topicInventoryReserved, topicPaymentFailed, topicInventoryReleased, topicOrderCancelled}}
	outOfStock = want{status: "cancelled", reason: "out of stock: 1 × telescope wanted, 0 in stock",
		topics: []string{topicOrderPlaced, topicInventoryUnavailable, topicOrderCancelled}}
)

// The steps each kind of order goes through, in order.
var (
	confirmedSteps = []string{"reserve-inventory", "process-payment", "send-confirmation"}
	declinedSteps  = []string{"reserve-inventory", "process-payment", "release-inventory", "cancel-order"}
)

type want struct {
	status, reason       string
	reservation, payment string
	confirmations        int
	topics               []string // the saga's events, in order
}

func openStore(t *testing.T, path string) *sqlitestore.Store {
	t.Helper()
	// A short watch interval: steps notice each other's commits sooner.
	s, err := sqlitestore.Open(context.Background(), path, sqlitestore.WithPollInterval(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newSaga(t *testing.T, s *sqlitestore.Store, opts Options) *Saga {
	t.Helper()
	sg, err := New(context.Background(), s, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := sg.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return sg
}

// setup opens a saga on a new file with stock of books and lamps.
func setup(t *testing.T, path string, opts Options) *Saga {
	t.Helper()
	sg := newSaga(t, openStore(t, path), opts)
	for sku, n := range map[string]int{"book": 5, "lamp": 2} {
		if err := sg.AddStock(context.Background(), sku, n); err != nil {
			t.Fatal(err)
		}
	}
	return sg
}

func place(t *testing.T, sg *Saga, sku string, quantity int, card string) string {
	t.Helper()
	id, err := sg.PlaceOrder(context.Background(), "ada@example.com", sku, quantity, 1999, card)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func wait(t *testing.T, sg *Saga, ids ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := sg.Wait(ctx, ids...); err != nil {
		t.Fatal(err)
	}
}

// checkOrder checks the order's tables and its saga's events: each step
// applied once, in order, every event correlated with the order and caused
// by the one before.
func checkOrder(t *testing.T, sg *Saga, id string, w want) {
	t.Helper()
	ctx := context.Background()
	o, err := sg.Order(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	got := want{status: o.Status, reason: o.Reason, reservation: o.Reservation, payment: o.Payment, confirmations: o.Confirmations}
	if got.status != w.status || got.reason != w.reason || got.reservation != w.reservation || got.payment != w.payment || got.confirmations != w.confirmations {
		t.Errorf("%s: state %+v, want %+v", id, got, w)
	}
	evs, err := sg.Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var topics []string
	for i, ev := range evs {
		topics = append(topics, ev.Topic)
		if ev.CorrelationID.String() != o.CorrelationID {
			t.Errorf("%s: event %d (%s) has correlation ID %s, want the order's %s", id, i, ev.Topic, ev.CorrelationID, o.CorrelationID)
		}
		cause := uuid.UUID{}
		if i > 0 {
			cause = evs[i-1].ID
		}
		if ev.CausationID != cause {
			t.Errorf("%s: event %d (%s) was caused by %s, want %s", id, i, ev.Topic, ev.CausationID, cause)
		}
	}
	if !slices.Equal(topics, w.topics) {
		t.Errorf("%s: events %v, want %v", id, topics, w.topics)
	}
}

func checkStock(t *testing.T, sg *Saga, want map[string]int) {
	t.Helper()
	for sku, n := range want {
		got, err := sg.Stock(context.Background(), sku)
		if err != nil {
			t.Fatal(err)
		}
		if got != n {
			t.Errorf("%d × %s in stock, want %d", got, sku, n)
		}
	}
}

func TestSagaEndsInTheRightState(t *testing.T) {
	t.Parallel()
	sg := setup(t, filepath.Join(t.TempDir(), "saga.db"), Options{})
	if err := sg.Start(); err != nil {
		t.Fatal(err)
	}
	ok := place(t, sg, "book", 2, goodCard)
	bad := place(t, sg, "lamp", 1, declinedCard)
	missing := place(t, sg, "telescope", 1, goodCard)
	wait(t, sg, ok, bad, missing)

	checkOrder(t, sg, ok, confirmed)
	checkOrder(t, sg, bad, declined)
	checkOrder(t, sg, missing, outOfStock)
	checkStock(t, sg, map[string]int{"book": 3, "lamp": 2})
	if n := sg.Duplicates(); n != 0 {
		t.Errorf("%d events delivered twice without a restart", n)
	}
	a, _ := sg.Order(context.Background(), ok)
	b, _ := sg.Order(context.Background(), bad)
	if a.CorrelationID == b.CorrelationID {
		t.Errorf("two orders share correlation ID %s", a.CorrelationID)
	}
}

func TestPlaceOrderRejectsBadInput(t *testing.T) {
	t.Parallel()
	sg := setup(t, filepath.Join(t.TempDir(), "saga.db"), Options{})
	for _, c := range []struct {
		name, email, sku string
		quantity         int
		cents            int64
		card, wantErr    string
	}{
		{"email", "ada", "book", 1, 100, goodCard, `email "ada" has no @`},
		{"sku", "ada@example.com", "", 1, 100, goodCard, "empty SKU"},
		{"quantity", "ada@example.com", "book", 0, 100, goodCard, "quantity must be positive, got 0"},
		{"amount", "ada@example.com", "book", 1, -5, goodCard, "amount must be positive, got -5 cents"},
		{"card", "ada@example.com", "book", 1, 100, "", "empty card number"},
	} {
		_, err := sg.PlaceOrder(context.Background(), c.email, c.sku, c.quantity, c.cents, c.card)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: got error %v, want one containing %q", c.name, err, c.wantErr)
		}
	}
	// Nothing half-stored: no order row, no event.
	pending, err := sg.Pending(context.Background())
	if err != nil || len(pending) != 0 {
		t.Errorf("pending orders %v (%v), want none", pending, err)
	}
	if evs, err := sg.Events(context.Background(), "order-1"); err != nil || len(evs) != 0 {
		t.Errorf("events %v (%v), want none", evs, err)
	}
}

// A step commits, and the process stops before the next step runs and
// before the step's checkpoint is saved: its handler blocks until the bus
// is torn down, with the next step not running. Started again on the same
// file, the saga must finish with every step applied once.
func TestResumeAfterStopBetweenSteps(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		card  string
		steps []string
		want  want
	}{
		{goodCard, confirmedSteps, confirmed},
		{declinedCard, declinedSteps, declined},
	} {
		for i, stopAfter := range c.steps {
			t.Run(c.want.status+"/"+stopAfter, func(t *testing.T) {
				t.Parallel()
				path := filepath.Join(t.TempDir(), "saga.db")
				id := stopBetweenSteps(t, path, c.card, c.steps[:i+1])

				// The next step did not run: the log ends with the stopped
				// step's event.
				sg := newSaga(t, openStore(t, path), Options{})
				evs, err := sg.Events(context.Background(), id)
				if err != nil {
					t.Fatal(err)
				}
				if len(evs) != i+2 {
					t.Fatalf("%d events before the restart, want %d", len(evs), i+2)
				}

				if err := sg.Start(); err != nil {
					t.Fatal(err)
				}
				wait(t, sg, id)
				checkOrder(t, sg, id, c.want)
				checkStock(t, sg, map[string]int{"book": 5 - 2*boolInt(c.card == goodCard)})
				// The stopped step's event comes again and is skipped; the
				// others were checkpointed.
				if n := waitDuplicates(t, sg, 1); n != 1 {
					t.Errorf("%d redelivered events skipped, want 1", n)
				}
			})
		}
	}
}

// stopBetweenSteps places an order on a new file and runs the given steps
// of its saga; after the last one commits, its handler blocks until the bus
// is torn down. It returns the order's ID once the store is closed.
func stopBetweenSteps(t *testing.T, path, card string, steps []string) string {
	stopAfter := steps[len(steps)-1]
	committed := make(chan struct{})
	s, err := sqlitestore.Open(context.Background(), path, sqlitestore.WithPollInterval(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sg, err := New(context.Background(), s, Options{AfterCommit: func(ctx context.Context, step, orderID string) error {
		if step != stopAfter {
			return nil
		}
		close(committed)
		<-ctx.Done() // the bus gave up on the handler
		return ctx.Err()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sg.AddStock(context.Background(), "book", 5); err != nil {
		t.Fatal(err)
	}
	if err := sg.Start(steps...); err != nil {
		t.Fatal(err)
	}
	id := place(t, sg, "book", 2, card)
	select {
	case <-committed:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not commit", stopAfter)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// Close gives up on the blocked handler, cancelling its context.
	if err := sg.Close(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	// Called again, Close waits for the subscriptions to stop.
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return id
}

// waitDuplicates waits until the saga has skipped at least n redelivered
// events, and returns how many it has skipped.
func waitDuplicates(t *testing.T, sg *Saga, n int64) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sg.waitUntil(ctx, func() (bool, error) { return sg.Duplicates() >= n, nil }); err != nil {
		t.Fatalf("%d redelivered events skipped, want at least %d: %v", sg.Duplicates(), n, err)
	}
	return sg.Duplicates()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// The child process of TestResumeAfterKill.
const (
	childDBEnv     = "SAGA_TEST_CHILD_DB"
	childKillAtEnv = "SAGA_TEST_CHILD_KILL_AT" // "step order-id"
)

// child runs every step on the file that childDBEnv names and reports each
// commit on stdout. At the commit named by childKillAtEnv it reports
// "ready" and blocks, for the parent to kill it.
func child() int {
	s, err := sqlitestore.Open(context.Background(), os.Getenv(childDBEnv), sqlitestore.WithPollInterval(5*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex
	sg, err := New(context.Background(), s, Options{AfterCommit: func(ctx context.Context, step, orderID string) error {
		mu.Lock()
		fmt.Printf("committed %s %s\n", step, orderID)
		kill := step+" "+orderID == os.Getenv(childKillAtEnv)
		if kill {
			fmt.Println("ready")
		}
		mu.Unlock()
		if kill {
			<-ctx.Done()
		}
		return nil
	}})
	if err == nil {
		err = sg.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	time.Sleep(time.Minute) // in case the parent does not kill it
	return 2
}

// The saga runs in a child process that is killed with SIGKILL right after
// a step commits, while other orders' steps may be running. Started again
// on the same file, the saga must finish every order with every step
// applied once. It is killed before the compensation and in its middle;
// TestResumeAfterStopBetweenSteps stops after each step.
func TestResumeAfterKill(t *testing.T) {
	t.Parallel()
	for _, killAt := range []string{"process-payment order-2", "release-inventory order-2"} {
		t.Run(strings.ReplaceAll(killAt, " ", "/"), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "saga.db")
			func() {
				s, err := sqlitestore.Open(context.Background(), path)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				sg, err := New(context.Background(), s, Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer sg.Close(context.Background())
				if err := sg.AddStock(context.Background(), "book", 5); err != nil {
					t.Fatal(err)
				}
				place(t, sg, "book", 2, goodCard)
				place(t, sg, "book", 1, declinedCard)
			}()
			out := runAndKill(t, path, killAt)

			sg := newSaga(t, openStore(t, path), Options{})
			if err := sg.Start(); err != nil {
				t.Fatal(err)
			}
			wait(t, sg, "order-1", "order-2")
			checkOrder(t, sg, "order-1", confirmed)
			checkOrder(t, sg, "order-2", declined)
			checkStock(t, sg, map[string]int{"book": 3})
			// At least the event of the step it was killed in comes again.
			t.Logf("the child's output:\n%s\nredelivered events skipped after the restart: %d", out, waitDuplicates(t, sg, 1))
		})
	}
}

// runAndKill runs child on path and kills it once it reports killAt's
// commit. It returns the child's output.
func runAndKill(t *testing.T, path, killAt string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childDBEnv+"="+path, childKillAtEnv+"="+killAt)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child's output is read as it comes, so that the child never
	// blocks on a full pipe.
	ready, eof := make(chan struct{}), make(chan struct{})
	var out strings.Builder
	go func() {
		defer close(eof)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(ready)
				continue
			}
			fmt.Fprintln(&out, sc.Text())
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
	}
	cmd.Process.Kill() // SIGKILL
	<-eof
	cmd.Wait()
	select {
	case <-ready:
	default:
		t.Fatalf("the child did not reach %q; its output:\n%s%s", killAt, out.String(), stderr.String())
	}
	return out.String()
}

// The program itself: the three orders end as they should, and a second
// run on the same file numbers its orders on.
func TestRun(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "data", "saga.db")
	for i, first := range []string{"order-1", "order-4"} {
		var out bytes.Buffer
		if err := run(context.Background(), &out, path, ""); err != nil {
			t.Fatal(err)
		}
		n := i * 3
		for _, line := range []string{
			fmt.Sprintf("%s confirmed\n", first),
			fmt.Sprintf("order-%d cancelled (payment declined: card ending 0002)\n", n+2),
			fmt.Sprintf("order-%d cancelled (out of stock: 1 × telescope wanted, 0 in stock)\n", n+3),
			"correlation ",
		} {
			if !strings.Contains(out.String(), line) {
				t.Errorf("run %d: output lacks %q:\n%s", i+1, line, out.String())
			}
		}
		if strings.Contains(out.String(), "resuming") {
			t.Errorf("run %d resumed sagas that had ended:\n%s", i+1, out.String())
		}
	}
}
