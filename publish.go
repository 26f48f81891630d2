package event

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ncore-io/event/store"
)

// The publish path. Every way of publishing reads as the same three steps:
//
//  1. admit: take a unit of in-flight work (see queue.go), or refuse with
//     ErrClosed; the unit is released by a defer, so no return path, panic
//     included, can keep Close waiting.
//  2. prepare: validate the topic and the envelope, stamp it (ID, time,
//     causation), and, on a bus with a store, persist it: the event is
//     published once the store has it, and not at all if the store refuses.
//  3. dispatch: hand it to the in-process subscriptions, queued for the
//     workers or run in the caller's goroutine. Durable subscriptions are
//     not dispatched to: they read the store.

// Publish publishes payload to topic. It stamps the envelope (a new UUIDv7
// ID, the time, and the options), then delivers it: synchronous
// subscriptions run before Publish returns, asynchronous ones are queued for
// the workers. An event that no subscription matches is counted in
// [Stats].NoSubscriber and is not an error.
//
// On a bus with a store ([WithStore]) Publish first appends the event, and
// returns the store's error if the append fails; the event is then not
// published. If the outcome cannot be known (ctx ended while the store was
// committing), the error matches [ErrMaybePublished]: publishing again with
// [MaybePublishedError.RetryAs] stores the event exactly once.
//
// On a bus without a store, when the queue is full Publish waits for room
// until ctx is done, and then returns ctx's error; with [WithFailFast] it
// returns [ErrQueueFull] at once. Either way the event was not published. On
// a bus with a store the event is published once stored, so it does not
// wait for queue room: the store's commit rate paces publishers instead. A
// handler that publishes with the context it was given never waits for
// room, so handlers cannot deadlock the bus, and the new event records the
// handled one as its cause.
//
// Publish returns an error matching [ErrInvalidTopic] for an invalid topic,
// one matching [ErrInvalidEvent] for an envelope no store could keep, and
// [ErrClosed] once Close has begun (except from handlers still draining). A
// handler's failure is not Publish's: it is retried and dead-lettered per
// the subscription.
func (b *Bus[T]) Publish(ctx context.Context, topic string, payload T, opts ...PublishOption) error {
	if ctx == nil {
		return errNilContext("publish " + topic)
	}
	parent, nested := b.caller(ctx)
	if !b.admit(nested) {
		return ErrClosed
	}
	defer b.release()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("event: publish %s: %w", topic, err)
	}
	rt, err := b.routes.Load().lookup(topic)
	if err != nil {
		return topicError(err)
	}
	if b.store == nil && len(rt.async) == 0 {
		return b.publishSync(ctx, parent, rt, topic, payload, opts)
	}
	d, exp, err := b.prepareOn(ctx, parent, rt, topic, payload, opts)
	if err != nil {
		return err
	}
	if b.store != nil {
		ds, exps := [1]*delivery[T]{d}, [1]expectation{exp}
		if err := b.persist(ctx, ds[:], exps[:]); err != nil {
			return publishError("publish "+topic, ds[:], err)
		}
	}
	if err := b.dispatch(ctx, d, nested || b.store != nil); err != nil {
		return fmt.Errorf("event: publish %s: %w", topic, err)
	}
	return nil
}

// Message is one event of a [Bus.PublishBatch]: what [Bus.Publish] takes as
// arguments.
type Message[T any] struct {
	Topic   string
	Payload T
	Options []PublishOption
}

// PublishBatch publishes several events, of one or several topics and
// aggregates, all or none. Each is stamped and validated as by
// [Bus.Publish]; if any is invalid, none is published and the error names
// its index. On a bus with a store the events are appended in one atomic
// store call, in order, so they commit together; [ExpectVersion] on an
// event is honoured for its aggregate (on a later event of an aggregate
// that has several in the batch it must count the batch's earlier ones).
// Once stored, or on a bus without a store once validated, every event is
// delivered in process as by Publish, in order, without waiting for queue
// room: a batch is never partly queued. An empty batch publishes nothing.
func (b *Bus[T]) PublishBatch(ctx context.Context, msgs []Message[T]) error {
	if ctx == nil {
		return errNilContext("publish batch")
	}
	parent, nested := b.caller(ctx)
	if !b.admit(nested) {
		return ErrClosed
	}
	defer b.release()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("event: publish batch: %w", err)
	}
	if len(msgs) == 0 {
		return nil
	}
	ds, exps, err := b.prepareBatch(ctx, parent, msgs)
	if err != nil {
		return fmt.Errorf("event: publish batch: %w", err)
	}
	if b.store != nil {
		if err := b.persist(ctx, ds, exps); err != nil {
			return publishError("publish batch", ds, err)
		}
	}
	for _, d := range ds {
		if err := b.dispatch(ctx, d, true); err != nil {
			return fmt.Errorf("event: publish batch: %w", err) // unreachable: dispatch without waiting cannot fail
		}
	}
	return nil
}

