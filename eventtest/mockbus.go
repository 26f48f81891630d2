package eventtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// MockBus is a test double for [event.Bus]: it records every event
// published to it, with the envelope a real bus stamps, and can be told to
// fail publishes so that a test can exercise a service's error path. Give it
// to code that depends on [event.Publisher], [event.TxPublisher] or
// [event.Subscriber]; subscribe to it with [event.Subscribe], as to a bus.
//
// Inside, a MockBus is a real synchronous bus (see [event.WithSync]), so the
// recorded envelopes are exactly what handlers would receive: IDs, times,
// kinds, aggregate IDs, metadata, and correlation and causation IDs of
// events published from a handler's context. Handlers registered with
// [event.Subscribe] are kept but only run when the bus was created with
// [RunHandlers]; they then run in the publisher's goroutine, inside Publish.
//
// Create one with [NewMockBus]; the zero value is not usable. A MockBus
// starts no goroutines, so a test need not close it. It is safe for
// concurrent use by multiple goroutines.
type MockBus[T any] struct {
	inner *event.Bus[T]
	cfg   config

	mu         sync.Mutex
	published  []event.Event[T]
	failed     []FailedPublish[T]
	handlerErr []error
	subs       []*event.Subscription
	failNext   []error
	failTopic  []topicFailure
	inTx       []uuid.UUID // IDs of events recorded by PublishTx
}

var (
	_ event.Publisher[any]   = (*MockBus[any])(nil)
	_ event.TxPublisher[any] = (*MockBus[any])(nil)
	_ event.Subscriber[any]  = (*MockBus[any])(nil)
)

// FailedPublish is a call to [MockBus.Publish] that returned an error: one
// configured with [MockBus.FailNext] or [MockBus.FailTopic], or one the bus
// itself returned (an invalid topic, a done context, a closed bus). It is a
// copy, owned by the caller of [MockBus.FailedPublishes].
type FailedPublish[T any] struct {
	// Topic is the topic passed to Publish.
	Topic string
	// Payload is the payload passed to Publish.
	Payload T
	// Err is the error Publish returned.
	Err error
}

type topicFailure struct {
	pattern string
	err     error
}

// An Option configures a [MockBus] in [NewMockBus]. Options are values
// without state of their own and may be reused.
type Option func(*config)

type config struct {
	runHandlers bool
	tb          testing.TB
}

// RunHandlers makes the mock run the handlers registered with
// [event.Subscribe] when an event is published, synchronously, inside
// [MockBus.Publish]. Default: handlers are registered (so a service's
// subscriptions can be checked with [MockBus.Subscriptions]) but never run,
// so that a unit test of a publisher does not also exercise its
// subscribers.
func RunHandlers() Option { return func(c *config) { c.runHandlers = true } }

// WithTB makes a handler failure (an error or a panic, after the
// subscription's retries) fail the test through tb.Errorf, with the
// subscription, topic, event ID and error in the message. Errorf rather than
// Fatalf because the handler runs in the publisher's goroutine, which need
// not be the test's. Without it, failures are only recorded, for
// [MockBus.HandlerErrors]. Default: nil.
func WithTB(tb testing.TB) Option { return func(c *config) { c.tb = tb } }

// NewMockBus returns an empty MockBus configured by opts.
func NewMockBus[T any](opts ...Option) *MockBus[T] {
	m := &MockBus[T]{}
	for _, o := range opts {
		o(&m.cfg)
	}
	inner, err := event.New[T](event.WithSync(), event.WithDeadLetter(m.deadLetter))
	if err != nil {
		panic("eventtest: new mock bus: " + err.Error()) // unreachable: fixed, valid options
	}
	m.inner = inner
	// Subscribed first, the recorder runs before every handler, so an event
	// is recorded before the events its handlers publish.
	if _, err := event.Subscribe(inner, ">", m.record, event.Name("eventtest.MockBus")); err != nil {
		panic("eventtest: new mock bus: " + err.Error()) // unreachable: ">" is valid
	}
	return m
}

func (m *MockBus[T]) record(ctx context.Context, ev event.Event[T]) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.published = append(m.published, ev)
	if mark, _ := ctx.Value(txKey{}).(*txMark); mark != nil {
		if mark.tx[ev.CausationID] || mark.nested[ev.CausationID] {
			mark.nested[ev.ID] = true
		} else {
			mark.tx[ev.ID] = true
			m.inTx = append(m.inTx, ev.ID)
		}
	}
	return nil
}

func (m *MockBus[T]) deadLetter(_ context.Context, dl event.DeadLetter) {
	err := fmt.Errorf("eventtest: handler %q failed on %s event %s after %d attempt(s): %w",
		dl.Subscription, dl.Event.Topic, dl.Event.ID, dl.Attempts, dl.Err)
	m.mu.Lock()
	m.handlerErr = append(m.handlerErr, err)
	m.mu.Unlock()
	if m.cfg.tb != nil {
		m.cfg.tb.Errorf("%v", err)
	}
}

