package eventhttp

// GET /events/stream follows the log as Server-Sent Events. A stream is a
// loop over the store: read after the cursor, write what was read, and when
// a read finds nothing new, wait for a wake-up (the store's signal of an
// append, or a poll tick), sending keep-alive comments meanwhile. Every
// event comes from the store, with its cursor as the SSE id, so a client
// that reconnects with Last-Event-ID resumes exactly where it was.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/ncore-io/event/store"
)

const (
	// streamBatch is how many records a stream reads at a time.
	streamBatch = 100
	// streamWriteTimeout bounds each write to a stream's client, so that a
	// client that stopped reading cannot hold its stream (and Close) for
	// ever.
	streamWriteTimeout = 30 * time.Second
)

// notifications returns a channel that receives a value soon after appends
// to s commit, or nil if s cannot signal them.
func notifications(ctx context.Context, s store.Store) (<-chan struct{}, error) {
	w, ok := s.(store.Notifier)
	if !ok {
		return nil, nil
	}
	return w.Notify(ctx)
}

func (h *Handler) stream(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkParams(q, "type", "after"); err != nil {
		return err
	}
	topic, err := topicParam(q)
	if err != nil {
		return err
	}
	query := store.Query{Topic: topic, Limit: streamBatch}
	param, header := "", ""
	if c := r.Header.Get("Last-Event-ID"); c != "" {
		// A reconnecting EventSource sends it: it is later than any after=
		// in the URL it reconnects to.
		query.After, header = store.Cursor(c), "Last-Event-ID"
	} else if c := q.Get("after"); c != "" {
		query.After, param = store.Cursor(c), "after"
	} else {
		// From now on. The first reads skip what is older, then everything
		// after the cursor they reached is new.
		query.Since = time.Now().Truncate(time.Microsecond)
	}

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return newError(http.StatusServiceUnavailable, "the event handler is closed")
	}
	h.streams.Add(1)
	h.mu.Unlock()
	defer h.streams.Done()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel() // also ends the store's notifications
	wake, err := notifications(ctx, h.store)
	if err != nil {
		return err
	}
	var poll <-chan time.Time
	if wake == nil {
		t := time.NewTicker(h.cfg.pollInterval)
		defer t.Stop()
		poll = t.C
	}
	// Read once before answering, so that a bad cursor gets its 400.
	recs, next, err := h.store.Read(ctx, query)
	if err != nil {
		return cursorError(err, param, header)
	}

	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no") // nginx would buffer the stream
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		// The GET pattern takes HEAD too, which has no body to stream:
		// following the log would hold the connection for nothing.
		return nil
	}
	rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := w.Write([]byte(": events\n\n")); err != nil {
		return nil
	}
	if err := rc.Flush(); err != nil {
		return nil // the writer cannot stream, or the client left
	}
	keepAlive := time.NewTicker(h.cfg.keepAlive)
	defer keepAlive.Stop()
	var buf []byte
	for {
		if len(recs) > 0 {
			buf = buf[:0]
			for i := range recs {
				buf = appendEvent(buf, &recs[i])
			}
			rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			if _, err := w.Write(buf); err != nil {
				return nil
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
		}
		caughtUp := len(recs) == 0 && next == query.After
		query.After = next
		if caughtUp {
			query.Since = time.Time{}
		wait:
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-h.done:
					return nil
				case _, ok := <-wake:
					if !ok {
						// The store stopped signalling (it is closing, or
						// ctx ended): the next read tells which.
						wake = nil
						t := time.NewTicker(h.cfg.pollInterval)
						defer t.Stop()
						poll = t.C
					}
					break wait
				case <-poll:
					break wait
				case <-keepAlive.C:
					rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
					if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
						return nil
					}
					if err := rc.Flush(); err != nil {
						return nil
					}
				}
			}
		}
		recs, next, err = h.store.Read(ctx, query)
		if err != nil {
			// The answer has begun, so there is no status to tell it
			// with: end the stream, and the client's reconnection, from
			// the last id it saw, gets the error.
			if !errors.Is(err, context.Canceled) {
				h.streamFailed(w, rc, err)
			}
			return nil
		}
	}
}

// streamFailed tells the client, in a comment, why its stream ends.
func (h *Handler) streamFailed(w http.ResponseWriter, rc *http.ResponseController, err error) {
	msg := strings.NewReplacer("\r", " ", "\n", " ").Replace(err.Error())
	rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	w.Write([]byte(": error: " + msg + "\n\n"))
	rc.Flush()
}

// appendEvent appends rec as one SSE event: its cursor as the id, its topic
// as the event type, and its envelope as the data.
func appendEvent(buf []byte, rec *store.Record) []byte {
	data, err := marshal(envelope(rec))
	if err != nil {
		return buf // unreachable: an envelope always marshals
	}
	if c := string(rec.Cursor); c != "" && !strings.ContainsAny(c, "\r\n\x00") {
		buf = append(buf, "id: "...)
		buf = append(buf, c...)
		buf = append(buf, '\n')
	}
	buf = append(buf, "event: "...)
	buf = append(buf, rec.Topic...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, data...)
	return append(buf, '\n', '\n')
}
