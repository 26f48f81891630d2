package event_test

import (
	"errors"
	"testing"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

type Withdrawn struct{ Amount int }

func applyWithdrawals(a Account, ev event.Event[any]) Account {
	if p, ok := ev.Payload.(Withdrawn); ok {
		a.Balance -= p.Amount
	}
	return a.Apply(ev)
}

func TestEventSourcing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		bus := newStoreBus[any](t, open(t), event.WithTypes(Deposited{}, Withdrawn{}))
		publish := func(p any, v int64) error {
			return bus.Publish(ctx, "account.changed", p, event.Aggregate("acc-1"), event.ExpectVersion(v))
		}
		if err := publish(Deposited{100}, 0); err != nil {
			t.Fatal(err)
		}
		if err := publish(Withdrawn{30}, 1); err != nil {
			t.Fatal(err)
		}
		acc, v, err := event.Fold(ctx, bus, "acc-1", Account{}, applyWithdrawals)
		if err != nil || acc.Balance != 70 || v != 2 {
			t.Fatalf("Fold = %+v, %d, %v; want balance 70 at version 2", acc, v, err)
		}
		// Two writers decide on version 2; only the first wins.
		if err := publish(Withdrawn{50}, v); err != nil {
			t.Fatal(err)
		}
		err = publish(Withdrawn{50}, v)
		var vc *store.VersionConflictError
		if !errors.Is(err, store.ErrVersionConflict) || !errors.As(err, &vc) || vc.Actual != 3 {
			t.Fatalf("second writer: %v, want a version conflict at actual version 3", err)
		}
		evs, v, err := event.LoadAggregate[Withdrawn](ctx, bus, "acc-1")
		if err != nil || len(evs) != 2 || v != 3 {
			t.Fatalf("LoadAggregate = %d events, version %d, %v", len(evs), v, err)
		}
		if err := bus.Publish(ctx, "account.changed", Deposited{1}, event.ExpectVersion(3)); err == nil {
			t.Fatal("ExpectVersion without an aggregate accepted")
		}
	})
}
