package event_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// explosive panics when it is encoded or decoded.
type explosive struct{ Boom bool }

func (e explosive) MarshalJSON() ([]byte, error) {
	if e.Boom {
		panic("marshal boom")
	}
	return []byte(`{"boom":false}`), nil
}

func (e *explosive) UnmarshalJSON(data []byte) error {
	if strings.Contains(string(data), "poison") {
		panic("unmarshal boom")
	}
	return nil
}

// A payload whose MarshalJSON panics fails its Publish with a clear error
// and leaves nothing in flight: Close then drains at once.
func TestPublishCodecPanic(t *testing.T) {
	t.Parallel()
	bus := newStoreBus[explosive](t, openSQLite(t))
	subscribe(t, bus, "x", func(context.Context, event.Event[explosive]) error { return nil })
	err := bus.Publish(t.Context(), "x", explosive{Boom: true})
	var pe *event.PanicError
	if !errors.As(err, &pe) || pe.Value != "marshal boom" || len(pe.Stack) == 0 || !strings.Contains(err.Error(), "codec panicked") {
		t.Fatalf("Publish = %v, want a *PanicError from the codec with its stack", err)
	}
	if err := bus.Publish(t.Context(), "x", explosive{}); err != nil {
		t.Fatalf("Publish after the panic: %v", err)
	}
	closeBus(t, bus) // fails the test if a unit was left in flight
	if st := bus.Stats(); st.Published != 1 {
		t.Errorf("Published %d, want only the good event", st.Published)
	}
}

// A stored payload whose UnmarshalJSON panics is a poison event: it is
// dead-lettered with the panic and its stack, and the subscription moves on.
func TestDecodePanicDeadLetters(t *testing.T) {
	t.Parallel()
	s := openSQLite(t)
	if err := s.Append(t.Context(), []store.Record{
		{ID: "01930000-0000-7000-8000-000000000001", Topic: "x", Time: fixedTime, Payload: []byte(`"poison"`), ContentType: "application/json"},
		{ID: "01930000-0000-7000-8000-000000000002", Topic: "x", Time: fixedTime, Payload: []byte(`{}`), ContentType: "application/json"},
	}); err != nil {
		t.Fatal(err)
	}
	var dead record[event.DeadLetter]
	bus := newStoreBus[explosive](t, s, event.WithDeadLetter(func(_ context.Context, dl event.DeadLetter) { dead.add(dl) }))
	got := newSeen[explosive]()
	subscribe(t, bus, "x", got.handler, event.Durable("reader"))
	got.waitFor(t, "the event after the poison one", atLeast[explosive](1))
	closeBus(t, bus)
	dls := dead.get()
	var pe *event.PanicError
	if len(dls) != 1 || !errors.As(dls[0].Err, &pe) || pe.Value != "unmarshal boom" {
		t.Fatalf("dead letters %+v, want the poison event with its panic", dls)
	}
	stored, err := bus.DeadLetters(t.Context(), "reader", 0)
	if err != nil || len(stored) != 1 || !strings.Contains(stored[0].Error, "unmarshal boom") || !strings.Contains(stored[0].Error, "goroutine") {
		t.Fatalf("stored dead letters %+v (%v), want the panic with its stack", stored, err)
	}
}

// Replay and Fold meet a poison event as an error, not a crash.
func TestReplayDecodePanic(t *testing.T) {
	t.Parallel()
	s := openSQLite(t)
	if err := s.Append(t.Context(), []store.Record{{ID: "01930000-0000-7000-8000-000000000003", Topic: "x", AggregateID: "a", Time: fixedTime, Payload: json.RawMessage(`"poison"`)}}); err != nil {
		t.Fatal(err)
	}
	bus := newStoreBus[explosive](t, s)
	var pe *event.PanicError
	if _, err := event.Replay(t.Context(), bus, store.Query{}, func(context.Context, event.Event[explosive]) error { return nil }); !errors.As(err, &pe) {
		t.Errorf("Replay = %v, want a *PanicError", err)
	}
	if _, _, err := event.LoadAggregate[explosive](t.Context(), bus, "a"); !errors.As(err, &pe) {
		t.Errorf("LoadAggregate = %v, want a *PanicError", err)
	}
}

