// Package eventhttp serves the HTTP API of an event bus: publishing events,
// reading the stored log, following it as Server-Sent Events, the bus's
// counters, and dead letters for operators. An event posted over HTTP is
// published on the bus like one published in Go, and reaches the same
// typed handlers.
//
// # Mounting
//
// [New] returns a [Handler] that serves the paths /events and /events/….
// Mount it in your own mux on both:
//
//	h, err := eventhttp.New(bus, eventhttp.Type[UserRegistered]("user.registered"))
//	...
//	mux.Handle("/events", h)
//	mux.Handle("/events/", h)
//
// To serve it under a prefix, strip the prefix:
//
//	mux.Handle("/api/events", http.StripPrefix("/api", h))
//	mux.Handle("/api/events/", http.StripPrefix("/api", h))
//
// The bus must have a store (event.WithStore): the API reads what it
// answers from the store.
//
// # Routes
//
//	method  path                                             class    answer
//	POST    /events                                          publish  201 the stored event(s) (200 for a retry)
//	GET     /events                                          read     200 {"events": [...], "next": "<cursor>"}
//	GET     /events/{id}                                     read     200 one event
//	GET     /events/stats                                    read     200 the bus's counters
//	GET     /events/stream                                   read     200 text/event-stream
//	GET     /events/deadletters                              admin    200 {"dead_letters": [...]}
//	POST    /events/deadletters/{subscription}/{id}/redrive  admin    200 {"redriven": 1}
//	POST    /events/deadletters/{subscription}/redrive       admin    200 {"redriven": <n>}
//
// # Publishing
//
// POST /events takes one event as a JSON object, or a batch as an array
// of them:
//
//	{
//	  "type": "user.registered",          the topic; required
//	  "data": {"user_id": "123"},         the payload; required, not null
//	  "aggregate_id": "user-123",         optional: the entity, which orders and versions its events
//	  "kind": "domain",                   optional: domain (the default), system, integration, ...
//	  "metadata": {"source": "signup"},   optional: string values; keys starting "event." are reserved
//	  "correlation_id": "<uuid>",         optional: continue a conversation begun elsewhere
//	  "expected_version": 3,              optional, with aggregate_id: publish only at this version
//	  "id": "<uuid or any text>"          optional: the event's ID (see Retries)
//	}
//
// The body is read as JSON when its Content-Type is application/json,
// anything ending in +json, application/x-www-form-urlencoded (what curl
// -d sends when no -H is given) or absent; other types are refused with
// 415, so this works as it is:
//
//	curl -X POST http://localhost:8080/events -d '{"type": "user.registered", "data": {"user_id": "123", "email": "user@example.com"}}'
//
// Decoding is strict: unknown fields, trailing data after the object and
// bodies over [MaxBodySize] (default 1 MiB) are refused.
//
// data decodes into the Go type registered for the topic with [Type]
// (eventhttp.Type[UserRegistered]("user.registered")), also strictly, and
// that value is what the bus publishes, so a handler registered with
// event.Subscribe[UserRegistered] receives it. On a bus of a concrete type
// T, topics without a registration decode into T. On a bus of an interface
// type (such as any) a topic without a registration is refused with 400
// naming the topic, unless [RawJSON] is given: data is then published as
// a json.RawMessage.
//
// The answer is the event as stored, an [Envelope]:
//
//	{
//	  "id": "0191d5a0-8d3c-7c4e-9a51-3b2f4c7d8e90",
//	  "type": "user.registered",
//	  "kind": "domain",
//	  "aggregate_id": "",
//	  "version": 0,
//	  "position": 1,
//	  "cursor": "",
//	  "time": "2024-09-01T10:00:00.123456Z",
//	  "metadata": {},
//	  "correlation_id": "0191d5a0-8d3c-7c4e-9a51-3b2f4c7d8e90",
//	  "causation_id": "",
//	  "data": {"user_id": "123", "email": "user@example.com"}
//	}
//
// Reads (GET /events, the stream) fill in cursor; the answer to a POST
// leaves it empty, since a store's Load does not report it.
//
// A JSON array of such objects publishes them as one batch (see
// event.Bus.PublishBatch): stored atomically, all of them or none, in the
// order given, at most [MaxBatchLen]. The answer is 201 with
// {"events": [...]}, the envelopes in the same order. An error that one
// event of the batch caused says which with its index.
//
// # Retries
//
// A client that did not get an answer may retry safely if it gave the
// event an ID: with an "id" field, or an Idempotency-Key header (the
// field wins when both are given). The event's ID is then the id or key
// itself when it is a UUID, else a name-based UUID derived from it (see
// [EventIDFor]). The first POST answers 201; a retry answers 200 with the
// event as stored by the first, and stores nothing. A retry whose event
// differs from the stored one (topic, kind, aggregate, metadata or data)
// is refused with 409. Without an ID, every POST publishes a new event.
//
// In a batch, event i's ID is its id field, else one derived from the
// Idempotency-Key and i. A retried batch answers 200 when all its events
// are stored; one of which only some are stored is not a retry, but 409.
//
// # Reading
//
// GET /events lists stored events in the log's global order, filtered by
// the query parameters aggregate_id, type (a topic pattern such as user.*
// or user.>), kind, since (an RFC 3339 time), after (a cursor from an
// earlier answer) and limit (default 100, at most 1000):
//
//	curl 'http://localhost:8080/events?aggregate_id=user-123'
//	curl 'http://localhost:8080/events?type=user.registered'
//	curl 'http://localhost:8080/events?since=2024-01-01T00:00:00Z'
//
// The answer's next is the cursor to pass as after for the next page. A
// filtered listing reads on until its page is full, but within a bound, so
// that one request's work stays in proportion to its page: a page may hold
// fewer events than the limit although more follow. To read everything,
// follow next until a page comes back empty with next equal to after.
// Unknown or repeated parameters are refused with 400 naming them.
//
// GET /events/{id} answers one event, or 404.
//
// GET /events/stats answers the bus's counters, event.Stats in JSON,
// whose first keys are the monitoring answer of the original design:
//
//	{
//	  "published": 15234,
//	  "processed": 15180,
//	  "failed": 54,
//	  "subscribers": {"user.registered": 3, "order.placed": 5},
//	  "no_subscriber": 0, "delivered": 15234, "retried": 12,
//	  "dead_lettered": 54, "dropped": 0, "queue_depth": 0, "in_flight": 0
//	}
//
// # Streaming
//
// GET /events/stream?type=<pattern> follows the log as Server-Sent Events.
// Each event is sent as
//
//	id: <cursor>
//	event: <topic>
//	data: <the envelope, on one line>
//
// A stream starts with the events published after it opened, or, with a
// Last-Event-ID header (which a reconnecting EventSource sends) or an
// after parameter, just after that cursor: it reads the store from there,
// then follows new events, so a client that reconnects misses nothing.
// An idle stream sends a comment every [KeepAlive] (default 15s). New
// events are noticed through the store's signal when it has one
// (store.Notifier), else by reading it every [PollInterval].
//
// A stream ends when its client leaves, when the store fails or is closed
// (with a comment saying why), and when [Handler.Close] is called.
// http.Server.Shutdown waits for open requests but does not end streams,
// so register Close with it:
//
//	srv.RegisterOnShutdown(h.Close)
//
// Closing the bus alone does not end streams, as they read the store.
//
// # Dead letters
//
// GET /events/deadletters?subscription=<name>&limit=<n> lists the events
// that a subscription failed to handle after its retries (all
// subscriptions without the parameter), oldest first, each as
//
//	{"subscription": "mailer", "error": "smtp: connection refused", "attempts": 4, "time": "...", "event": {<envelope>}}
//
// POST /events/deadletters/{subscription}/{id}/redrive hands one back to
// the subscription's handler, which must be registered on this process's
// bus; POST /events/deadletters/{subscription}/redrive does so for all of
// them. A dead letter whose handler succeeds is deleted. A handler that
// fails again answers 500, listing why (for a re-drive of all, with how
// many succeeded); a dead letter that does not exist answers 404.
//
// # Errors
//
// Every error is answered in JSON: {"error": "<what was wrong>", ...},
// with field, parameter or header naming the part of the request at
// fault, index the event of a batch, and for a version conflict the
// aggregate_id, expected_version and actual_version. A refused request
// stores nothing.
//
//	400  malformed JSON, an unknown field, trailing data, a missing or
//	     invalid topic, data that does not fit the topic's type, a topic
//	     without a type, an invalid record, a bad query parameter or header
//	401  no or invalid credentials, with WWW-Authenticate: Bearer
//	403  credentials that do not allow the route's class
//	404  no such event, dead letter or route
//	405  a method the route does not take, with Allow
//	409  expected_version did not hold; a retry that differs from the
//	     stored event
//	410  a cursor into events that retention deleted
//	413  a body larger than MaxBodySize
//	415  a content type that is not JSON
//	500  a re-drive whose handler failed again; an authorizer's own error
//	501  dead-letter routes on a store that keeps no dead letters
//	503  the store is closed or unreachable, or the request's context
//	     ended while it worked; the bus is closed; streams after Close
//
// # Authorization
//
// Routes fall into three classes: [Publish] (POST /events), [Read] (the
// other routes under /events) and [Admin] (dead letters). [WithAuthorizer]
// sets the [Authorizer] of one or more classes. [BearerToken] is a ready
// one, which compares the token in constant time, and [AnyOf] combines
// several:
//
//	eventhttp.WithAuthorizer(eventhttp.AnyOf(
//		eventhttp.BearerToken(opsToken),                                   // everything
//		eventhttp.BearerToken(appToken, eventhttp.Publish, eventhttp.Read), // no dead letters
//	))
//
// A class without an authorizer is open to anyone who can reach the
// handler. With no authorizer configured, anyone can publish events.
//
// # Concurrency
//
// A Handler is safe for concurrent use, and serves requests concurrently.
package eventhttp
