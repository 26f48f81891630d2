package event_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// A handler error whose text is not valid UTF-8 or holds NUL bytes, which
// stores refuse, still leaves a dead letter, with those bytes replaced.
func TestDeadLetterOfBinaryError(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		bus := newStoreBus[Registered](t, open(t), event.WithSync())
		event.Subscribe(bus, "user.registered", func(context.Context, event.Event[Registered]) error {
			return errors.New("bad frame \x00\xff\xfe end")
		}, event.Name("decoder"), event.Retry(event.RetryPolicy{MaxRetries: 0}))
		bus.Publish(ctx, "user.registered", Registered{N: 1})
		dls, err := bus.DeadLetters(ctx, "decoder", 0)
		if err != nil || len(dls) != 1 {
			t.Fatalf("DeadLetters = %d, %v; want 1 (stats %+v)", len(dls), err, bus.Stats())
		}
		if want := "bad frame \uFFFD\uFFFD end"; dls[0].Error != want {
			t.Fatalf("dead letter error = %q, want %q", dls[0].Error, want)
		}
	})
}
