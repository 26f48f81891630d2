package storetest

import (
	"fmt"
	"testing"

	"github.com/ncore-io/event/store"
)

// testInvalidNames checks that every method that looks something up by
// name refuses an empty name, and one that is not valid UTF-8 or holds a
// NUL byte, with store.ErrInvalidName, and changes nothing.
func (s suite) testInvalidNames(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	cursor := seed(t, st) // record "present" of aggregate "a", checkpoint "c", dead letter ("s", "present")
	dl, isDL := st.(store.DeadLetterStore)
	for _, name := range []string{"", "c\x00", "\xff"} {
		calls := map[string]error{}
		_, calls["Checkpoint"] = st.Checkpoint(ctx, name)
		calls["SetCheckpoint"] = st.SetCheckpoint(ctx, name, cursor)
		_, calls["LoadAggregate"] = st.LoadAggregate(ctx, name, 0)
		if isDL {
			_, calls["DeadLetter by subscription"] = store.FindDeadLetter(ctx, dl, name, "present")
			_, calls["DeadLetter by event ID"] = store.FindDeadLetter(ctx, dl, "s", name)
			calls["DeleteDeadLetter by subscription"] = dl.DeleteDeadLetter(ctx, name, "present")
			calls["DeleteDeadLetter by event ID"] = dl.DeleteDeadLetter(ctx, "s", name)
			calls["PutDeadLetter"] = dl.PutDeadLetter(ctx, store.DeadLetterRecord{Subscription: name, Record: newRecord("present"), Error: "x", Attempts: 1, Time: base})
			if name != "" { // the empty subscription lists them all
				_, calls["DeadLetters"] = dl.DeadLetters(ctx, name, 0)
			}
		}
		for call, err := range calls {
			checkErr(t, fmt.Sprintf("%s with name %q", call, name), err, store.ErrInvalidName)
		}
	}
	if c, err := st.Checkpoint(ctx, "c"); err != nil || c != cursor {
		t.Errorf("Checkpoint(c) = %q, %v after refused calls; want %q", c, err, cursor)
	}
	if recs, err := st.LoadAggregate(ctx, "a", 0); err != nil || len(recs) != 1 {
		t.Errorf("LoadAggregate(a) = %d records, %v; want 1", len(recs), err)
	}
	if isDL {
		got, err := dl.DeadLetters(ctx, "", 0)
		if err != nil || len(got) != 1 || got[0].Subscription != "s" || got[0].Record.ID != "present" {
			t.Errorf("dead letters after refused calls: %+v, %v; want only (s, present)", got, err)
		}
	}
}
