// Package store defines the durable event log behind an event bus: the
// [Record] it keeps, the [Store] interface that a database driver implements,
// and the errors callers test for.
//
// The package imports no database driver. Drivers live in their own
// packages (store/sqlitestore, the embedded default, and store/pgstore for
// PostgreSQL), and store/storetest holds the conformance suite that every
// implementation, ours or a third party's, is expected to pass.
//
// # Order
//
// Every record gets a global Position when it is appended and, when it has an
// AggregateID, a per-aggregate Version (1, 2, 3 … without gaps). A reader
// that pages through the log with [Store.Read], resuming from the returned
// [Cursor], sees every record exactly once and in one global order, even
// when records commit in a different order than their positions were
// assigned. How a driver guarantees that is its own business; the
// conformance suite checks it.
//
// # Implementing a store
//
// A driver checks its input with this package's functions before it
// touches its database, so that every store refuses the same input with
// the same errors, whatever its database would have made of it:
// [ValidateRecords] in Append, [ValidateDeadLetter] in PutDeadLetter,
// [ValidateName] for checkpoint names, aggregate IDs and subscriptions,
// [ValidateDeadLetterKey] for a dead letter's subscription and event ID,
// [ValidatePattern] for a [Query]'s Topic, [PageLimit] for limits, and
// [ClampTime] for a Query's Since and the time of DeleteBefore. Run
// store/storetest against the driver to check the rest of the contract.
package store

import (
	"context"
	"fmt"
	"time"
)

// Kinds of event. A Record's Kind is free text to a store; these are the
// values the event package uses.
const (
	KindDomain      = "domain"
	KindSystem      = "system"
	KindIntegration = "integration"
)

// DefaultMaxPayloadSize is the payload size limit, in bytes, that drivers
// apply unless configured otherwise.
const DefaultMaxPayloadSize = 1 << 20

// DefaultReadLimit is the page size of a [Query] whose Limit is zero, and
// MaxReadLimit the largest a driver must honour; drivers clamp larger limits.
const (
	DefaultReadLimit = 500
	MaxReadLimit     = 10_000
)

// Record is one stored event: the envelope with its payload already encoded.
//
// On [Store.Append] the caller sets ID, Topic, Time and Payload and may set
// the rest; the store sets Position and, when AggregateID is set, Version.
// Reads return every field as it was appended, with Time at microsecond
// precision in UTC.
type Record struct {
	// ID identifies the event. It is unique in the store; appending an ID
	// that is already stored is a no-op when the records are the same.
	ID string
	// Topic is a valid topic (see [ValidateTopic]).
	Topic string
	// Kind is the kind of event: [KindDomain], [KindSystem],
	// [KindIntegration] or any other short label.
	Kind string
	// AggregateID optionally names the entity the event belongs to. Records
	// of one aggregate are numbered by Version.
	AggregateID string
	// Version is the record's place in its aggregate, from 1, set by the
	// store. It is 0 for a record without AggregateID.
	Version int64
	// Position is the record's place in the whole log, set by the store.
	// Positions grow with append order but may have gaps (a rolled-back
	// append consumes positions); they are never reused. Where appends can
	// commit concurrently (several processes on one PostgreSQL database, or
	// appends inside callers' transactions) a record may commit after one
	// with a higher Position; readers then see it after that one, so resume
	// reading from a [Cursor], never from a Position.
	Position int64
	// Time is when the event happened, as the publisher says: a time in
	// the years 1 to 9999 UTC (see [ValidateRecords]).
	Time time.Time
	// Metadata carries correlation and causation IDs, trace context and
	// user keys. A nil and an empty map are stored alike.
	Metadata map[string]string
	// PayloadType names the Go type of the payload, for decoding it back
	// into the right type from a log that holds many.
	PayloadType string
	// ContentType names the payload's encoding, such as "application/json".
	ContentType string
	// Payload is the encoded event, stored as opaque bytes.
	Payload []byte
	// Cursor is set by [Store.Read] on every record it returns: reading
	// after it resumes just past this record. It is not stored.
	Cursor Cursor
}

// Cursor is an opaque position in the global order of a store, returned by
// [Store.Read]. Its text is safe to keep (in a checkpoint, a URL) and hand
// back to the same store later. The zero Cursor is the start of the log.
type Cursor string

// Expect states what an aggregate's current version must be for an
// [Store.Append] to succeed: Version 0 means the aggregate has no records
// yet, n means its last record has version n. Aggregates without an Expect
// accept any version.
type Expect struct {
	AggregateID string
	Version     int64
}

