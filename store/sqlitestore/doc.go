// Package sqlitestore is the embedded event log: a [store.Store] in one
// SQLite file, on the pure-Go driver modernc.org/sqlite (no cgo).
//
//	s, err := sqlitestore.Open(ctx, "events.db")
//	if err != nil { … }
//	defer s.Close()
//
// # Durability and throughput
//
// The database runs in WAL mode with synchronous=FULL by default, so an
// Append that returned is on disk. Concurrent Appends share transactions
// (group commit): one writer goroutine commits everything queued while the
// previous commit ran, in one transaction and one fsync, and each caller
// gets its own result. An expectation that fails or a duplicate ID fails
// only its own Append: the writer checks expectations in Go, against
// everything the transaction has seen, before it writes anything. It
// inserts without first looking up whether the IDs are stored, since they
// almost never are; when one is, the unique index refuses the insert and
// the writer redoes the transaction with every ID looked up, so a retried
// Append still succeeds and a changed one fails alone. See
// [WithSynchronous] to trade the last commits on power loss for speed, and
// [WithGroupCommit] for batch limits.
//
// Reads use a separate pool of read-only connections and never wait for the
// writer. Several processes may open the same file; SQLite's file lock
// makes them take turns writing.
//
// # Order
//
// Positions come from an AUTOINCREMENT key, so they are never reused, even
// after retention deleted the records that had them. SQLite has one writer
// at a time and commits in position order, so a reader paging by cursor
// never skips a record that commits later.
//
// # Transactional outbox
//
// [Store.DB] is the handle of the store's single writer connection. Keep
// the application's own tables in the same file, begin a transaction on DB,
// write them, and append the events with [Store.AppendTx] in the same
// transaction: both commit or roll back together. While such a transaction
// is open it holds the writer, so group commit waits for it. Create the
// application's tables after the first Open: Open refuses a file that has
// tables but no event schema, so that it never writes into a database that
// is not its own by mistake.
//
// # Schema
//
// The tables are named event_*. The schema version lives in the event_meta
// table; Open creates or migrates the schema in one transaction, so two
// processes may open a new file at once, and refuses a database of a newer
// version. A process of an older version that opened the file before a
// newer one migrated it goes on with the old schema in mind; where that
// would write what the new schema cannot use, the database refuses it,
// with an error that says so (schema version 2 refuses records appended
// without a partition, which no consumer group would read). Upgrade every
// process that opens a file before, or while, migrating it.
//
// # Consumer groups
//
// A member of a consumer group ([store.Grouper]) that stops renewing its
// leases loses its partitions when they run out. A member whose process
// exited loses them sooner, at the next claim from the same host and PID
// namespace: a claim checks whether the processes of the other members
// there still exist. On Linux the namespace is part of what a member's
// row names as its host, so containers that share a host name (with host
// networking, say) but not their PIDs leave each other's members to their
// leases rather than take a live process for gone.
//
// # Retention
//
// [Store.DeleteBefore] deletes in transactions of at most 1000 records and
// remembers the highest position it deleted; a cursor below it fails with
// [store.ErrCursorExpired] rather than silently skipping what was deleted.
// Aggregate versions survive: an aggregate whose records were deleted goes
// on from its last version.
package sqlitestore