// Publish publishes payload to topic, as [event.Bus.Publish] does, and
// records the stamped event for [MockBus.Published] and [MockBus.All].
//
// A failure configured with [MockBus.FailNext] or [MockBus.FailTopic] is
// returned as given (not wrapped), so a test can compare it with ==. A
// publish that fails, for that or any other reason, is recorded only in
// [MockBus.FailedPublishes]: the event was not published. A handler's
// failure is not Publish's, as on a real bus; see [MockBus.HandlerErrors].
func (m *MockBus[T]) Publish(ctx context.Context, topic string, payload T, opts ...event.PublishOption) error {
	err := m.configuredFailure(topic)
	if err == nil {
		err = m.inner.Publish(ctx, topic, payload, opts...)
	}
	if err != nil {
		m.mu.Lock()
		m.failed = append(m.failed, FailedPublish[T]{Topic: topic, Payload: payload, Err: err})
		m.mu.Unlock()
	}
	return err
}

// PublishTx records an event published inside the caller's transaction
// (see [event.Bus.PublishTx]) as if the transaction committed: a mock has
// no store, so tx is not used, and the event is recorded, and delivered to
// handlers run with [RunHandlers], just as [MockBus.Publish] does. The
// events it recorded are also listed by [MockBus.PublishedTx], so a test can
// check that a service used its transaction. A nil tx fails, as it would on
// a real bus.
func (m *MockBus[T]) PublishTx(ctx context.Context, tx any, topic string, payload T, opts ...event.PublishOption) error {
	if tx == nil {
		err := fmt.Errorf("eventtest: publish %s in transaction: nil transaction", topic)
		m.mu.Lock()
		m.failed = append(m.failed, FailedPublish[T]{Topic: topic, Payload: payload, Err: err})
		m.mu.Unlock()
		return err
	}
	// The recorder, which runs first, marks the events it records with this
	// mark; it tells the events that handlers publish in turn by their cause.
	return m.Publish(context.WithValue(ctx, txKey{}, newTxMark()), topic, payload, opts...)
}

// PublishBatchTx records events published together inside the caller's
// transaction (see [event.Bus.PublishBatchTx]), as [MockBus.PublishTx]
// does for one: as if the transaction committed, all of them or, if one
// is invalid, none. A failure configured with [MockBus.FailNext] or
// [MockBus.FailTopic] is taken per message, and fails the whole batch.
func (m *MockBus[T]) PublishBatchTx(ctx context.Context, tx any, msgs []event.Message[T]) error {
	if tx == nil {
		err := errors.New("eventtest: publish batch in transaction: nil transaction")
		m.mu.Lock()
		for _, msg := range msgs {
			m.failed = append(m.failed, FailedPublish[T]{Topic: msg.Topic, Payload: msg.Payload, Err: err})
		}
		m.mu.Unlock()
		return err
	}
	for _, msg := range msgs {
		if err := m.configuredFailure(msg.Topic); err != nil {
			m.mu.Lock()
			m.failed = append(m.failed, FailedPublish[T]{Topic: msg.Topic, Payload: msg.Payload, Err: err})
			m.mu.Unlock()
			return err
		}
	}
	err := m.inner.PublishBatch(context.WithValue(ctx, txKey{}, newTxMark()), msgs)
	if err != nil {
		m.mu.Lock()
		for _, msg := range msgs {
			m.failed = append(m.failed, FailedPublish[T]{Topic: msg.Topic, Payload: msg.Payload, Err: err})
		}
		m.mu.Unlock()
	}
	return err
}

type txKey struct{}

// txMark marks the events of one PublishTx or PublishBatchTx call, apart
// from the events their handlers publish, which have one of them (or one
// of those) as their cause.
type txMark struct{ tx, nested map[uuid.UUID]bool }

func newTxMark() *txMark {
	return &txMark{tx: map[uuid.UUID]bool{}, nested: map[uuid.UUID]bool{}}
}

// PublishedTx returns the events recorded by [MockBus.PublishTx] whose topic
// matches topic (a pattern with wildcards, as in [MockBus.Published]), in
// order.
func (m *MockBus[T]) PublishedTx(topic string) []event.Event[T] {
	m.mu.Lock()
	ids := make(map[uuid.UUID]bool, len(m.inTx))
	for _, id := range m.inTx {
		ids[id] = true
	}
	m.mu.Unlock()
	var out []event.Event[T]
	for _, ev := range m.Published(topic) {
		if ids[ev.ID] {
			out = append(out, ev)
		}
	}
	return out
}