// PublishTx appends an event to the bus's store inside the caller's
// transaction tx, the transactional outbox: the event is stored if and only
// if tx commits, together with whatever else tx writes. Durable
// subscriptions ([Durable]) deliver it after the commit; in-process
// subscriptions do not see it, since it may yet be rolled back. It is
// counted in [Stats].Published when a durable subscription of this bus
// first reads it, as only then is it known to have committed.
//
// tx is the store's transaction type: *sql.Tx for store/sqlitestore, pgx.Tx
// for store/pgstore. The bus's store must implement [store.TxAppender], and
// PublishTx returns an error naming the types otherwise. Its options are
// those of [Bus.Publish]; the event's envelope is checked as by Publish.
//
// On PostgreSQL, an event of an aggregate that a transaction begun after tx
// has appended to fails with [store.ErrTxConflict]: roll tx back and run
// it again, as after a serialization failure.
func (b *Bus[T]) PublishTx(ctx context.Context, tx any, topic string, payload T, opts ...PublishOption) error {
	op := "publish " + topic + " in transaction"
	if ctx == nil {
		return errNilContext(op)
	}
	txs, err := b.txAppender(op)
	if err != nil {
		return err
	}
	parent, nested := b.caller(ctx)
	if !b.admit(nested) {
		return fmt.Errorf("event: %s: %w", op, ErrClosed)
	}
	defer b.release()
	d, exp, err := b.prepare(ctx, parent, topic, payload, opts)
	if err != nil {
		return err
	}
	ds, exps := [1]*delivery[T]{d}, [1]expectation{exp}
	if err := b.appendInTx(ctx, txs, tx, ds[:], exps[:]); err != nil {
		return fmt.Errorf("event: %s: %w", op, err)
	}
	return nil
}

// PublishBatchTx is [Bus.PublishTx] for several events: it appends them
// inside the caller's transaction tx in one store call (one round trip on
// store/pgstore), all or none, with the checks and expectations of
// [Bus.PublishBatch]. Like PublishTx, it delivers nothing in process:
// durable subscriptions deliver the events once tx commits. An empty batch
// stores nothing.
func (b *Bus[T]) PublishBatchTx(ctx context.Context, tx any, msgs []Message[T]) error {
	const op = "publish batch in transaction"
	if ctx == nil {
		return errNilContext(op)
	}
	txs, err := b.txAppender(op)
	if err != nil {
		return err
	}
	parent, nested := b.caller(ctx)
	if !b.admit(nested) {
		return fmt.Errorf("event: %s: %w", op, ErrClosed)
	}
	defer b.release()
	if len(msgs) == 0 {
		return nil
	}
	ds, exps, err := b.prepareBatch(ctx, parent, msgs)
	if err == nil {
		err = b.appendInTx(ctx, txs, tx, ds, exps)
	}
	if err != nil {
		return fmt.Errorf("event: %s: %w", op, err)
	}
	return nil
}

// txAppender returns the bus's store as a TxAppender, or op's error.
func (b *Bus[T]) txAppender(op string) (store.TxAppender, error) {
	if b.store == nil {
		return nil, fmt.Errorf("event: %s: %w", op, ErrNoStore)
	}
	txs, ok := b.store.(store.TxAppender)
	if !ok {
		return nil, fmt.Errorf("event: %s: the store (%T) cannot append in a transaction of the caller's", op, b.store)
	}
	return txs, nil
}

// appendInTx appends the events of ds in the caller's transaction, and
// remembers those a durable subscription of this bus takes, to count them
// once one reads them (see outboxSeen).
func (b *Bus[T]) appendInTx(ctx context.Context, txs store.TxAppender, tx any, ds []*delivery[T], exps []expectation) error {
	recs, expect, err := b.records(ds, exps)
	if err != nil {
		return err
	}
	if err := txs.AppendInTx(ctx, tx, recs, expect...); err != nil {
		return err
	}
	for _, d := range ds {
		if takes(d.route.durable, d.ev.Payload) {
			b.outbox.add(d.ev.ID)
		}
	}
	return nil
}

