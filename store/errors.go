package store

import (
	"errors"
	"fmt"
)

// Errors that stores return, wrapped with the driver and operation. Test for
// them with [errors.Is].
var (
	// ErrNotFound: the event or dead letter does not exist.
	ErrNotFound = errors.New("not found")
	// ErrVersionConflict: an [Expect] did not hold. The error is a
	// *VersionConflictError that tells the actual version.
	ErrVersionConflict = errors.New("version conflict")
	// ErrDuplicateID: an event ID is already stored with different content.
	ErrDuplicateID = errors.New("event ID already stored with different content")
	// ErrCursorExpired: the cursor points before the oldest retained record,
	// so reading on would silently skip deleted events.
	ErrCursorExpired = errors.New("cursor expired: events after it were deleted by retention")
	// ErrInvalidCursor: the cursor was not produced by this store.
	ErrInvalidCursor = errors.New("invalid cursor")
	// ErrInvalidRecord: a record or dead letter cannot be stored as it is
	// (see [ValidateRecords] and [ValidateDeadLetter]).
	ErrInvalidRecord = errors.New("invalid record")
	// ErrInvalidName: a checkpoint name, subscription name, aggregate ID or
	// event ID passed to a store method is empty, is not valid UTF-8 or
	// contains a NUL byte (see [ValidateName]).
	ErrInvalidName = errors.New("invalid name")
	// ErrMaybeStored: the append may or may not have been stored; retry
	// with the same record IDs, which is idempotent. A driver returns it
	// when it cannot tell, such as when the context ended while the append
	// was being committed; the error then matches the context's error too.
	ErrMaybeStored = errors.New("the append may or may not have been stored")
	// ErrTxConflict: an append in the caller's transaction (AppendTx)
	// cannot go in that transaction: on PostgreSQL, a transaction that
	// began later appended to one of its aggregates first, and the
	// records would sort before that one's. Nothing was appended; roll the
	// transaction back and run it again, as after a serialization failure.
	ErrTxConflict = errors.New("transaction conflicts with a later one: retry it")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store closed")
	// ErrUnavailable: the store cannot reach its database as it opened it,
	// such as an SQLite file deleted or replaced while the store is open.
	// The call stored nothing; calls keep failing until the cause is
	// repaired and the store reopened.
	ErrUnavailable = errors.New("store unavailable")
)

// VersionConflictError reports an [Expect] that did not hold. It matches
// [ErrVersionConflict].
type VersionConflictError struct {
	AggregateID string
	Expected    int64 // the version the caller expected
	Actual      int64 // the aggregate's version at the time of the append
}

// Error names the aggregate and both versions.
func (e *VersionConflictError) Error() string {
	return fmt.Sprintf("version conflict on aggregate %q: expected version %d, actual %d", e.AggregateID, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrVersionConflict) true.
func (e *VersionConflictError) Is(target error) bool { return target == ErrVersionConflict }
