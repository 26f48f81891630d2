// Package event is an in-process event bus with typed events, asynchronous
// workers, per-subscription retry, timeout and dead letters, and per-key
// ordering. Its sub-packages add a durable event log on SQLite or
// PostgreSQL (package store and its drivers), an HTTP API (package
// eventhttp) and a test double (package eventtest).
//
// # Publishing and subscribing
//
// A [Bus] carries payloads of one Go type T. [New] creates one; [Subscribe]
// registers a [Handler] for a topic pattern; [Bus.Publish] sends an event:
//
//	bus, err := event.New[UserRegistered]()
//	...
//	event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
//		return sendWelcomeEmail(ctx, ev.Payload.Email)
//	})
//	err = bus.Publish(ctx, "user.registered", UserRegistered{UserID: "42", Email: "ada@example.com"})
//
// Each handler receives an [Event]: the payload in an envelope with a
// time-ordered ID, the topic, the time, the [Kind], an optional aggregate ID
// and the correlation and causation IDs that tie events together.
//
// # Many event types on one bus
//
// With an interface type T (any, or an application's own event interface)
// one bus carries many event types. A handler for a concrete type then
// receives only events whose payload has that type:
//
//	bus, _ := event.New[any]()
//	event.Subscribe(bus, "user.>", func(ctx context.Context, ev event.Event[UserRegistered]) error { ... })
//
// # Topics and patterns
//
// A topic is a dot-separated name such as "user.registered". A pattern may
// use "*" for exactly one segment ("user.*") and a final ">" for one or more
// ("user.>"). Invalid topics and patterns are rejected with an error
// matching [ErrInvalidTopic]; see [store.ValidatePattern] for the rules.
//
// # Delivery
//
// By default handlers run on a pool of workers ([WithWorkers]) fed by a
// bounded queue ([WithBufferSize]). When the queue is full, Publish waits
// until its context is done, or with [WithFailFast] fails with
// [ErrQueueFull]; an event is never dropped silently. [WithSync] or a
// subscription's [Sync] option runs handlers in the publisher's goroutine
// instead.
//
// [Bus.PublishBatch] publishes several events at once, all or none.
//
// Every event reaches every matching subscription once (plus retries).
// Events published with the same [Aggregate] ID reach each subscription in
// publish order, one at a time, while events of different aggregates are
// handled in parallel.
//
// # Failures
//
// A handler that returns an error or panics is retried per its
// [RetryPolicy] ([Retry], [WithRetry]), each attempt bounded by its
// [Timeout]. After the last attempt the event is counted as failed and
// handed to the [WithDeadLetter] function. A panic becomes a [PanicError]
// carrying the stack.
//
// # Events caused by events
//
// A handler that publishes with the context it was given creates an event
// whose CausationID is the handled event's ID and whose CorrelationID is
// inherited, so a chain of reactions can be traced back to its origin.
// Such publishes never wait for queue room, so handlers cannot deadlock the
// bus.
//
// # Shutting down
//
// [Bus.Close] stops intake, waits until every accepted event has been
// handled by every subscription due to handle it (durable subscriptions
// included, for the events this bus appended), and stops the bus's
// goroutines. If its context ends first, it cancels running handlers'
// contexts, drops what is still queued (counted and dead-lettered), and
// returns. Its doc comment is the contract.
//
// # Durability
//
// [WithStore] gives the bus a durable event log (store/sqlitestore, embedded
// and pure Go, or store/pgstore for PostgreSQL). [Bus.Publish] then appends
// each event, with its payload encoded by the [Codec] (JSON by default),
// before delivering it, and returns the store's error if that fails.
// Concurrent publishers share the store's group commit, so durable
// throughput is not one fsync per event. On a bus of an interface type,
// [WithTypes] and typed subscriptions register the payload types that
// stored events decode into.
//
// A [Durable] subscription reads the log rather than the in-process queue:
// it keeps a checkpoint, catches up on start from it, follows new events as
// they are appended (from this process, or others through the store's
// [store.Notifier] or by polling), and delivers each event at least once,
// in order.
//
// [Bus.PublishTx] (and [Bus.PublishBatchTx], for several) appends an event
// inside the caller's own database transaction (the transactional outbox),
// so a domain write and its event commit together; durable subscriptions
// deliver it after the commit.
//
// [Replay] and [Bus.ReplayTo] re-deliver stored events, to rebuild a read
// model or to debug. [Fold] and [LoadAggregate] load an aggregate's events
// for event sourcing, and [ExpectVersion] publishes with optimistic
// concurrency. Events that exhausted their retries are kept as dead
// letters in the store: list them with [Bus.DeadLetters] and re-drive them
// with [Bus.Redrive]. [WithRetention] deletes old events in the background.
//
// # Observing
//
// [Bus.Stats] returns exact counters: published, delivered, processed,
// failed, retried, dead-lettered, dropped, the queue depth, in-flight
// deliveries and subscribers per pattern. Retries and failures are logged
// through the [log/slog.Logger] given with [WithLogger].
//
// # Testing services
//
// Services should depend on [Publisher], [TxPublisher] and [Subscriber]
// rather than on *Bus, so that tests can pass an eventtest.MockBus instead;
// [Subscribe] takes any Subscriber.
//
// # Naming
//
// Operations are methods of [Bus], except those that need a type parameter
// of their own, which Go methods cannot have: [Subscribe], [Replay], [Fold]
// and [LoadAggregate] take the payload type their handler or state
// decodes into, and are functions.
//
// # Concurrency
//
// A Bus is safe for concurrent use. Handlers of an asynchronous subscription
// run concurrently with each other (up to the worker count, or its
// [Concurrency] cap) except for events of one aggregate.
package event
