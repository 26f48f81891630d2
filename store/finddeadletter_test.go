package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ncore-io/event/store"
)

// listOnly is a dead-letter store without DeadLetterLookup, as written
// against the smaller interface: FindDeadLetter must search its list.
type listOnly struct{ letters []store.DeadLetterRecord }

func (l *listOnly) PutDeadLetter(_ context.Context, d store.DeadLetterRecord) error {
	l.letters = append(l.letters, d)
	return nil
}

func (l *listOnly) DeadLetters(_ context.Context, subscription string, limit int) ([]store.DeadLetterRecord, error) {
	var out []store.DeadLetterRecord
	for _, d := range l.letters {
		if (subscription == "" || d.Subscription == subscription) && len(out) < limit {
			out = append(out, d)
		}
	}
	return out, nil
}

func (l *listOnly) DeleteDeadLetter(context.Context, string, string) error { return nil }

func TestFindDeadLetterSearchesStoresWithoutLookup(t *testing.T) {
	ctx := t.Context()
	s := &listOnly{}
	for _, d := range []store.DeadLetterRecord{
		{Subscription: "mailer", Record: store.Record{ID: "e1"}, Error: "smtp down"},
		{Subscription: "audit", Record: store.Record{ID: "e2"}, Error: "disk full"},
		{Subscription: "mailer", Record: store.Record{ID: "e2"}, Error: "bounced"},
	} {
		s.PutDeadLetter(ctx, d)
	}
	d, err := store.FindDeadLetter(ctx, s, "mailer", "e2")
	if err != nil || d.Error != "bounced" {
		t.Fatalf("FindDeadLetter(mailer, e2) = %+v, %v; want the mailer's dead letter of e2", d, err)
	}
	if _, err := store.FindDeadLetter(ctx, s, "audit", "e1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("FindDeadLetter(audit, e1) = %v, want ErrNotFound", err)
	}
	for _, key := range [][2]string{{"", "e1"}, {"mailer", ""}, {"mail\x00er", "e1"}} {
		if _, err := store.FindDeadLetter(ctx, s, key[0], key[1]); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("FindDeadLetter(%q, %q) = %v, want ErrInvalidName", key[0], key[1], err)
		}
	}
}
