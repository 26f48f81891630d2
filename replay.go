package event

import (
	"context"
	"fmt"

	"github.com/ncore-io/event/store"
)

// Replay re-delivers stored events that match q to h, in the store's order,
// and returns how many it delivered. It is how a read model is rebuilt from
// scratch: Replay(ctx, bus, store.Query{}, rebuild) feeds it every event in
// the log. q.Limit, if set, caps the events delivered; q.After and q.Since
// start from a cursor or a time.
//
// Replay runs h in the calling goroutine, once per event, with no retry: it
// stops at the first error and returns it with the count delivered before.
// On a bus of an interface type, h receives only the events whose payload is
// an E. Replay moves no subscription's checkpoint.
func Replay[E, T any](ctx context.Context, b *Bus[T], q store.Query, h Handler[E]) (int, error) {
	if h == nil {
		panic("event: Replay with nil handler")
	}
	return b.replay(ctx, q, func(ctx context.Context, ev *Event[T]) (bool, error) {
		e, ok := convert[E](ev)
		if !ok {
			return false, nil
		}
		return true, h(ctx, e)
	})
}

// ReplayTo re-delivers stored events that match q to the bus's subscription
// named name (see [Name]), with its retry policy and timeout, and returns how
// many it delivered. An event that still fails is dead-lettered as usual.
// Events are delivered one at a time in the store's order, in the calling
// goroutine; the subscription's own checkpoint, if durable, does not move.
func (b *Bus[T]) ReplayTo(ctx context.Context, name string, q store.Query) (int, error) {
	s := b.findSub(name)
	if s == nil {
		return 0, fmt.Errorf("event: replay to %s: no subscription of that name", name)
	}
	return b.replay(ctx, q, func(ctx context.Context, ev *Event[T]) (bool, error) {
		if s.accepts != nil && !s.accepts(ev.Payload) {
			return false, nil
		}
		b.deliver(s, newDeliveryCtx(b, ctx, ev, false), ev)
		return true, nil
	})
}

func (b *Bus[T]) replay(ctx context.Context, q store.Query, call func(context.Context, *Event[T]) (bool, error)) (int, error) {
	if ctx == nil {
		return 0, errNilContext("replay")
	}
	if b.store == nil {
		return 0, fmt.Errorf("event: replay: %w", ErrNoStore)
	}
	if q.Topic != "" {
		if err := store.ValidatePattern(q.Topic); err != nil {
			return 0, fmt.Errorf("event: replay: %w", err)
		}
	}
	limit := q.Limit
	q.Limit = replayPage
	pages, stop := b.prefetch(ctx, q)
	defer stop()
	n := 0
	for p := range pages {
		if p.err != nil {
			return n, fmt.Errorf("event: replay: %w", p.err)
		}
		for i := range p.recs {
			ev, err := b.decode(&p.recs[i])
			if err != nil {
				return n, fmt.Errorf("event: replay: %w", err)
			}
			took, err := call(ctx, &ev)
			if took {
				n++
			}
			if err != nil {
				return n, fmt.Errorf("event: replay: handler failed on event %s: %w", ev.ID, err)
			}
			if limit > 0 && n >= limit {
				return n, nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		// The reader may have stopped on ctx without a page to say so.
		return n, fmt.Errorf("event: replay: %w", err)
	}
	return n, nil
}

// replayPage is how many records a replay reads at a time.
const replayPage = 2000

// page is one Read of the store.
type page struct {
	recs []store.Record
	err  error
}

// prefetch reads the log for q, page after page, one page ahead of its
// reader, so that reading the next page overlaps decoding and handling
// this one. The channel closes after the end of the log or an error (sent
// as a page); stop ends the reading and waits for it.
func (b *Bus[T]) prefetch(ctx context.Context, q store.Query) (<-chan page, func()) {
	ctx, cancel := context.WithCancel(ctx)
	pages := make(chan page, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(pages)
		for {
			recs, next, err := b.store.Read(ctx, q)
			// An empty page is the end only if the cursor stayed: a
			// filtered read may look at part of the log and find nothing.
			end := err == nil && len(recs) == 0 && next == q.After
			if end {
				return
			}
			if len(recs) > 0 || err != nil {
				select {
				case pages <- page{recs, err}:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				return
			}
			q.After = next
		}
	}()
	return pages, func() {
		cancel()
		<-done
	}
}

func (b *Bus[T]) findSub(name string) *subscription[T] {
	for _, s := range b.routes.Load().subs {
		if s.name == name {
			return s
		}
	}
	for _, c := range *b.durables.Load() {
		if c.sub.name == name || c.name == name {
			return c.sub
		}
	}
	return nil
}