func (m *MockBus[T]) configuredFailure(topic string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.failNext) > 0 {
		err := m.failNext[0]
		m.failNext = slices.Delete(m.failNext, 0, 1)
		if err != nil {
			return err
		}
	}
	for _, f := range m.failTopic {
		if store.MatchTopic(f.pattern, topic) {
			return f.err
		}
	}
	return nil
}

// Handle registers h for events whose topic matches pattern: it is the
// method behind [event.Subscribe], which is how a service subscribes, on a
// mock as on a bus. The pattern and options are validated as on a real bus.
// h runs only if the mock was created with [RunHandlers]; either way the
// subscription is listed by [MockBus.Subscriptions].
func (m *MockBus[T]) Handle(pattern string, h event.Handler[T], opts ...event.SubscribeOption) (*event.Subscription, error) {
	if h == nil {
		panic("eventtest: Subscribe with nil handler")
	}
	run := h
	if !m.cfg.runHandlers {
		run = func(context.Context, event.Event[T]) error { return nil }
	}
	sub, err := m.inner.Handle(pattern, run, opts...)
	if err != nil {
		return nil, fmt.Errorf("eventtest: subscribe: %w", err)
	}
	m.mu.Lock()
	m.subs = append(m.subs, sub)
	m.mu.Unlock()
	return sub, nil
}

// Subscriptions returns the subscriptions made with [event.Subscribe], in
// order, including any since unsubscribed. [MockBus.Reset] keeps them.
func (m *MockBus[T]) Subscriptions() []*event.Subscription {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.subs)
}

// FailNext makes the next call to [MockBus.Publish], whatever its topic,
// return err without publishing. Calls queue up: n calls to FailNext decide
// the next n publishes, in order, so FailNext(nil) then FailNext(err) lets
// one publish through (unless [MockBus.FailTopic] fails it) and fails the
// one after. A non-nil err takes precedence over FailTopic.
func (m *MockBus[T]) FailNext(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failNext = append(m.failNext, err)
}

// FailTopic makes every call to [MockBus.Publish] with a topic matching
// pattern return err without publishing, until FailTopic is called again
// with the same pattern and a nil err. pattern is a topic or a pattern with
// wildcards, as in [event.Subscribe]; an invalid pattern panics, as it is a
// mistake in the test. When several patterns match, the first configured
// wins.
func (m *MockBus[T]) FailTopic(pattern string, err error) {
	if verr := store.ValidatePattern(pattern); verr != nil {
		panic(fmt.Sprintf("eventtest: FailTopic: %v", verr))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.failTopic, func(f topicFailure) bool { return f.pattern == pattern })
	switch {
	case i >= 0 && err == nil:
		m.failTopic = slices.Delete(m.failTopic, i, i+1)
	case i >= 0:
		m.failTopic[i].err = err
	case err != nil:
		m.failTopic = append(m.failTopic, topicFailure{pattern, err})
	}
}

// PublishedCount returns how many events were published to topics matching
// topic, which may be a pattern with wildcards ("user.*", "user.>"). An
// invalid pattern matches nothing.
func (m *MockBus[T]) PublishedCount(topic string) int {
	return len(m.Published(topic))
}

// Published returns the events published to topics matching topic, which
// may be a pattern with wildcards, in the order they were recorded. An
// invalid pattern matches nothing. Events published from concurrent
// goroutines are in the order their publishes reached the bus.
func (m *MockBus[T]) Published(topic string) []event.Event[T] {
	if store.ValidatePattern(topic) != nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []event.Event[T]
	for _, ev := range m.published {
		if store.MatchTopic(topic, ev.Topic) {
			out = append(out, ev)
		}
	}
	return out
}

// All returns every event published, in the order they were recorded.
func (m *MockBus[T]) All() []event.Event[T] {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.published)
}

// FailedPublishes returns the calls to [MockBus.Publish] that returned an
// error, in order.
func (m *MockBus[T]) FailedPublishes() []FailedPublish[T] {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.failed)
}

// HandlerErrors returns the failures of handlers run by the mock (see
// [RunHandlers]), in order: one per event a handler failed to handle after
// its subscription's retries. Each error names the subscription, topic and
// event ID, and wraps the handler's error, so errors.Is and errors.As see
// through it (a panic is an [*event.PanicError]).
func (m *MockBus[T]) HandlerErrors() []error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.handlerErr)
}

// Reset forgets what was recorded: published events, failed publishes and
// handler errors. Subscriptions and configured failures stay.
func (m *MockBus[T]) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.published, m.failed, m.handlerErr, m.inTx = nil, nil, nil, nil
}

// Close closes the mock as [event.Bus.Close] does: later publishes return
// [event.ErrClosed]. Publishes already running finish first, handlers
// included. Calling Close is optional: a MockBus holds no goroutines.
func (m *MockBus[T]) Close(ctx context.Context) error {
	return m.inner.Close(ctx)
}
