package event

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/google/uuid"
	"github.com/ncore-io/event/store"
)

// Metadata keys under which a store keeps the envelope fields that
// [store.Record] has no column for. Keys with the "event." prefix are
// reserved: they are removed from an event's Metadata when it is decoded.
const (
	metaPrefix      = "event."
	metaCorrelation = "event.correlation_id"
	metaCausation   = "event.causation_id"
)

// ErrUnknownType is matched by the error for a stored payload whose type a
// bus of an interface type does not know. Register the type with
// [WithTypes] or by subscribing a handler of that type.
var ErrUnknownType = errors.New("event: unknown payload type")

// ErrNoStore is returned by operations that need a bus created with
// [WithStore].
var ErrNoStore = errors.New("event: the bus has no store (see WithStore)")

// encode turns an envelope into a record for the store.
func (b *Bus[T]) encode(ev *Event[T]) (store.Record, error) {
	data, err := b.codec.Marshal(ev.Payload)
	if err != nil {
		return store.Record{}, fmt.Errorf("encode %T payload: %w", ev.Payload, err)
	}
	meta := make(map[string]string, len(ev.Metadata)+2)
	for k, v := range ev.Metadata {
		if strings.HasPrefix(k, metaPrefix) {
			return store.Record{}, fmt.Errorf("metadata key %q uses the reserved prefix %q", k, metaPrefix)
		}
		meta[k] = v
	}
	meta[metaCorrelation] = ev.CorrelationID.String()
	if ev.CausationID != (uuid.UUID{}) {
		meta[metaCausation] = ev.CausationID.String()
	}
	var ptype string
	if t := reflect.TypeOf(any(ev.Payload)); t != nil {
		ptype = b.types.name(t)
	}
	return store.Record{
		ID:          ev.ID.String(),
		Topic:       ev.Topic,
		Kind:        string(ev.Kind),
		AggregateID: ev.AggregateID,
		Time:        ev.Time,
		Metadata:    meta,
		PayloadType: ptype,
		ContentType: b.codec.ContentType(),
		Payload:     data,
	}, nil
}

// decode turns a stored record back into an envelope.
func (b *Bus[T]) decode(rec *store.Record) (Event[T], error) {
	id, err := uuid.Parse(rec.ID)
	if err != nil {
		return Event[T]{}, fmt.Errorf("event %s: ID is not a UUID: %w", rec.ID, err)
	}
	ev := Event[T]{
		ID:          id,
		Topic:       rec.Topic,
		Kind:        Kind(rec.Kind),
		AggregateID: rec.AggregateID,
		Version:     rec.Version,
		Position:    rec.Position,
		Time:        rec.Time,
	}
	for k, v := range rec.Metadata {
		switch k {
		case metaCorrelation:
			ev.CorrelationID, _ = uuid.Parse(v)
		case metaCausation:
			ev.CausationID, _ = uuid.Parse(v)
		default:
			if strings.HasPrefix(k, metaPrefix) {
				continue
			}
			if ev.Metadata == nil {
				ev.Metadata = make(map[string]string, len(rec.Metadata))
			}
			ev.Metadata[k] = v
		}
	}
	if rec.ContentType != "" && rec.ContentType != b.codec.ContentType() {
		return ev, fmt.Errorf("event %s: payload is %s, but the bus's codec reads %s", rec.ID, rec.ContentType, b.codec.ContentType())
	}
	if b.payloadType.Kind() != reflect.Interface {
		if err := b.codec.Unmarshal(rec.Payload, &ev.Payload); err != nil {
			return ev, fmt.Errorf("event %s: decode %s payload into %v: %w", rec.ID, rec.PayloadType, b.payloadType, err)
		}
		return ev, nil
	}
	if rec.PayloadType == "" {
		return ev, nil // a nil payload
	}
	t, ok := b.types.lookup(rec.PayloadType)
	if !ok {
		return ev, fmt.Errorf("event %s: %w %q: register it with event.WithTypes or subscribe a handler of that type", rec.ID, ErrUnknownType, rec.PayloadType)
	}
	v := reflect.New(t)
	if err := b.codec.Unmarshal(rec.Payload, v.Interface()); err != nil {
		return ev, fmt.Errorf("event %s: decode %s payload: %w", rec.ID, rec.PayloadType, err)
	}
	p, ok := v.Elem().Interface().(T)
	if !ok {
		return ev, fmt.Errorf("event %s: stored type %v is not a %v", rec.ID, t, b.payloadType)
	}
	ev.Payload = p
	return ev, nil
}

// persist appends d's event to the store and records its position.
func (b *Bus[T]) persist(ctx context.Context, d *delivery[T], exp expectation) error {
	if err := b.appendEvent(ctx, d, exp, b.store.Append); err != nil {
		return err
	}
	b.wakeDurable()
	return nil
}

// appendEvent encodes d's event, stores it with add (the store's Append,
// or AppendTx in a caller's transaction) under exp, and writes back its
// position and version.
func (b *Bus[T]) appendEvent(ctx context.Context, d *delivery[T], exp expectation, add func(context.Context, []store.Record, ...store.Expect) error) error {
	rec, err := b.encode(&d.ev)
	if err != nil {
		return err
	}
	recs := [1]store.Record{rec}
	var expect []store.Expect
	if exp.set {
		if d.ev.AggregateID == "" {
			return errors.New("ExpectVersion needs an aggregate ID (see Aggregate)")
		}
		expect = []store.Expect{{AggregateID: d.ev.AggregateID, Version: exp.version}}
	}
	if err := add(ctx, recs[:], expect...); err != nil {
		return err
	}
	d.ev.Position, d.ev.Version = recs[0].Position, recs[0].Version
	d.rec = &recs[0]
	return nil
}