// prepareBatch prepares the events of msgs, as prepare does, and folds
// their expectations into one per aggregate.
func (b *Bus[T]) prepareBatch(ctx context.Context, parent deliveryInfo, msgs []Message[T]) ([]*delivery[T], []expectation, error) {
	ds := make([]*delivery[T], len(msgs))
	exps := make([]expectation, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		d, exp, err := b.prepare(ctx, parent, m.Topic, m.Payload, m.Options)
		if err != nil {
			return nil, nil, fmt.Errorf("message %d: %w", i, err)
		}
		ds[i], exps[i] = d, exp
	}
	if err := batchExpectations(ds, exps); err != nil {
		return nil, nil, err
	}
	return ds, exps, nil
}

// records encodes the events of ds for the store, with their expectations.
func (b *Bus[T]) records(ds []*delivery[T], exps []expectation) ([]store.Record, []store.Expect, error) {
	recs := make([]store.Record, len(ds))
	var expect []store.Expect
	for i, d := range ds {
		rec, err := b.encode(&d.ev)
		if err != nil {
			return nil, nil, err
		}
		recs[i] = rec
		if exps[i].set {
			expect = append(expect, store.Expect{AggregateID: d.ev.AggregateID, Version: exps[i].version})
		}
	}
	return recs, expect, nil
}

// expectation is an [ExpectVersion] option, if any.
type expectation struct {
	set     bool
	version int64
}

// prepare validates and stamps a new event, and finds its route.
func (b *Bus[T]) prepare(ctx context.Context, parent deliveryInfo, topic string, payload T, opts []PublishOption) (*delivery[T], expectation, error) {
	rt, err := b.routes.Load().lookup(topic)
	if err != nil {
		return nil, expectation{}, topicError(err)
	}
	return b.prepareOn(ctx, parent, rt, topic, payload, opts)
}

// prepareOn is prepare with the topic's route rt.
func (b *Bus[T]) prepareOn(ctx context.Context, parent deliveryInfo, rt *route[T], topic string, payload T, opts []PublishOption) (*delivery[T], expectation, error) {
	d := b.newDelivery()
	d.parent, d.route = ctx, rt
	exp, err := b.stamp(parent, &d.ev, topic, payload, opts)
	if err != nil {
		return nil, exp, err
	}
	return d, exp, nil
}

// publishSync is Publish on a bus without a store of an event whose route
// rt has only synchronous subscriptions (every route on a bus made
// WithSync), so nothing queues it: the event stays in this frame, and the
// one allocation is the handlers' small context.
func (b *Bus[T]) publishSync(ctx context.Context, parent deliveryInfo, rt *route[T], topic string, payload T, opts []PublishOption) error {
	var ev Event[T]
	if _, err := b.stamp(parent, &ev, topic, payload, opts); err != nil {
		return err
	}
	b.stats.published.Add(1)
	if !takes(rt.sync, ev.Payload) {
		b.stats.noSubscriber.Add(1)
		return nil
	}
	b.deliverSync(ctx, rt, &ev)
	return nil
}

// deliverSync runs the synchronous subscriptions of rt that take ev, in
// the caller's goroutine, with the publisher's context.
func (b *Bus[T]) deliverSync(ctx context.Context, rt *route[T], ev *Event[T]) {
	hc := newDeliveryCtx(b, ctx, ev, false)
	for _, s := range rt.sync {
		if !s.removed.Load() && (s.accepts == nil || s.accepts(ev.Payload)) {
			b.deliver(s, hc, ev)
		}
	}
}

//go:noinline
func topicError(err error) error { return fmt.Errorf("event: publish: %w", err) }

// check checks a stamped event's envelope and expectation. The clock's time
// needs no check, so an event with the default envelope skips the call.
func (b *Bus[T]) check(ev *Event[T], exp expectation, timeGiven bool) error {
	topic := ev.Topic
	if err := checkEnvelope(ev, timeGiven); err != nil {
		return fmt.Errorf("event: publish %s: %w", topic, err)
	}
	if exp.set {
		switch {
		case b.store == nil:
			return fmt.Errorf("event: publish %s: ExpectVersion: %w", topic, ErrNoStore)
		case ev.AggregateID == "":
			return fmt.Errorf("event: publish %s: ExpectVersion needs an aggregate ID (see Aggregate)", topic)
		case exp.version < 0:
			return fmt.Errorf("event: publish %s: ExpectVersion %d is negative", topic, exp.version)
		}
	}
	return nil
}