type Unregistered struct{ X int }

// A bus of an interface type decodes each stored payload into its own type
// (or, by the pointer rule, the pointer or value of a registered one); a
// payload of a type it does not know is dead-lettered, not dropped.
func TestInterfaceBusDecoding(t *testing.T) {
	ctx := t.Context()
	s := openSQLite(t)
	writer := newStoreBus[any](t, s)
	writer.Publish(ctx, "user.registered", Registered{UserID: "u-1"})
	writer.Publish(ctx, "odd.thing", Unregistered{X: 1})
	writer.Publish(ctx, "user.registered", &Registered{UserID: "u-2"})
	writer.Close(ctx)

	var mu sync.Mutex
	var dead []event.DeadLetter
	reader := newStoreBus[any](t, s, event.WithTypes(&Registered{}), event.WithDeadLetter(func(ctx context.Context, dl event.DeadLetter) {
		mu.Lock()
		dead = append(dead, dl)
		mu.Unlock()
	}))
	values, pointers := newSeen[Registered](), newSeen[*Registered]()
	event.Subscribe(reader, ">", values.handler, event.Durable("values"))
	event.Subscribe(reader, ">", pointers.handler, event.Durable("pointers"))
	values.waitFor(t, "the value and the pointer", atLeast[Registered](2))
	pointers.waitFor(t, "the value and the pointer", atLeast[*Registered](2))
	if err := reader.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The pointer rule of Subscribe: a handler of X takes a *X, and one of
	// *X an X, whichever the publisher passed.
	if v := values.snapshot(); len(v) != 2 || v[0].Payload.UserID != "u-1" || v[1].Payload.UserID != "u-2" {
		t.Fatalf("value handler got %v", v)
	}
	if p := pointers.snapshot(); len(p) != 2 || p[0].Payload.UserID != "u-1" || p[1].Payload.UserID != "u-2" {
		t.Fatalf("pointer handler got %v", p)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dead) != 2 || !errors.Is(dead[0].Err, event.ErrUnknownType) {
		t.Fatalf("dead letters %v, want the unknown type twice (once per subscription)", dead)
	}
	if dls, _ := reader.DeadLetters(ctx, "", 0); len(dls) != 2 {
		t.Fatalf("stored dead letters: %d, want 2", len(dls))
	}
}

// typed names its event type with a value receiver, so X and *X share
// one stored name.
type typed struct{ N int }

func (typed) EventType() string { return "typed" }

// A Typer's X and *X are one event type, by the pointer rule: either may be
// published, and handlers of either receive both.
func TestTyperNamesValueAndPointerAlike(t *testing.T) {
	t.Parallel()
	known := newBus[any](t, event.WithTypes(typed{}))
	if _, err := event.Subscribe(known, "t", func(context.Context, event.Event[*typed]) error { return nil }); err != nil {
		t.Errorf("Subscribe a handler of *typed where typed is known: %v", err)
	}
	bus := newStoreBus[any](t, openSQLite(t))
	got := newSeen[*typed]()
	subscribe(t, bus, "t", got.handler, event.Durable("ptr"))
	publish[any](t, bus, "t", typed{1})
	if err := bus.Publish(t.Context(), "t", &typed{2}); err != nil {
		t.Fatalf("Publish *typed after typed: %v", err)
	}
	evs := got.waitFor(t, "both", atLeast[*typed](2))
	if evs[0].Payload.N != 1 || evs[1].Payload.N != 2 {
		t.Errorf("got %v and %v", evs[0].Payload, evs[1].Payload)
	}
}
