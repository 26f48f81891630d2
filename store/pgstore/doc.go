// Package pgstore is a [store.Store] on PostgreSQL (13 or later), through
// github.com/jackc/pgx/v5. Several processes may share one database: they
// see one log, aggregate versions stay dense across them, and
// [Store.Notify] tells each of them when another appended.
//
// # Schema
//
// [New] creates the store's tables in their own schema ([WithSchema],
// "event" by default) and migrates them to the version this package
// expects, in one transaction under an advisory lock, so processes starting
// together are safe. A schema written by a newer version of the package is
// refused rather than used.
//
// # Order
//
// Each record is stamped with the ID of the transaction that inserted it,
// and the log's global order is (transaction ID, position). [Store.Read]
// only returns records of transactions older than the oldest one of the
// database still running, so a transaction that commits late, holding a
// lower position than records already read, can never be skipped by a
// reader that pages by cursor. The price is that readers wait for the
// oldest transaction with a transaction ID in the store's database, whether
// it writes events or not: keep transactions short
// (idle_in_transaction_session_timeout helps), because a long one delays
// every reader until it ends. Transactions in other databases of the
// cluster do not delay readers, provided the store's role may see their
// transaction IDs in pg_stat_activity (PostgreSQL shows them to every role
// by default); prepared transactions always do.
//
// # Group commit
//
// Concurrent [Store.Append] calls are gathered into groups, each stored by
// one SQL statement in one transaction, so the cost of a durable commit is
// shared. Each caller gets its own result: a version conflict or duplicate
// ID fails only the batch it belongs to. [WithGroupCommit] sets the size of
// a group and how long the writer may wait for one to fill.
//
// # Outbox
//
// [Store.AppendTx] appends in the caller's own pgx transaction, so a domain
// write and its events commit or roll back together.
package pgstore
