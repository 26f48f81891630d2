package storetest

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

// testNotify checks store.Notifier, for stores that implement it.
func (s suite) testNotify(t *testing.T) {
	t.Parallel()
	st, w := openAs[store.Notifier](s, t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := w.Notify(ctx)
	if err != nil {
		t.Fatalf("Notify: %v", err)
	}
	mustAppend(t, st, []store.Record{newRecord("w1")})
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatal("Notify channel closed instead of signalling an append")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no signal within 30s of an append")
	}

	// Ending the context closes the channel.
	cancel()
	deadline := time.After(30 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-ch:
		case <-deadline:
			t.Fatal("Notify channel not closed within 30s of its context ending")
		}
	}

	// So does closing the store.
	ch2, err := w.Notify(t.Context())
	if err != nil {
		t.Fatalf("Notify: %v", err)
	}
	if _, ok := st.(io.Closer); !ok {
		return
	}
	closeStore(t, st)
	deadline = time.After(30 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-ch2:
		case <-deadline:
			t.Fatal("Notify channel not closed within 30s of the store closing")
		}
	}
	if _, err := w.Notify(t.Context()); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Notify on a closed store: %v, want ErrClosed", err)
	}
}
