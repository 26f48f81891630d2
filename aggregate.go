package event

import (
	"context"
	"fmt"
)

// LoadAggregate returns the stored events of an aggregate, oldest first,
// and its version (the version of its last event, 0 if it has none), for
// [ExpectVersion]. On a bus of an interface type, events whose payload is
// not an E are skipped but still count for the version.
func LoadAggregate[E, T any](ctx context.Context, b *Bus[T], aggregateID string) ([]Event[E], int64, error) {
	var evs []Event[E]
	_, v, err := Fold(ctx, b, aggregateID, struct{}{}, func(s struct{}, ev Event[E]) struct{} {
		evs = append(evs, ev)
		return s
	})
	return evs, v, err
}

// Fold loads an aggregate's stored events and folds them, oldest first,
// into a state: state = apply(state, ev) for each event whose payload is an
// E. It returns the state and the aggregate's version, for
// [ExpectVersion]:
//
//	account, version, err := event.Fold(ctx, bus, "acc-1", Account{}, Account.Apply)
//	// decide, then:
//	err = bus.Publish(ctx, "account.debited", Debited{Amount: 10},
//		event.Aggregate("acc-1"), event.ExpectVersion(version))
func Fold[S, E, T any](ctx context.Context, b *Bus[T], aggregateID string, state S, apply func(S, Event[E]) S) (S, int64, error) {
	if b.store == nil {
		return state, 0, fmt.Errorf("event: load aggregate %s: %w", aggregateID, ErrNoStore)
	}
	if aggregateID == "" {
		return state, 0, fmt.Errorf("event: load aggregate: empty aggregate ID")
	}
	recs, err := b.store.LoadAggregate(ctx, aggregateID, 1)
	if err != nil {
		return state, 0, fmt.Errorf("event: load aggregate %s: %w", aggregateID, err)
	}
	var version int64
	for i := range recs {
		ev, err := b.decode(&recs[i])
		if err != nil {
			return state, version, fmt.Errorf("event: load aggregate %s: %w", aggregateID, err)
		}
		version = recs[i].Version
		if e, ok := convert[E](&ev); ok {
			state = apply(state, e)
		}
	}
	return state, version, nil
}
