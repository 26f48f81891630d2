package event

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/ncore-io/event/store"
)

var (
	// ErrClosed is returned by [Bus.Publish] once [Bus.Close] has begun.
	ErrClosed = errors.New("event: bus closed")

	// ErrQueueFull is returned by [Bus.Publish] on a bus created with
	// [WithFailFast] when the event cannot be queued at once.
	ErrQueueFull = errors.New("event: queue full")

	// ErrInvalidTopic is matched by the errors for an invalid topic passed to
	// [Bus.Publish] or an invalid pattern passed to [Subscribe]. See
	// [store.ValidatePattern] for the syntax.
	ErrInvalidTopic = store.ErrInvalidTopic
)

// PanicError is the failure recorded when a handler or a [Codec] panics
// (a codec calls a payload's MarshalJSON and UnmarshalJSON, say). The bus
// recovers the panic and treats it like a returned error: a handler's is
// retried and, after the last attempt, dead-lettered; a codec's fails the
// publish that encodes, or dead-letters the stored event that does not
// decode.
type PanicError struct {
	// Value is what was panicked with.
	Value any
	// Stack is the goroutine's stack at the panic, as from [runtime/debug.Stack].
	Stack []byte

	in string // what panicked: "codec", or "" for a handler
}

// Error reports the panic value.
func (e *PanicError) Error() string {
	in := e.in
	if in == "" {
		in = "handler"
	}
	return fmt.Sprintf("event: %s panicked: %v", in, e.Value)
}

// Unwrap returns Value if it is an error, so that errors.Is and errors.As see
// through a panic(err).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

var (
	// ErrUnknownType is matched by the error for a stored payload whose type
	// a bus of an interface type does not know. Register the type with
	// [WithTypes], by subscribing a handler of that type, or by publishing
	// one on the bus.
	ErrUnknownType = errors.New("event: unknown payload type")

	// ErrNoStore is returned by operations that need a bus created with
	// [WithStore].
	ErrNoStore = errors.New("event: the bus has no store (see WithStore)")

	// ErrNilContext is matched by the error of a call given a nil
	// context.Context. Pass context.Background() or context.TODO() instead.
	ErrNilContext = errors.New("nil Context")

	// ErrUnsubscribed is matched by the error a dead letter records for an
	// event whose retries were cut off by [Subscription.Unsubscribe].
	ErrUnsubscribed = errors.New("event: subscription removed")

	// ErrInvalidEvent is matched by the error of a publish whose envelope no
	// store could keep: an aggregate ID, kind, metadata key or value, or time
	// outside the limits of package store (see [store.ValidateRecords]).
	// Every bus refuses such events, with a store or without; a bus with a
	// store also refuses, with the same error, a payload larger than the
	// store's limit. It is store.ErrInvalidRecord, as ErrInvalidTopic is
	// store.ErrInvalidTopic.
	ErrInvalidEvent = store.ErrInvalidRecord
)

// ErrMaybePublished is matched by the error of a publish whose outcome is
// unknown: ctx ended, or the connection failed, while the store was
// committing, so the events may or may not have been stored (and, if
// stored, they will reach durable subscriptions, but not in-process ones).
// The error is a *[MaybePublishedError], which carries the event IDs; it
// also matches [store.ErrMaybeStored] and the context's error.
var ErrMaybePublished = errors.New("event: the event may have been published")

// MaybePublishedError is the error of a publish that may have stored its
// events (see [ErrMaybePublished]). To settle the outcome, publish again
// with the same arguments plus [MaybePublishedError.RetryAs]: every store
// keeps an event ID once, so the retry stores each event at most once, and
// succeeds whether the first attempt stored it or not.
type MaybePublishedError struct {
	// IDs are the IDs of the events, in publish order.
	IDs []uuid.UUID
	// Times are the events' times, in the same order.
	Times []time.Time
	// Err is the store's error.
	Err error
}

// RetryAs returns the option that makes a publish of the ith event (0 for
// [Bus.Publish]) again the same event: its ID and its time.
//
//	err := bus.Publish(ctx, topic, payload, opts...)
//	if maybe, ok := errors.AsType[*event.MaybePublishedError](err); ok {
//		err = bus.Publish(ctx, topic, payload, append(opts, maybe.RetryAs(0))...)
//	}
func (e *MaybePublishedError) RetryAs(i int) PublishOption {
	return PublishOption{op: opSame, id: e.IDs[i], t: e.Times[i]}
}

// Error says which events may have been published, and why it is unknown.
func (e *MaybePublishedError) Error() string {
	if len(e.IDs) == 1 {
		return fmt.Sprintf("event %s may have been published: %v", e.IDs[0], e.Err)
	}
	return fmt.Sprintf("%d events may have been published: %v", len(e.IDs), e.Err)
}

// Unwrap returns the store's error.
func (e *MaybePublishedError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrMaybePublished].
func (e *MaybePublishedError) Is(target error) bool { return target == ErrMaybePublished }
