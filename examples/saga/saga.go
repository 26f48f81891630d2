package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

// The saga's topics, one per fact. Every event's aggregate ID is its
// order's ID.
const (
	topicOrderPlaced          = "order.placed"
	topicInventoryReserved    = "inventory.reserved"
	topicInventoryUnavailable = "inventory.unavailable"
	topicInventoryReleased    = "inventory.released"
	topicPaymentCompleted     = "payment.completed"
	topicPaymentFailed        = "payment.failed"
	topicOrderConfirmed       = "order.confirmed"
	topicOrderCancelled       = "order.cancelled"
)

// OrderPlaced starts a saga.
type OrderPlaced struct {
	OrderID  string `json:"order_id"`
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
	Amount   int64  `json:"amount_cents"`
}

// InventoryReserved says the order's items are set aside.
type InventoryReserved struct {
	OrderID  string `json:"order_id"`
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// InventoryUnavailable says the order cannot be filled.
type InventoryUnavailable struct {
	OrderID string `json:"order_id"`
	SKU     string `json:"sku"`
	Wanted  int    `json:"wanted"`
	InStock int    `json:"in_stock"`
}

// PaymentCompleted says the customer was charged.
type PaymentCompleted struct {
	OrderID   string `json:"order_id"`
	Amount    int64  `json:"amount_cents"`
	Reference string `json:"reference"`
}

// PaymentFailed says the charge was declined; it starts the compensation.
type PaymentFailed struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// InventoryReleased says a reservation was undone, and why.
type InventoryReleased struct {
	OrderID  string `json:"order_id"`
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
	Reason   string `json:"reason"`
}

// OrderConfirmed ends a saga that succeeded.
type OrderConfirmed struct {
	OrderID string `json:"order_id"`
	Email   string `json:"email"`
}

// OrderCancelled ends a saga that did not.
type OrderCancelled struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// cancellation is an inventory event after which the order is cancelled.
// The cancel-order step subscribes to "inventory.*" with a handler of this
// type, so the bus hands it these two events and not InventoryReserved.
type cancellation interface{ cancelReason() string }

func (e InventoryReleased) cancelReason() string { return e.Reason }
func (e InventoryUnavailable) cancelReason() string {
	return fmt.Sprintf("out of stock: %d × %s wanted, %d in stock", e.Wanted, e.SKU, e.InStock)
}

// payloads are samples of every payload type, so that the bus can decode
// stored events of types no subscription of this process handles.
var payloads = []any{OrderPlaced{}, InventoryReserved{}, InventoryUnavailable{}, PaymentCompleted{},
	PaymentFailed{}, InventoryReleased{}, OrderConfirmed{}, OrderCancelled{}}

// Steps are the saga's steps. Each is a durable subscription of that name
// which reacts to one event by changing the domain tables and publishing the
// next event, in one transaction.
var Steps = []string{"reserve-inventory", "process-payment", "send-confirmation", "release-inventory", "cancel-order"}

// schema holds the domain state. It lives in the event log's file, since
// the outbox appends events in a transaction of the store's connection.
const schema = `
CREATE TABLE IF NOT EXISTS orders (
	id             TEXT PRIMARY KEY,
	email          TEXT NOT NULL,
	sku            TEXT NOT NULL,
	quantity       INTEGER NOT NULL,
	amount_cents   INTEGER NOT NULL,
	card           TEXT NOT NULL,
	status         TEXT NOT NULL, -- pending, confirmed, cancelled
	reason         TEXT NOT NULL DEFAULT '',
	correlation_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS inventory (
	sku      TEXT PRIMARY KEY,
	in_stock INTEGER NOT NULL CHECK (in_stock >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
	order_id TEXT PRIMARY KEY,
	sku      TEXT NOT NULL,
	quantity INTEGER NOT NULL,
	status   TEXT NOT NULL -- held, released
);
CREATE TABLE IF NOT EXISTS payments (
	order_id     TEXT PRIMARY KEY,
	amount_cents INTEGER NOT NULL,
	status       TEXT NOT NULL, -- charged, declined
	reference    TEXT NOT NULL
);
-- The mail outbox: a mailer would send each row once.
CREATE TABLE IF NOT EXISTS confirmations (
	order_id TEXT PRIMARY KEY,
	email    TEXT NOT NULL
);
-- What each step has done: delivery is at least once, so a step that finds
-- its event here has done its work already.
CREATE TABLE IF NOT EXISTS processed_events (
	step     TEXT NOT NULL,
	event_id TEXT NOT NULL,
	PRIMARY KEY (step, event_id)
);
`

// Options configure a [Saga].
type Options struct {
	// Out receives a line for each step taken, from the steps' goroutines.
	// Wrap it in a syncWriter to write to it from other goroutines too.
	// Nil discards the lines.
	Out io.Writer
	// AfterCommit, if set, is called after a step's transaction has
	// committed, with the handler's context. An error it returns fails the
	// delivery although the step's work is kept, as a crash at that moment
	// would. The crash demonstration and the tests use it.
	AfterCommit func(ctx context.Context, step, orderID string) error
}

// Saga places orders and runs the order saga's steps on a bus whose event
// log is an SQLite store. It is safe for concurrent use.
type Saga struct {
	bus         *event.Bus[any]
	db          *sql.DB // the store's writer: see sqlitestore.Store.DB
	out         printer
	afterCommit func(ctx context.Context, step, orderID string) error
	duplicates  atomic.Int64

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a step has handled an event
}

// New creates the domain tables in s if needed and returns a Saga whose
// steps are not running yet (see [Saga.Start]). Close it before s.
func New(ctx context.Context, s *sqlitestore.Store, opts Options) (*Saga, error) {
	if _, err := s.DB().ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("saga: create tables: %w", err)
	}
	out := printer{w: opts.Out}
	bus, err := event.New[any](
		event.WithStore(s),
		event.WithTypes(payloads...),
		// A step fails for transient reasons only (a busy database): retry,
		// and keep what still fails as a dead letter in the store.
		event.WithRetry(event.RetryPolicy{MaxRetries: 5, InitialInterval: 20 * time.Millisecond}),
		event.WithDeadLetter(func(ctx context.Context, dl event.DeadLetter) {
			out.printf("%s: step %s gave up on %s after %d attempts: %v", dl.Event.AggregateID, dl.Subscription, dl.Event.Topic, dl.Attempts, dl.Err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("saga: %w", err)
	}
	return &Saga{bus: bus, db: s.DB(), out: out, afterCommit: opts.AfterCommit, changed: make(chan struct{})}, nil
}

// Start starts the named steps (see [Steps]), or all of them if none is
// named. Each resumes from its checkpoint, so events committed while it was
// not running are handled now.
func (s *Saga) Start(steps ...string) error {
	for _, name := range steps {
		if !slices.Contains(Steps, name) {
			return fmt.Errorf("saga: start: no step %q (the steps are %s)", name, strings.Join(Steps, ", "))
		}
	}
	for _, st := range []struct {
		name  string
		start func(step string) error
	}{
		{"reserve-inventory", func(step string) error { return subscribe(s, topicOrderPlaced, step, s.reserveInventory) }},
		{"process-payment", func(step string) error { return subscribe(s, topicInventoryReserved, step, s.processPayment) }},
		{"send-confirmation", func(step string) error { return subscribe(s, topicPaymentCompleted, step, s.sendConfirmation) }},
		{"release-inventory", func(step string) error { return subscribe(s, topicPaymentFailed, step, s.releaseInventory) }},
		{"cancel-order", func(step string) error { return subscribe(s, "inventory.*", step, s.cancelOrder) }},
	} {
		if len(steps) > 0 && !slices.Contains(steps, st.name) {
			continue
		}
		if err := st.start(st.name); err != nil {
			return fmt.Errorf("saga: start %s: %w", st.name, err)
		}
	}
	return nil
}

// Close stops the steps, each after the event in hand, and closes the bus.
func (s *Saga) Close(ctx context.Context) error { return s.bus.Close(ctx) }

// Duplicates returns how many redelivered events the steps recognised as
// done and skipped.
func (s *Saga) Duplicates() int64 { return s.duplicates.Load() }

// Order is an order's state as the saga's tables hold it.
type Order struct {
	ID            string
	Email         string
	Status        string // pending, confirmed or cancelled
	Reason        string // why it was cancelled
	CorrelationID string // of every event of its saga
	Reservation   string // held, released, or "" for none
	Payment       string // charged, declined, or "" for none
	Confirmations int    // confirmation emails queued
}

// Settled reports whether the order's saga has ended.
func (o Order) Settled() bool { return o.Status == "confirmed" || o.Status == "cancelled" }

// Card numbers that the fake payment provider declines, as in test modes of
// real ones.
const declinedCard = "4000 0000 0000 0002"

// PlaceOrder records a pending order and publishes order.placed in the same
// transaction, and returns the order's ID. The event starts a new
// correlation, which every later event of the order's saga inherits.
func (s *Saga) PlaceOrder(ctx context.Context, email, sku string, quantity int, amountCents int64, card string) (string, error) {
	switch {
	case !strings.Contains(email, "@"):
		return "", fmt.Errorf("saga: place order: email %q has no @", email)
	case sku == "":
		return "", errors.New("saga: place order: empty SKU")
	case quantity <= 0:
		return "", fmt.Errorf("saga: place order: quantity must be positive, got %d", quantity)
	case amountCents <= 0:
		return "", fmt.Errorf("saga: place order: amount must be positive, got %d cents", amountCents)
	case card == "":
		return "", errors.New("saga: place order: empty card number")
	}
	correlation, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("saga: place order: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("saga: place order: %w", err)
	}
	defer tx.Rollback()
	// The transaction holds SQLite's write lock from BEGIN, so the count
	// cannot change before the insert.
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM orders`).Scan(&n); err != nil {
		return "", fmt.Errorf("saga: place order: %w", err)
	}
	id := fmt.Sprintf("order-%d", n+1)
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id, email, sku, quantity, amount_cents, card, status, correlation_id) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)`,
		id, email, sku, quantity, amountCents, card, correlation.String()); err != nil {
		return "", fmt.Errorf("saga: place order: %w", err)
	}
	placed := OrderPlaced{OrderID: id, SKU: sku, Quantity: quantity, Amount: amountCents}
	if err := s.publish(ctx, tx, id, topicOrderPlaced, placed, event.Correlation(correlation)); err != nil {
		return "", fmt.Errorf("saga: place order: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("saga: place order: %w", err)
	}
	s.out.printf("%s: placed by %s: %d × %s for %s", id, email, quantity, sku, money(amountCents))
	return id, nil
}

// AddStock adds n items of sku to the inventory.
func (s *Saga) AddStock(ctx context.Context, sku string, n int) error {
	if sku == "" || n <= 0 {
		return fmt.Errorf("saga: add stock: need a SKU and a positive count, got %q and %d", sku, n)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO inventory (sku, in_stock) VALUES (?, ?) ON CONFLICT (sku) DO UPDATE SET in_stock = in_stock + excluded.in_stock`, sku, n)
	if err != nil {
		return fmt.Errorf("saga: add stock: %w", err)
	}
	return nil
}

// Stock returns how many items of sku are in stock and not reserved.
func (s *Saga) Stock(ctx context.Context, sku string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT in_stock FROM inventory WHERE sku = ?`, sku).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("saga: stock of %s: %w", sku, err)
	}
	return n, nil
}

// Order returns the order's state, or an error wrapping [store.ErrNotFound].
func (s *Saga) Order(ctx context.Context, id string) (Order, error) {
	o := Order{ID: id}
	err := s.db.QueryRowContext(ctx, `
		SELECT o.email, o.status, o.reason, o.correlation_id,
			coalesce((SELECT status FROM reservations WHERE order_id = o.id), ''),
			coalesce((SELECT status FROM payments WHERE order_id = o.id), ''),
			(SELECT count(*) FROM confirmations WHERE order_id = o.id)
		FROM orders o WHERE o.id = ?`, id).
		Scan(&o.Email, &o.Status, &o.Reason, &o.CorrelationID, &o.Reservation, &o.Payment, &o.Confirmations)
	if errors.Is(err, sql.ErrNoRows) {
		return Order{}, fmt.Errorf("saga: order %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return Order{}, fmt.Errorf("saga: order %s: %w", id, err)
	}
	return o, nil
}

// Pending returns the IDs of the orders whose saga has not ended.
func (s *Saga) Pending(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM orders WHERE status = 'pending' ORDER BY rowid`)
	if err != nil {
		return nil, fmt.Errorf("saga: pending orders: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("saga: pending orders: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("saga: pending orders: %w", err)
	}
	return ids, nil
}

// Wait waits until the sagas of the given orders have ended, or ctx is
// done, and returns their final states.
func (s *Saga) Wait(ctx context.Context, ids ...string) ([]Order, error) {
	var orders []Order
	err := s.waitUntil(ctx, func() (bool, error) {
		orders = orders[:0]
		for _, id := range ids {
			o, err := s.Order(ctx, id)
			if err != nil || !o.Settled() {
				return false, err
			}
			orders = append(orders, o)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("saga: wait for %d orders: %w", len(ids), err)
	}
	return orders, nil
}

// waitUntil waits until cond holds, looking again each time a step has
// handled an event.
func (s *Saga) waitUntil(ctx context.Context, cond func() (bool, error)) error {
	for {
		// Take the channel before looking, so that a change after the look
		// closes the channel this call waits on.
		s.mu.Lock()
		changed := s.changed
		s.mu.Unlock()
		if ok, err := cond(); ok || err != nil {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// handled wakes the callers of waitUntil.
func (s *Saga) handled() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
}

// Events returns the events of the order's saga from the log, in order.
func (s *Saga) Events(ctx context.Context, orderID string) ([]event.Event[any], error) {
	var evs []event.Event[any]
	_, err := event.Replay(ctx, s.bus, store.Query{AggregateID: orderID}, func(ctx context.Context, ev event.Event[any]) error {
		evs = append(evs, ev)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("saga: events of %s: %w", orderID, err)
	}
	return evs, nil
}

// The steps. Each runs in the transaction that [Saga.step] opens, and
// returns the event to publish in it and a line saying what it did.

func (s *Saga) reserveInventory(ctx context.Context, tx *sql.Tx, ev event.Event[OrderPlaced]) (next, error) {
	o := ev.Payload
	var inStock int
	err := tx.QueryRowContext(ctx, `SELECT in_stock FROM inventory WHERE sku = ?`, o.SKU).Scan(&inStock)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return next{}, err
	}
	if inStock < o.Quantity {
		miss := InventoryUnavailable{OrderID: o.OrderID, SKU: o.SKU, Wanted: o.Quantity, InStock: inStock}
		return next{topicInventoryUnavailable, miss, miss.cancelReason()}, nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE inventory SET in_stock = in_stock - ? WHERE sku = ?`, o.Quantity, o.SKU); err != nil {
		return next{}, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO reservations (order_id, sku, quantity, status) VALUES (?, ?, ?, 'held')`, o.OrderID, o.SKU, o.Quantity); err != nil {
		return next{}, err
	}
	return next{topicInventoryReserved, InventoryReserved{OrderID: o.OrderID, SKU: o.SKU, Quantity: o.Quantity},
		fmt.Sprintf("reserved %d × %s (%d left)", o.Quantity, o.SKU, inStock-o.Quantity)}, nil
}

func (s *Saga) processPayment(ctx context.Context, tx *sql.Tx, ev event.Event[InventoryReserved]) (next, error) {
	id := ev.Payload.OrderID
	var amount int64
	var card string
	if err := tx.QueryRowContext(ctx, `SELECT amount_cents, card FROM orders WHERE id = ?`, id).Scan(&amount, &card); err != nil {
		return next{}, err
	}
	// A real provider is called outside the transaction, with the event's
	// ID as the idempotency key, so that a redelivered event cannot charge
	// twice. This one decides at once.
	status, reference, reason := "charged", "ch_"+ev.ID.String()[24:], ""
	if card == declinedCard {
		status, reference, reason = "declined", "", "payment declined: card ending "+card[len(card)-4:]
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO payments (order_id, amount_cents, status, reference) VALUES (?, ?, ?, ?)`, id, amount, status, reference); err != nil {
		return next{}, err
	}
	if status == "declined" {
		return next{topicPaymentFailed, PaymentFailed{OrderID: id, Reason: reason}, reason}, nil
	}
	return next{topicPaymentCompleted, PaymentCompleted{OrderID: id, Amount: amount, Reference: reference},
		fmt.Sprintf("charged %s (%s)", money(amount), reference)}, nil
}

func (s *Saga) sendConfirmation(ctx context.Context, tx *sql.Tx, ev event.Event[PaymentCompleted]) (next, error) {
	id := ev.Payload.OrderID
	var email string
	if err := tx.QueryRowContext(ctx, `UPDATE orders SET status = 'confirmed' WHERE id = ? RETURNING email`, id).Scan(&email); err != nil {
		return next{}, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO confirmations (order_id, email) VALUES (?, ?)`, id, email); err != nil {
		return next{}, err
	}
	return next{topicOrderConfirmed, OrderConfirmed{OrderID: id, Email: email}, "confirmed; email to " + email + " queued"}, nil
}

// releaseInventory compensates reserveInventory.
func (s *Saga) releaseInventory(ctx context.Context, tx *sql.Tx, ev event.Event[PaymentFailed]) (next, error) {
	id := ev.Payload.OrderID
	var sku string
	var quantity int
	err := tx.QueryRowContext(ctx, `UPDATE reservations SET status = 'released' WHERE order_id = ? AND status = 'held' RETURNING sku, quantity`, id).Scan(&sku, &quantity)
	if err != nil {
		return next{}, fmt.Errorf("release the reservation of %s: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE inventory SET in_stock = in_stock + ? WHERE sku = ?`, quantity, sku); err != nil {
		return next{}, err
	}
	return next{topicInventoryReleased, InventoryReleased{OrderID: id, SKU: sku, Quantity: quantity, Reason: ev.Payload.Reason},
		fmt.Sprintf("released %d × %s", quantity, sku)}, nil
}

func (s *Saga) cancelOrder(ctx context.Context, tx *sql.Tx, ev event.Event[cancellation]) (next, error) {
	id, reason := ev.AggregateID, ev.Payload.cancelReason()
	if _, err := tx.ExecContext(ctx, `UPDATE orders SET status = 'cancelled', reason = ? WHERE id = ?`, reason, id); err != nil {
		return next{}, err
	}
	return next{topicOrderCancelled, OrderCancelled{OrderID: id, Reason: reason}, "cancelled: " + reason}, nil
}

// next is what a step publishes when it is done.
type next struct {
	topic   string
	payload any
	say     string
}

// subscribe runs do as the durable subscription step, for events on topic.
func subscribe[E any](s *Saga, topic, step string, do func(context.Context, *sql.Tx, event.Event[E]) (next, error)) error {
	_, err := event.Subscribe(s.bus, topic, func(ctx context.Context, ev event.Event[E]) error {
		return s.step(ctx, step, ev.ID, ev.AggregateID, func(tx *sql.Tx) (next, error) { return do(ctx, tx, ev) })
	}, event.Durable(step))
	return err
}

// step runs one step for one event in one transaction: it marks the event
// as processed by the step, does the step's work and publishes the next
// event. They commit together or not at all, so a crash at any moment
// leaves either nothing done, and the event is delivered again, or all of
// it done, and the redelivered event finds its mark and is skipped.
func (s *Saga) step(ctx context.Context, step string, eventID uuid.UUID, orderID string, do func(*sql.Tx) (next, error)) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO processed_events (step, event_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, step, eventID.String())
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		s.duplicates.Add(1)
		s.out.printf("%s: %s: event %s was already handled (a redelivery), skipped", orderID, step, eventID)
		s.handled()
		return nil
	}
	nx, err := do(tx)
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	// Published with the handler's ctx: the next event inherits the
	// saga's correlation ID and records this event as its cause.
	if err := s.publish(ctx, tx, orderID, nx.topic, nx.payload); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.out.printf("%s: %s: %s", orderID, step, nx.say)
	s.handled()
	if s.afterCommit != nil {
		return s.afterCommit(ctx, step, orderID)
	}
	return nil
}

// publish appends an event of the order's saga in tx: the outbox.
func (s *Saga) publish(ctx context.Context, tx *sql.Tx, orderID, topic string, payload any, opts ...event.PublishOption) error {
	return s.bus.PublishTx(ctx, tx, topic, payload, append(opts, event.Aggregate(orderID))...)
}

func money(cents int64) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }

// printer writes the steps' lines, one Write each.
type printer struct{ w io.Writer }

func (p printer) printf(format string, args ...any) {
	if p.w != nil {
		fmt.Fprintf(p.w, format+"\n", args...)
	}
}

// syncWriter serialises writes from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
