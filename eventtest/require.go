package eventtest

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// RequirePublished returns the one event published on bus to a topic
// matching topic (a topic, or a pattern with wildcards) whose payload is an
// E. Unless there is exactly one, it fails the test with tb.Fatalf and a
// message listing what was published instead: topics, payload types and
// counts. Exactly one, rather than the last of several, so that a service
// publishing twice fails its test; use [RequirePublishedN] when several are
// expected.
//
// E is given explicitly and T is inferred from bus:
//
//	ev := eventtest.RequirePublished[UserRegistered](t, bus, "user.registered")
//
// It must be called from the test's goroutine, as tb.Fatalf requires.
func RequirePublished[E, T any](tb testing.TB, bus *MockBus[T], topic string) event.Event[E] {
	tb.Helper()
	return requireN[E](tb, bus, topic, 1, "RequirePublished", nil)[0]
}

// RequirePublishedN returns the n events published on bus to topics
// matching topic whose payloads are E, in the order they were published. It
// fails the test with tb.Fatalf, listing what was published, unless there
// are exactly n. Like every Require helper, it must be called from the
// test's goroutine.
func RequirePublishedN[E, T any](tb testing.TB, bus *MockBus[T], topic string, n int) []event.Event[E] {
	tb.Helper()
	if n < 0 {
		tb.Fatalf("eventtest: RequirePublishedN: n must be zero or more, got %d", n)
	}
	return requireN[E](tb, bus, topic, n, "RequirePublishedN", nil)
}

// RequirePublishedFunc returns the one event published on bus to a topic
// matching topic whose payload is an E and for which match returns true, to
// pick one event out of several on a topic. It fails the test with
// tb.Fatalf, listing what was published, unless there is exactly one. It
// must be called from the test's goroutine.
func RequirePublishedFunc[E, T any](tb testing.TB, bus *MockBus[T], topic string, match func(event.Event[E]) bool) event.Event[E] {
	tb.Helper()
	if match == nil {
		tb.Fatalf("eventtest: RequirePublishedFunc: nil match function")
	}
	return requireN(tb, bus, topic, 1, "RequirePublishedFunc", match)[0]
}

// RequireNotPublished fails the test with tb.Fatalf, listing the events
// found, if any event of any payload type was published on bus to a topic
// matching topic. It must be called from the test's goroutine.
func RequireNotPublished[T any](tb testing.TB, bus *MockBus[T], topic string) {
	tb.Helper()
	if err := store.ValidatePattern(topic); err != nil {
		tb.Fatalf("eventtest: RequireNotPublished: %v", err)
	}
	if got := bus.Published(topic); len(got) > 0 {
		tb.Fatalf("eventtest: want no event on %q, got %d:\n%s", topic, len(got), summarize(got))
	}
}

// requireN returns the events on topic with an E payload (and, if match is
// not nil, matching it), failing tb unless there are exactly n.
func requireN[E, T any](tb testing.TB, bus *MockBus[T], topic string, n int, fn string, match func(event.Event[E]) bool) []event.Event[E] {
	tb.Helper()
	if err := store.ValidatePattern(topic); err != nil {
		tb.Fatalf("eventtest: %s: %v", fn, err)
	}
	all := bus.All()
	var got []event.Event[E]
	for i := range all {
		if !store.MatchTopic(topic, all[i].Topic) {
			continue
		}
		if ev, ok := event.As[E](all[i]); ok && (match == nil || match(ev)) {
			got = append(got, ev)
		}
	}
	if len(got) == n {
		return got
	}
	want := fmt.Sprintf("%d event(s) on %q with a payload of type %s", n, topic, typeName[E]())
	if match != nil {
		want += " matching the function"
	}
	var msg strings.Builder
	fmt.Fprintf(&msg, "eventtest: want %s, got %d; ", want, len(got))
	if len(all) == 0 {
		msg.WriteString("nothing was published")
	} else {
		fmt.Fprintf(&msg, "published %d event(s):\n%s", len(all), summarize(all))
	}
	if failed := bus.FailedPublishes(); len(failed) > 0 {
		fmt.Fprintf(&msg, "\nand %d publish(es) failed:", len(failed))
		for _, f := range failed {
			fmt.Fprintf(&msg, "\n\t%s (%s): %v", f.Topic, payloadType(f.Payload), f.Err)
		}
	}
	tb.Fatalf("%s", msg.String())
	return nil // unreachable: Fatalf stops the goroutine
}

// summarize lists events grouped by topic and payload type, in order of
// first appearance, one tab-indented line per group with its count.
func summarize[T any](evs []event.Event[T]) string {
	type key struct{ topic, typ string }
	var order []key
	count := map[key]int{}
	for i := range evs {
		k := key{evs[i].Topic, payloadType(evs[i].Payload)}
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
	}
	var b strings.Builder
	for i, k := range order {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "\t%s (%s) ×%d", k.topic, k.typ, count[k])
	}
	return b.String()
}

func payloadType(p any) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprintf("%T", p)
}

func typeName[E any]() string { return reflect.TypeFor[E]().String() }