// Query selects records for [Store.Read]. Its zero value reads the log from
// the start, DefaultReadLimit records at a time.
type Query struct {
	// Topic is a topic pattern (see [ValidatePattern]); empty matches all.
	Topic string
	// AggregateID, when set, keeps only that aggregate's records.
	AggregateID string
	// Kind, when set, keeps only records of that kind.
	Kind string
	// Since, when set, keeps only records whose Time is at or after it.
	Since time.Time
	// After resumes after a cursor from an earlier Read.
	After Cursor
	// Limit caps the records returned; 0 means DefaultReadLimit, and values
	// above MaxReadLimit are clamped to it.
	Limit int
}

// Store is a durable, ordered event log.
//
// Implementations are safe for concurrent use by multiple goroutines, and
// every method honours its context: it returns promptly with the context's
// error once the context is done. After the store is closed every method
// returns an error matching [ErrClosed].
type Store interface {
	// Append stores recs atomically: all of them or none. It assigns each
	// record's Position and, for records with an AggregateID, Version,
	// writing both back into recs. Each Expect must hold or Append fails
	// with an error matching ErrVersionConflict (a *VersionConflictError)
	// and stores nothing.
	//
	// A record whose ID is already stored with the same content is not
	// stored again; its stored Position and Version are written back. The
	// same ID with different content fails with ErrDuplicateID.
	//
	// Invalid records (see [ValidateRecords]) fail with ErrInvalidRecord.
	// Concurrent Appends may share one database transaction; each caller
	// still gets its own result.
	//
	// When ctx ends before the append is being committed, Append returns
	// ctx's error and has stored nothing. When the driver cannot tell
	// whether the append was stored (ctx ended while it was being
	// committed, or the connection failed during the commit), Append fails
	// with an error matching ErrMaybeStored, and ctx's error if ctx ended:
	// retry with the same record IDs, which stores them once.
	Append(ctx context.Context, recs []Record, expect ...Expect) error

	// Load returns the record with the given ID, or an error matching
	// ErrNotFound.
	Load(ctx context.Context, id string) (Record, error)

	// LoadAggregate returns the records of one aggregate with Version >=
	// fromVersion, in version order. An unknown aggregate gives no records
	// and no error; an empty aggregateID (or one that [ValidateName]
	// refuses) fails with ErrInvalidName.
	LoadAggregate(ctx context.Context, aggregateID string, fromVersion int64) ([]Record, error)

	// Read returns up to q.Limit records matching q, in global order,
	// and the cursor to pass as q.After to continue. A cursor older than
	// the retained log fails with ErrCursorExpired; one this store did not
	// produce fails with ErrInvalidCursor.
	//
	// A filtered read may look at only part of the rest of the log, so
	// that one call's work stays bounded however rare the matches: it then
	// returns fewer than q.Limit records, possibly none, with a cursor past
	// the records it looked at, and more matches may follow. Only a read
	// that returns no records and q.After unchanged has reached the end of
	// the log as it is now; read on from the returned cursor until then
	// ([All] does).
	Read(ctx context.Context, q Query) ([]Record, Cursor, error)

	// Checkpoint returns the cursor last saved under name, or the zero
	// Cursor if there is none. An empty name (or one that [ValidateName]
	// refuses) fails with ErrInvalidName.
	Checkpoint(ctx context.Context, name string) (Cursor, error)

	// SetCheckpoint saves c under name, replacing what was there. The name
	// must be valid, as for Checkpoint; the cursor must be the zero Cursor
	// or one this store produced, or SetCheckpoint fails with
	// ErrInvalidCursor.
	SetCheckpoint(ctx context.Context, name string, c Cursor) error

	// DeleteBefore deletes the oldest records of the log, in global order
	// up to the first whose Time is not before t, in batches small enough
	// not to block appends for long, and returns how many it deleted. It
	// deletes a prefix so that what remains reads from the start without
	// gaps: a record out of time order (an event published with a later
	// EventTime than those after it) holds back the records after it until
	// it is older than t too. Cursors that pointed into the deleted range
	// fail with ErrCursorExpired afterwards.
	DeleteBefore(ctx context.Context, t time.Time) (int64, error)
}

