package event_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// TestStoredCorrelation checks what a bus stores of an event's correlation
// and causation, and what it reads back: an event that is its own
// correlation stores no metadata, one that a handler caused, or that was
// given a correlation, stores both keys, and a record without the key,
// whoever wrote it, is read as its own correlation.
func TestStoredCorrelation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		st := open(t)
		b := newStoreBus[int](t, st)
		subscribe(t, b, "root", func(ctx context.Context, ev event.Event[int]) error {
			return b.Publish(ctx, "child", ev.Payload)
		})
		corr := uuid.MustParse("0190a0b0-c0d0-7000-8000-00000000c0de")
		publish(t, b, "root", 1)
		publish(t, b, "given", 2, event.Correlation(corr))
		publish(t, b, "tagged", 3, event.Meta("tenant", "acme"))
		if err := st.Append(ctx, []store.Record{{ID: uuid.NewString(), Topic: "foreign", Kind: store.KindDomain,
			Time: time.Now(), ContentType: "application/json", Payload: []byte("4")}}); err != nil {
			t.Fatal(err)
		}
		var recs []store.Record
		waitUntil(t, "five records stored", func() bool {
			var err error
			recs, _, err = st.Read(ctx, store.Query{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			return len(recs) == 5
		})
		byTopic := map[string]store.Record{}
		for _, r := range recs {
			byTopic[r.Topic] = r
		}
		root := byTopic["root"]
		want := map[string]map[string]string{
			"root":    nil,
			"child":   {event.MetaCorrelationID: root.ID, event.MetaCausationID: root.ID},
			"given":   {event.MetaCorrelationID: corr.String()},
			"tagged":  {"tenant": "acme"},
			"foreign": nil,
		}
		for topic, meta := range want {
			if got := byTopic[topic].Metadata; !maps.Equal(got, meta) {
				t.Errorf("%s: stored metadata %v, want %v", topic, got, meta)
			}
		}

		got := map[string]event.Event[int]{}
		if _, err := event.Replay(ctx, b, store.Query{}, func(_ context.Context, ev event.Event[int]) error {
			got[ev.Topic] = ev
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		rootID := uuid.MustParse(root.ID)
		for topic, w := range map[string]struct{ corr, cause uuid.UUID }{
			"root":    {rootID, uuid.Nil},
			"child":   {rootID, rootID},
			"given":   {corr, uuid.Nil},
			"tagged":  {got["tagged"].ID, uuid.Nil},
			"foreign": {got["foreign"].ID, uuid.Nil},
		} {
			ev := got[topic]
			if ev.CorrelationID != w.corr || ev.CausationID != w.cause {
				t.Errorf("%s read back: correlation %s, causation %s; want %s, %s", topic, ev.CorrelationID, ev.CausationID, w.corr, w.cause)
			}
		}
		if m := got["tagged"].Metadata; !maps.Equal(m, map[string]string{"tenant": "acme"}) {
			t.Errorf("tagged read back with metadata %v", m)
		}
	})
}
