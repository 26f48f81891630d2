package event

import (
	"fmt"
	"maps"
	"reflect"
	"runtime/debug"
	"strings"

	"github.com/google/uuid"
	"github.com/ncore-io/event/store"
)

// Metadata keys under which a bus stores the envelope fields that
// [store.Record] has no column for, for programs that read a store's
// records themselves. Keys with the MetaPrefix are reserved: a publish
// whose metadata uses one is refused, and they are removed from an
// event's Metadata when it is decoded.
const (
	MetaPrefix = "event."
	// MetaCorrelationID holds the event's CorrelationID, as text, when it
	// is not the event's own ID. An event that starts its own correlation,
	// as every event published outside a handler does by default, stores
	// none: a record without it is its own correlation.
	MetaCorrelationID = "event.correlation_id"
	// MetaCausationID holds the event's CausationID, as text, if it has one.
	MetaCausationID = "event.causation_id"
)

// encode turns an envelope into a record for the store. The record keeps
// the envelope's Position and Version, if it has them, so that a dead
// letter re-encoded from a stored event still says where it was.
func (b *Bus[T]) encode(ev *Event[T]) (store.Record, error) {
	var ptype string
	if t := reflect.TypeOf(any(ev.Payload)); t != nil {
		// Learn the type, so that a durable subscription of this bus can
		// decode what it publishes.
		n, err := b.types.learn(t)
		if err != nil {
			return store.Record{}, fmt.Errorf("encode %T payload: %w", ev.Payload, err)
		}
		ptype = n
	}
	data, err := b.marshal(ev.Payload)
	if err != nil {
		return store.Record{}, fmt.Errorf("encode %T payload: %w", ev.Payload, err)
	}
	// Most events start their own correlation and have no cause nor
	// metadata of their own; they store none (see MetaCorrelationID).
	var meta map[string]string
	if len(ev.Metadata) > 0 || ev.CorrelationID != ev.ID || ev.CausationID != (uuid.UUID{}) {
		meta = make(map[string]string, len(ev.Metadata)+2)
		maps.Copy(meta, ev.Metadata)
		if ev.CorrelationID != ev.ID {
			meta[MetaCorrelationID] = ev.CorrelationID.String()
		}
		if ev.CausationID != (uuid.UUID{}) {
			meta[MetaCausationID] = ev.CausationID.String()
		}
	}
	return store.Record{
		ID:          ev.ID.String(),
		Topic:       ev.Topic,
		Kind:        string(ev.Kind),
		AggregateID: ev.AggregateID,
		Version:     ev.Version,
		Position:    ev.Position,
		Time:        ev.Time,
		Metadata:    meta,
		PayloadType: ptype,
		ContentType: b.codec.ContentType(),
		Payload:     data,
	}, nil
}

// marshal and unmarshal call the codec, turning a panic (in the codec, or
// in a payload's MarshalJSON or UnmarshalJSON) into a *PanicError.
func (b *Bus[T]) marshal(v any) (data []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p, Stack: debug.Stack(), in: "codec"}
		}
	}()
	return b.codec.Marshal(v)
}

func (b *Bus[T]) unmarshal(data []byte, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p, Stack: debug.Stack(), in: "codec"}
		}
	}()
	return b.codec.Unmarshal(data, v)
}

// decode turns a stored record back into an envelope. On error the
// envelope has every field but the payload.
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
		case MetaCorrelationID:
			ev.CorrelationID, _ = uuid.Parse(v)
		case MetaCausationID:
			ev.CausationID, _ = uuid.Parse(v)
		default:
			if strings.HasPrefix(k, MetaPrefix) {
				continue
			}
			if ev.Metadata == nil {
				ev.Metadata = make(map[string]string, len(rec.Metadata))
			}
			ev.Metadata[k] = v
		}
	}
	if ev.CorrelationID == (uuid.UUID{}) {
		ev.CorrelationID = id
	}
	if rec.ContentType != "" && rec.ContentType != b.codec.ContentType() {
		return ev, fmt.Errorf("event %s: payload is %s, but the bus's codec reads %s", rec.ID, rec.ContentType, b.codec.ContentType())
	}
	if b.payloadType.Kind() != reflect.Interface {
		// Into a T of its own, which the codec's interface argument moves
		// to the heap, rather than the envelope's field, which would move
		// the whole envelope there.
		p := new(T)
		if err := b.unmarshal(rec.Payload, p); err != nil {
			return ev, fmt.Errorf("event %s: decode %s payload into %v: %w", rec.ID, rec.PayloadType, b.payloadType, err)
		}
		ev.Payload = *p
		return ev, nil
	}
	if rec.PayloadType == "" {
		return ev, nil // a nil payload
	}
	t, ok := b.types.lookup(rec.PayloadType)
	if !ok {
		return ev, fmt.Errorf("event %s: %w %q: register it with event.WithTypes, or subscribe a handler of that type", rec.ID, ErrUnknownType, rec.PayloadType)
	}
	v := reflect.New(t)
	if err := b.unmarshal(rec.Payload, v.Interface()); err != nil {
		return ev, fmt.Errorf("event %s: decode %s payload: %w", rec.ID, rec.PayloadType, err)
	}
	p, ok := v.Elem().Interface().(T)
	if !ok {
		return ev, fmt.Errorf("event %s: stored type %v is not a %v", rec.ID, t, b.payloadType)
	}
	ev.Payload = p
	return ev, nil
}
