// Package eventtest helps test code that publishes and handles events with
// package event. It depends only on the standard library and package event,
// so tests that use it inherit no assertion library.
//
// # Unit tests: MockBus
//
// A service that depends on [event.Publisher] (or [event.Subscriber]) gets a
// [MockBus] in its tests. The mock records every event with the envelope a
// real bus would stamp, and can fail publishes on demand:
//
//	bus := eventtest.NewMockBus[any]()
//	svc := NewUserService(repo, bus)
//	if _, err := svc.CreateUser(ctx, req); err != nil {
//		t.Fatal(err)
//	}
//	if n := bus.PublishedCount("user.registered"); n != 1 {
//		t.Errorf("published %d user.registered events, want 1", n)
//	}
//
// Handlers registered on the mock run only when it is created with
// [RunHandlers]; their failures are collected by [MockBus.HandlerErrors]
// and, with [WithTB], fail the test.
//
// # Assertions
//
// [RequirePublished], [RequirePublishedN], [RequirePublishedFunc] and
// [RequireNotPublished] check what a MockBus recorded and return the
// matching events with their payloads typed, so that a test can go on to
// check their fields. On failure they stop the test with a message listing
// what was published instead.
//
// # Integration tests: Watch
//
// On a real, asynchronous [event.Bus], [Watch] records the events published
// to a pattern and [RequireReceived] waits, with a deadline, for one of them, so that
// a test can wait for handlers running on the bus's workers without
// sleeping.
//
// Topics given to the helpers and to [MockBus.Published] may be patterns
// with wildcards, with the syntax of [event.Subscribe].
package eventtest
