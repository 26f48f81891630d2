package event

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ncore-io/event/store"
)

// storeDeadLetter keeps a failed delivery in the store, if the store keeps
// dead letters.
func (b *Bus[T]) storeDeadLetter(s *subscription[T], d *delivery[T], attempts int, cause error) bool {
	dls, ok := b.store.(store.DeadLetterStore)
	if !ok {
		return false
	}
	rec := d.rec
	if rec == nil {
		r, err := b.encode(&d.ev)
		if err != nil {
			b.log.LogAttrs(context.Background(), slog.LevelError, "event: cannot encode dead letter",
				slog.String("subscription", s.name), slog.String("event_id", d.ev.ID.String()), slog.Any("error", err))
			return false
		}
		rec = &r
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := dls.PutDeadLetter(ctx, store.DeadLetterRecord{Subscription: s.name, Record: *rec, Error: errorText(cause), Attempts: attempts, Time: time.Now()})
	if err != nil {
		b.log.LogAttrs(ctx, slog.LevelError, "event: cannot store dead letter",
			slog.String("subscription", s.name), slog.String("event_id", d.ev.ID.String()), slog.Any("error", err))
		return false
	}
	return true
}

// errorText is the text of a handler's error as a dead letter keeps it.
// Stores refuse text that is not valid UTF-8 or holds NUL bytes; a handler
// that wraps binary data in its error must not cost the dead letter, so
// such bytes become U+FFFD.
func errorText(err error) string {
	msg := err.Error()
	if utf8.ValidString(msg) && strings.IndexByte(msg, 0) < 0 {
		return msg
	}
	return strings.ToValidUTF8(strings.ReplaceAll(msg, "\x00", "\uFFFD"), "\uFFFD")
}

func (b *Bus[T]) deadLetterStore(op string) (store.DeadLetterStore, error) {
	if b.store == nil {
		return nil, fmt.Errorf("event: %s: %w", op, ErrNoStore)
	}
	dls, ok := b.store.(store.DeadLetterStore)
	if !ok {
		return nil, fmt.Errorf("event: %s: the store (%T) does not keep dead letters", op, b.store)
	}
	return dls, nil
}

// DeadLetters lists the dead letters the store keeps for the subscription
// named subscription (all subscriptions if empty), oldest first, at most
// limit (0 means [store.DefaultReadLimit]).
func (b *Bus[T]) DeadLetters(ctx context.Context, subscription string, limit int) ([]store.DeadLetterRecord, error) {
	dls, err := b.deadLetterStore("dead letters")
	if err != nil {
		return nil, err
	}
	list, err := dls.DeadLetters(ctx, subscription, limit)
	if err != nil {
		return nil, fmt.Errorf("event: dead letters: %w", err)
	}
	return list, nil
}

// Redrive hands the dead letter of the subscription and event ID back to
// the subscription's handler, in the calling goroutine, with its retry
// policy. If the handler succeeds the dead letter is deleted; if it fails
// again the dead letter is replaced and Redrive returns the error. The
// subscription must be registered on this bus. A dead letter that does not
// exist fails with an error matching [store.ErrNotFound]; an empty
// subscription or event ID with one matching [store.ErrInvalidName].
func (b *Bus[T]) Redrive(ctx context.Context, subscription, eventID string) error {
	dls, err := b.deadLetterStore("redrive")
	if err != nil {
		return err
	}
	dl, err := store.FindDeadLetter(ctx, dls, subscription, eventID)
	if err != nil {
		return fmt.Errorf("event: redrive %s of %s: %w", eventID, subscription, err)
	}
	return b.redrive(ctx, dls, dl)
}

// RedriveAll re-drives every dead letter of the subscription (see
// [Bus.Redrive]) and returns how many succeeded. It goes on past failures,
// trying each dead letter once, and returns them joined.
func (b *Bus[T]) RedriveAll(ctx context.Context, subscription string) (int, error) {
	dls, err := b.deadLetterStore("redrive")
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	tried := map[string]bool{} // by subscription and event ID: a failure is stored again, later in the list
	for {
		list, err := dls.DeadLetters(ctx, subscription, store.MaxReadLimit)
		if err != nil {
			return n, errors.Join(append(errs, fmt.Errorf("event: redrive: %w", err))...)
		}
		fresh := 0
		for _, dl := range list {
			key := dl.Subscription + "\x00" + dl.Record.ID
			if tried[key] {
				continue
			}
			tried[key] = true
			fresh++
			if err := b.redrive(ctx, dls, dl); err != nil {
				errs = append(errs, err)
				continue
			}
			n++
		}
		// A short page held them all; a page of nothing new means the
		// rest are failures already tried.
		if len(list) < store.MaxReadLimit || fresh == 0 {
			return n, errors.Join(errs...)
		}
	}
}

func (b *Bus[T]) redrive(ctx context.Context, dls store.DeadLetterStore, dl store.DeadLetterRecord) error {
	s := b.findSub(dl.Subscription)
	if s == nil {
		return fmt.Errorf("event: redrive %s: no subscription %q on this bus", dl.Record.ID, dl.Subscription)
	}
	ev, err := b.decode(&dl.Record)
	if err != nil {
		return fmt.Errorf("event: redrive: %w", err)
	}
	if s.accepts != nil && !s.accepts(ev.Payload) {
		return fmt.Errorf("event: redrive %s: subscription %q does not take a %T", dl.Record.ID, dl.Subscription, ev.Payload)
	}
	d := &delivery[T]{bus: b, parent: ctx, ev: ev, rec: &dl.Record}
	if b.deliver(s, d) != succeeded {
		return fmt.Errorf("event: redrive %s to %s: handler failed again", dl.Record.ID, dl.Subscription)
	}
	if err := dls.DeleteDeadLetter(ctx, dl.Subscription, dl.Record.ID); err != nil {
		return fmt.Errorf("event: redrive %s: %w", dl.Record.ID, err)
	}
	return nil
}