// DeadLetterRecord is a dead letter as a [DeadLetterStore] keeps it: an
// event that a subscription failed to handle after its last attempt, with
// the event in its stored form, as [Record] is the stored form of an event.
type DeadLetterRecord struct {
	// Subscription names the subscription that failed.
	Subscription string
	// Record is the event, as stored.
	Record Record
	// Error is the text of the last attempt's error.
	Error string
	// Attempts counts the attempts made.
	Attempts int
	// Time is when the event was dead-lettered; it must not be zero.
	Time time.Time
}

// DeadLetterStore keeps dead letters. Stores that implement it let a bus
// persist events that exhausted their retries. The rules of [Store] on
// concurrency, contexts and closing apply.
//
// A dead letter is identified by its subscription and its record's event
// ID. DeleteDeadLetter refuses an empty subscription or event ID (or one
// that [ValidateName] refuses) with an error matching ErrInvalidName, before
// touching the database. A store that can look one dead letter up by its
// key implements [DeadLetterLookup] too.
type DeadLetterStore interface {
	// PutDeadLetter stores d, replacing an earlier dead letter of the same
	// subscription and event ID. It checks d with [ValidateDeadLetter]
	// first: an invalid dead letter fails with ErrInvalidRecord and stores
	// nothing.
	PutDeadLetter(ctx context.Context, d DeadLetterRecord) error
	// DeadLetters lists the dead letters of a subscription (all
	// subscriptions if empty; otherwise one that ValidateName accepts),
	// oldest first, at most limit of them (0 means DefaultReadLimit).
	DeadLetters(ctx context.Context, subscription string, limit int) ([]DeadLetterRecord, error)
	// DeleteDeadLetter removes the dead letter of the subscription and event
	// ID, or fails with ErrNotFound.
	DeleteDeadLetter(ctx context.Context, subscription, eventID string) error
}

// DeadLetterLookup is implemented by a [DeadLetterStore] that can look one
// dead letter up by its key. It is separate so that a store written
// against DeadLetterStore alone keeps working; [FindDeadLetter] searches the
// list of such a store instead.
type DeadLetterLookup interface {
	// DeadLetter returns the dead letter of the subscription and event ID,
	// or fails with ErrNotFound. Like DeleteDeadLetter, it refuses an
	// invalid subscription or event ID with ErrInvalidName.
	DeadLetter(ctx context.Context, subscription, eventID string) (DeadLetterRecord, error)
}

// FindDeadLetter returns the dead letter of the subscription and event ID
// in s, or an error matching ErrNotFound. It asks s directly when s
// implements [DeadLetterLookup]; otherwise it searches the first
// MaxReadLimit dead letters that s lists for the subscription.
func FindDeadLetter(ctx context.Context, s DeadLetterStore, subscription, eventID string) (DeadLetterRecord, error) {
	if l, ok := s.(DeadLetterLookup); ok {
		return l.DeadLetter(ctx, subscription, eventID)
	}
	if err := ValidateDeadLetterKey(subscription, eventID); err != nil {
		return DeadLetterRecord{}, err
	}
	list, err := s.DeadLetters(ctx, subscription, MaxReadLimit)
	if err != nil {
		return DeadLetterRecord{}, err
	}
	for _, d := range list {
		if d.Record.ID == eventID {
			return d, nil
		}
	}
	return DeadLetterRecord{}, fmt.Errorf("%w: no dead letter of event %s for subscription %s", ErrNotFound, eventID, subscription)
}

// Notifier is implemented by stores that can signal appends, including
// those of other processes, so that consumers need not poll. Notify returns
// a channel that receives a value soon after appends commit; signals may
// coalesce, so a receiver reads until it has caught up. The channel is
// closed when ctx ends or the store is closed. Appends committed after
// Notify returns are signalled. A store that was configured not to signal
// fails with an error matching [errors.ErrUnsupported]; its consumers poll.
type Notifier interface {
	Notify(ctx context.Context) (<-chan struct{}, error)
}

// PageLimit returns how many records a driver returns at most for a
// requested limit, as in [Query].Limit and [DeadLetterStore.DeadLetters]:
// [DefaultReadLimit] for 0, the limit clamped to [MaxReadLimit] otherwise. A
// negative limit is an error.
func PageLimit(limit int) (int, error) {
	switch {
	case limit < 0:
		return 0, fmt.Errorf("negative limit %d", limit)
	case limit == 0:
		return DefaultReadLimit, nil
	case limit > MaxReadLimit:
		return MaxReadLimit, nil
	}
	return limit, nil
}