// stamp fills in the zero ev of a new event: the envelope with its ID,
// time, options, and causation from the handler's context, if any (parent);
// then checks it. It returns the event's expectation. The checks that most
// events skip, and their errors, are in check, which keeps this function's
// frame small: it is on every publish's path. It keeps no reference to ev.
func (b *Bus[T]) stamp(parent deliveryInfo, ev *Event[T], topic string, payload T, opts []PublishOption) (expectation, error) {
	ev.Topic = topic
	ev.Kind = KindDomain
	ev.Payload = payload
	var exp expectation
	for i := range opts {
		if opts[i].op == opExpect {
			exp = expectation{set: true, version: opts[i].n}
			continue
		}
		apply(ev, &opts[i])
	}
	var stamp int64 // Unix nanoseconds, from the clock
	given := !ev.Time.IsZero()
	if !given {
		stamp = wallNanos()
		ev.Time = time.Unix(0, stamp)
	}
	if ev.ID == [16]byte{} {
		if given {
			// An imported event's time (EventTime) must not set the ID's:
			// a future one would carry every later ID of the process along.
			stamp = wallNanos()
		}
		ev.ID = newID(stamp / 1e6)
	}
	if parent.id != [16]byte{} {
		ev.CausationID = parent.id
		if ev.CorrelationID == [16]byte{} {
			ev.CorrelationID = parent.correlation
		}
	}
	if ev.CorrelationID == [16]byte{} {
		ev.CorrelationID = ev.ID
	}
	if exp.set || given || ev.AggregateID != "" || ev.Kind != KindDomain || len(ev.Metadata) > 0 {
		return exp, b.check(ev, exp, given)
	}
	return exp, nil
}

func apply[T any](ev *Event[T], o *PublishOption) {
	switch o.op {
	case opAggregate:
		ev.AggregateID = o.s
	case opKind:
		ev.Kind = Kind(o.s)
	case opMeta:
		if ev.Metadata == nil {
			ev.Metadata = make(map[string]string, 1)
		}
		ev.Metadata[o.s] = o.v
	case opMetadata:
		if ev.Metadata == nil {
			ev.Metadata = make(map[string]string, len(o.m))
		}
		for k, v := range o.m {
			ev.Metadata[k] = v
		}
	case opID:
		ev.ID = o.id
	case opTime:
		ev.Time = o.t
	case opCorrelation:
		ev.CorrelationID = o.id
	case opSame:
		ev.ID, ev.Time = o.id, o.t
	}
}

// checkEnvelope reports what in ev no store could keep, by the store's own
// rules (store.ValidateEnvelope). Every bus checks it, with a store or
// without, so that a program does not come to depend on events it could
// never store. The payload's size is a store's limit (a bus without one
// never encodes payloads), and the store checks it. The clock's time needs
// no check. The metadata prefix reserved for the envelope's own keys is
// this package's rule.
func checkEnvelope[T any](ev *Event[T], timeGiven bool) error {
	if len(ev.Metadata) > 0 { // ranging over a nil map is not free, and most events have none
		for k := range ev.Metadata {
			if strings.HasPrefix(k, MetaPrefix) {
				return fmt.Errorf("%w: metadata key %q uses the reserved prefix %q", store.ErrInvalidRecord, k, MetaPrefix)
			}
		}
	}
	if timeGiven {
		if err := store.ValidateTime(ev.Time); err != nil {
			return err
		}
	}
	kind := string(ev.Kind)
	if ev.Kind == KindDomain {
		kind = "" // the default: known to be valid
	}
	return store.ValidateEnvelope(ev.AggregateID, kind, ev.Metadata)
}

