package event

import (
	"reflect"
	"time"

	"github.com/google/uuid"
	"github.com/ncore-io/event/store"
)

// Kind classifies an event. It is informational: the bus routes by topic,
// not by kind. Pass a Kind to [Bus.Publish] with [AsKind].
type Kind string

// The kinds of event the bus knows. A Kind may be any other short label.
const (
	// KindDomain is a fact of the application's own domain, such as a user
	// having registered. It is the default.
	KindDomain Kind = store.KindDomain
	// KindSystem is about the running system itself, such as an extension
	// having loaded.
	KindSystem Kind = store.KindSystem
	// KindIntegration crosses a boundary to or from another system, such as a
	// payment provider's notification.
	KindIntegration Kind = store.KindIntegration
)

// Event is the envelope a handler receives: the payload and what the bus
// knows about it. Handlers receive it by value and may keep it.
type Event[T any] struct {
	// ID identifies the event: a time-ordered UUIDv7 unless the publisher set
	// one with [EventID]. Handlers use it to deduplicate.
	ID uuid.UUID
	// Topic is the topic the event was published to, such as
	// "user.registered".
	Topic string
	// Kind is the kind of event; [KindDomain] unless set with [AsKind].
	Kind Kind
	// AggregateID names the entity the event is about, if any. Events with
	// the same AggregateID reach each subscription in publish order.
	AggregateID string
	// Version is the event's place in its aggregate, set by a store; 0 on a
	// bus without one.
	Version int64
	// Position is the event's place in the store's global order, set by a
	// store; 0 on a bus without one.
	Position int64
	// Time is when the event happened: when it was published unless set
	// with [EventTime].
	Time time.Time
	// CorrelationID ties together every event caused, directly or not, by
	// one original event. An event published outside a handler starts a new
	// correlation: its CorrelationID is its own ID.
	CorrelationID uuid.UUID
	// CausationID is the ID of the event whose handler published this one,
	// or the zero UUID.
	CausationID uuid.UUID
	// Metadata holds user keys and trace context. It is nil unless the
	// publisher set some; handlers must not modify it.
	Metadata map[string]string
	// Payload is the event itself.
	Payload T
}

// As returns ev with its payload as an E, and whether the payload is one.
// It turns an event of an interface-typed bus, or a [DeadLetter]'s
// Event[any], back into a typed event:
//
//	if ev, ok := event.As[UserRegistered](dl.Event); ok { ... }
//
// As follows the rule of [Subscribe] for pointers: a *E payload (not nil)
// gives its E, and for a pointer type E = *X, an X payload gives a pointer
// to a copy of it.
func As[E, T any](ev Event[T]) (Event[E], bool) { return convert[E](&ev) }

// convert is [As] without copying ev.
func convert[E, T any](ev *Event[T]) (Event[E], bool) {
	p, ok := payloadAs[E](any(ev.Payload))
	if !ok {
		return Event[E]{}, false
	}
	return Event[E]{
		ID:            ev.ID,
		Topic:         ev.Topic,
		Kind:          ev.Kind,
		AggregateID:   ev.AggregateID,
		Version:       ev.Version,
		Position:      ev.Position,
		Time:          ev.Time,
		CorrelationID: ev.CorrelationID,
		CausationID:   ev.CausationID,
		Metadata:      ev.Metadata,
		Payload:       p,
	}, true
}

// payloadAs returns p as an E, by the pointer rule of [As].
func payloadAs[E any](p any) (E, bool) {
	if e, ok := p.(E); ok {
		return e, true
	}
	if pe, ok := p.(*E); ok && pe != nil {
		return *pe, true
	}
	var zero E
	et := reflect.TypeFor[E]()
	if p == nil || et.Kind() != reflect.Pointer {
		return zero, false
	}
	v := reflect.ValueOf(p)
	if v.Type() != et.Elem() {
		return zero, false
	}
	ptr := reflect.New(v.Type())
	ptr.Elem().Set(v)
	return ptr.Interface().(E), true
}

// takesPayload reports whether a handler of E takes payload p, by the
// pointer rule of [As].
func takesPayload[E any](p any) bool {
	if _, ok := p.(E); ok {
		return true
	}
	if pe, ok := p.(*E); ok {
		return pe != nil
	}
	et := reflect.TypeFor[E]()
	return p != nil && et.Kind() == reflect.Pointer && reflect.TypeOf(p) == et.Elem()
}
