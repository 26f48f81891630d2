package event

import (
	"errors"
	"fmt"

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

// PanicError is the failure recorded when a handler panics. The bus
// recovers the panic and treats it like a returned error: it is retried and,
// after the last attempt, dead-lettered.
type PanicError struct {
	// Value is what the handler panicked with.
	Value any
	// Stack is the goroutine's stack at the panic, as from [runtime/debug.Stack].
	Stack []byte
}

// Error reports the panic value.
func (e *PanicError) Error() string {
	return fmt.Sprintf("event: handler panicked: %v", e.Value)
}

// Unwrap returns Value if it is an error, so that errors.Is and errors.As see
// through a panic(err).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}