// batchExpectations folds the expectations of a batch into one per
// aggregate, on its first event, as the store takes them: the version the
// aggregate is at before the batch.
func batchExpectations[T any](ds []*delivery[T], exps []expectation) error {
	type agg struct {
		first int   // index of the aggregate's first event in the batch
		count int64 // its events so far
		set   bool
		base  int64
	}
	var aggs map[string]*agg
	for i, d := range ds {
		id := d.ev.AggregateID
		if id == "" {
			continue
		}
		if aggs == nil {
			aggs = make(map[string]*agg)
		}
		a := aggs[id]
		if a == nil {
			a = &agg{first: i}
			aggs[id] = a
		}
		if exps[i].set {
			base := exps[i].version - a.count
			switch {
			case a.set && base != a.base:
				return fmt.Errorf("message %d: ExpectVersion %d for aggregate %s, which earlier messages of the batch expect at %d", i, exps[i].version, id, a.base+a.count)
			case base < 0:
				return fmt.Errorf("message %d: ExpectVersion %d for aggregate %s, which has %d earlier messages in the batch", i, exps[i].version, id, a.count)
			}
			a.set, a.base = true, base
			exps[i] = expectation{}
		}
		a.count++
	}
	for _, a := range aggs {
		if a.set {
			exps[a.first] = expectation{set: true, version: a.base}
		}
	}
	return nil
}

// persist appends the events of ds to the store, in one call, with their
// expectations, and writes back their positions and versions. The units
// that this bus's durable subscriptions owe for the events are taken before
// the append, as a subscription may read an event before Append returns.
func (b *Bus[T]) persist(ctx context.Context, ds []*delivery[T], exps []expectation) error {
	recs, expect, err := b.records(ds, exps)
	if err != nil {
		return err
	}
	b.oweAll(ds)
	if err := b.store.Append(ctx, recs, expect...); err != nil {
		b.payAll(ds)
		return err
	}
	for i, d := range ds {
		d.ev.Position, d.ev.Version = recs[i].Position, recs[i].Version
		for _, s := range d.route.durable {
			b.settle(s.durable, d.ev.ID)
		}
	}
	b.wakeDurable()
	return nil
}

// oweAll takes, for each event of ds, a unit for every durable subscription
// of this bus due to handle it; payAll gives them back.
func (b *Bus[T]) oweAll(ds []*delivery[T]) {
	for _, d := range ds {
		for _, s := range d.route.durable {
			if !s.removed.Load() && (s.accepts == nil || s.accepts(d.ev.Payload)) {
				b.owe(s.durable, d.ev.ID, d.ev.AggregateID)
			}
		}
	}
}

func (b *Bus[T]) payAll(ds []*delivery[T]) {
	for _, d := range ds {
		for _, s := range d.route.durable {
			b.paid(s.durable, d.ev.ID)
		}
	}
}

// publishError wraps a failed append of ds, marking one that may have
// stored them.
func publishError[T any](op string, ds []*delivery[T], err error) error {
	if errors.Is(err, store.ErrMaybeStored) {
		e := &MaybePublishedError{Err: err}
		for _, d := range ds {
			e.IDs = append(e.IDs, d.ev.ID)
			e.Times = append(e.Times, d.ev.Time)
		}
		return fmt.Errorf("event: %s: %w", op, e)
	}
	return fmt.Errorf("event: %s: %w", op, err)
}

// dispatch delivers a prepared event to the in-process subscriptions.
// With noWait it does not wait for queue room (see [Bus.enqueue]).
func (b *Bus[T]) dispatch(ctx context.Context, d *delivery[T], noWait bool) error {
	rt, p := d.route, d.ev.Payload
	async, syncs := takes(rt.async, p), takes(rt.sync, p)
	if !async && !syncs {
		b.stats.published.Add(1)
		if !takes(rt.durable, p) {
			b.stats.noSubscriber.Add(1)
		}
		return nil
	}
	var ev *Event[T] // what the synchronous subscriptions get
	if syncs {
		ev = &d.ev
		if async {
			// d is recycled once a worker has run it, maybe before the
			// synchronous handlers here are done: they get a copy.
			evc := d.ev
			ev = &evc
		}
	}
	if async {
		// Queue first: an event the queue refuses must reach no handler,
		// or a caller retrying the failed Publish would run the
		// synchronous handlers twice. An event already stored is
		// published, so its in-process delivery must not fail now: it
		// spills over a full queue instead of waiting, and the store's
		// commit rate is the publisher's backpressure.
		if err := b.enqueue(ctx, d, noWait); err != nil {
			return err
		}
	}
	b.stats.published.Add(1)
	if syncs {
		// With the publisher's context, like any synchronous delivery.
		b.deliverSync(ctx, rt, ev)
	}
	return nil
}
