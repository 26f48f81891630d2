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

// DeadLetter is an event that a subscription failed to handle, as passed to
// the [WithDeadLetter] function. Its stored form, in a store that keeps dead
// letters, is a [store.DeadLetterRecord].
type DeadLetter struct {
	// Subscription is the name of the subscription that failed.
	Subscription string
	// Event is the event, with its payload as an any. For a stored event
	// that could not be decoded, it has the envelope's fields and a nil
	// payload.
	Event Event[any]
	// Err is the last attempt's error; [ErrClosed] for an event dropped
	// because [Bus.Close] gave up before it was delivered; an error
	// matching [ErrUnsubscribed] for one whose retries Unsubscribe cut off;
	// or the decoding error of a stored event that could not be decoded.
	Err error
	// Attempts is how many times the handler was called.
	Attempts int
	// Time is when the event was dead-lettered.
	Time time.Time
}

// fail records a delivery that will not be retried and dead-letters it.
// rec is the stored event, when the caller has it (see deadLetter).
func (b *Bus[T]) fail(s *subscription[T], ctx context.Context, ev *Event[T], rec *store.Record, attempts int, err error) outcome {
	b.stats.failed.Add(1)
	b.log.LogAttrs(context.Background(), slog.LevelError, "event: handler failed, dead-lettering",
		slog.String("subscription", s.name), slog.String("topic", ev.Topic),
		slog.String("event_id", ev.ID.String()), slog.Int("attempts", attempts), slog.Any("error", err))
	if !b.deadLetter(s, ctx, ev, rec, attempts, err) {
		return lost
	}
	return failed
}

// drop records a queued delivery abandoned because Close gave up.
func (b *Bus[T]) drop(s *subscription[T], ctx context.Context, ev *Event[T], err error) {
	b.stats.delivered.Add(1) // before its outcome, as Stats reads them in the other order
	b.stats.dropped.Add(1)
	b.log.LogAttrs(context.Background(), slog.LevelWarn, "event: bus closed before delivery, dropping",
		slog.String("subscription", s.name), slog.String("topic", ev.Topic), slog.String("event_id", ev.ID.String()))
	b.deadLetter(s, ctx, ev, nil, 0, err)
}

// deadLetter hands a failed delivery to the store, if it keeps dead
// letters, and to the dead-letter function. rec is the stored event when
// the caller has it (a durable subscription's read), else d's event is
// encoded. ctx is the handlers' context. It reports false if the store should have kept the dead letter
// and could not.
func (b *Bus[T]) deadLetter(s *subscription[T], ctx context.Context, ev *Event[T], rec *store.Record, attempts int, err error) bool {
	kept, stored := false, true
	if dls, ok := b.store.(store.DeadLetterStore); ok {
		stored = b.storeDeadLetter(dls, s, ev, rec, attempts, err)
		kept = stored
	}
	if b.cfg.deadLetter != nil {
		dev, _ := convert[any](ev)
		b.cfg.deadLetter(context.WithoutCancel(ctx), DeadLetter{Subscription: s.name, Event: dev, Err: err, Attempts: attempts, Time: time.Now()})
		kept = true
	}
	if kept {
		b.stats.deadLettered.Add(1)
	}
	return stored
}

func (b *Bus[T]) storeDeadLetter(dls store.DeadLetterStore, s *subscription[T], ev *Event[T], rec *store.Record, attempts int, cause error) bool {
	if rec == nil {
		r, err := b.encode(ev)
		if err != nil {
			b.log.LogAttrs(context.Background(), slog.LevelError, "event: cannot encode dead letter",
				slog.String("subscription", s.name), slog.String("event_id", ev.ID.String()), slog.Any("error", err))
			return false
		}
		rec = &r
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := dls.PutDeadLetter(ctx, store.DeadLetterRecord{Subscription: s.name, Record: *rec, Error: errorText(cause), Attempts: attempts, Time: time.Now()})
	if err != nil {
		b.log.LogAttrs(ctx, slog.LevelError, "event: cannot store dead letter",
			slog.String("subscription", s.name), slog.String("event_id", ev.ID.String()), slog.Any("error", err))
		return false
	}
	return true
}

// errorText is the text of a handler's error as a dead letter keeps it,
// with the stack of a panic. Stores refuse text that is not valid UTF-8 or
// holds NUL bytes; a handler that wraps binary data in its error must not
// cost the dead letter, so such bytes become U+FFFD.
func errorText(err error) string {
	msg := err.Error()
	if pe, ok := errors.AsType[*PanicError](err); ok && len(pe.Stack) > 0 {
		msg += "\n\n" + string(pe.Stack)
	}
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
	if ctx == nil {
		return nil, errNilContext("dead letters")
	}
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
	if ctx == nil {
		return errNilContext("redrive")
	}
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
	if ctx == nil {
		return 0, errNilContext("redrive")
	}
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
	if b.deliver(s, newDeliveryCtx(b, ctx, &ev, false), &ev) != succeeded {
		return fmt.Errorf("event: redrive %s to %s: handler failed again", dl.Record.ID, dl.Subscription)
	}
	if err := dls.DeleteDeadLetter(ctx, dl.Subscription, dl.Record.ID); err != nil {
		return fmt.Errorf("event: redrive %s: %w", dl.Record.ID, err)
	}
	return nil
}
