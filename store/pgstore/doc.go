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
// Each record is stamped with the ID of the transaction that inserted it
// (plus the schema's offset, below), and the log's global order is
// (transaction ID, position). [Store.Read]
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
// # Dump and restore
//
// Transaction IDs belong to a cluster, and a new one (made by initdb)
// starts them again low, below those of the records restored into it from
// pg_dump. So the order does not use a transaction's ID alone but adds the
// schema's offset to it, 0 at first, and [New] raises the offset when the
// schema holds a key that the cluster's transactions would not sort after
// (the last record, the retention watermark, a checkpoint or a group's
// checkpoint), logging that it did (see [WithLogger]). After a restore
// into another cluster, the restored records read first and new ones
// after, and readers go on from their checkpoints without skipping or
// repeating. Upgrades with pg_upgrade, physical replicas and restores into
// the same cluster keep transaction IDs and need nothing.
//
// That holds when no process uses the database between the restore and
// the first New on it: stop the processes before the dump and start them
// after the restore. A process that kept running across the move would
// write records that sort among the restored ones, and may hold cursors
// read from the old cluster after the dump, ahead of anything restored.
// [Store.Read] and [Store.ReadPartitions] refuse a cursor ahead of the
// log's read horizon with an error matching [store.ErrInvalidCursor]
// (which stops the subscriptions of the event package) rather than wait
// for the horizon to pass it and skip what was appended meanwhile; restart
// such a process. The same goes for cursors kept outside the schema:
// those of records that the dump holds are safe, others are refused only
// until the horizon passes them.
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
//
// # Statements and poolers
//
// The statements on the hot paths (appends, [Store.Read],
// [Store.ReadPartitions] and [Store.Commit]) go through the connection's pgconn with their
// parameters encoded by this package, so a pgx tracer ([pgx.QueryTracer],
// [pgx.BatchTracer]) does not see them. They are prepared once per
// connection when the connection's default query mode keeps prepared
// statements (pgx's default), and sent unnamed otherwise: behind a pooler
// that does not keep them between transactions (PgBouncer in transaction
// mode), set default_query_exec_mode=exec in the connection string.
package pgstore
