package event

import "sync/atomic"

// counters are the bus's running totals. Publisher-side and worker-side
// counters sit on separate cache lines (cacheLine apart, and apart from
// the fields around them) so the two sides do not contend.
type counters struct {
	_            [cacheLine]byte
	published    atomic.Uint64
	noSubscriber atomic.Uint64
	_            [cacheLine - 16]byte
	delivered    atomic.Uint64
	processed    atomic.Uint64
	failed       atomic.Uint64
	retried      atomic.Uint64
	deadLettered atomic.Uint64
	dropped      atomic.Uint64
	storeErrors  atomic.Uint64
	takeovers    atomic.Uint64
	_            [cacheLine - 64]byte
}

// Stats is a snapshot of a bus's counters, as returned by [Bus.Stats]. Its
// JSON form is what eventhttp serves at /events/stats.
//
// Events are counted once in Published; each delivery of an event to a
// subscription is counted once in Delivered and, when it ends, once in
// Processed, Failed or Dropped. At rest (no Publish or handler running):
//
//	Delivered == Processed + Failed + Dropped
//	InFlight == 0 && QueueDepth == 0
type Stats struct {
	// Published counts events accepted by Publish.
	Published uint64 `json:"published"`
	// NoSubscriber counts published events that matched no subscription.
	NoSubscriber uint64 `json:"no_subscriber"`
	// Delivered counts deliveries of events to subscriptions begun.
	Delivered uint64 `json:"delivered"`
	// Processed counts deliveries whose handler succeeded, retries included.
	Processed uint64 `json:"processed"`
	// Failed counts deliveries that failed after their last attempt.
	Failed uint64 `json:"failed"`
	// Retried counts retries: handler calls after the first, over all
	// deliveries.
	Retried uint64 `json:"retried"`
	// DeadLettered counts failed or dropped deliveries kept as dead
	// letters: stored by the store, or handed to the [WithDeadLetter]
	// function.
	DeadLettered uint64 `json:"dead_lettered"`
	// Dropped counts deliveries abandoned unfinished: queued events that
	// Close gave up on, and events whose subscription stopped (Unsubscribe,
	// or a durable subscription stopping) while they waited for a retry.
	Dropped uint64 `json:"dropped"`
	// StoreErrors counts failures of the store met by durable subscriptions
	// (reads, checkpoints, dead letters), which they retry; see
	// [Subscription.Err].
	StoreErrors uint64 `json:"store_errors"`
	// Takeovers counts partitions that this bus's consumer group members
	// (see [Shared]) took over from a member that stopped without handing
	// them over: its lease ran out, or its process exited. Each may repeat
	// the events that member handled after the partition's last
	// checkpoint, at most what [Checkpoint] lets go unsaved.
	Takeovers uint64 `json:"takeovers"`
	// Partitions counts, per consumer group (by durable name), the
	// partitions this bus's member holds now; see [Bus.Group] for the
	// whole group.
	Partitions map[string]int `json:"partitions,omitempty"`
	// QueueDepth is how many events wait for a worker, including events
	// waiting behind an earlier event of their aggregate.
	QueueDepth int `json:"queue_depth"`
	// InFlight is how many deliveries are running now.
	InFlight int `json:"in_flight"`
	// Subscribers counts subscriptions by pattern.
	Subscribers map[string]int `json:"subscribers"`
}

// Stats returns a snapshot of the bus's counters. The counters are read one
// by one while the bus runs, so only a snapshot taken at rest adds up
// exactly.
func (b *Bus[T]) Stats() Stats {
	// Read the outcome counters before Delivered so that a delivery ending
	// between the reads cannot make InFlight negative.
	st := Stats{
		Processed:    b.stats.processed.Load(),
		Failed:       b.stats.failed.Load(),
		Dropped:      b.stats.dropped.Load(),
		Retried:      b.stats.retried.Load(),
		DeadLettered: b.stats.deadLettered.Load(),
		StoreErrors:  b.stats.storeErrors.Load(),
		Takeovers:    b.stats.takeovers.Load(),
	}
	st.Delivered = b.stats.delivered.Load()
	st.NoSubscriber = b.stats.noSubscriber.Load()
	st.Published = b.stats.published.Load()
	st.InFlight = int(st.Delivered - st.Processed - st.Failed - st.Dropped)
	st.QueueDepth = b.queue.len() + b.keys.parkedCount()
	st.Subscribers = make(map[string]int)
	for _, s := range b.routes.Load().subs {
		st.Subscribers[s.pattern]++
	}
	for _, c := range *b.durables.Load() {
		if c.grouped {
			if st.Partitions == nil {
				st.Partitions = make(map[string]int)
			}
			st.Partitions[c.name] = int(c.held.Load())
		}
	}
	return st
}
