-- Version 1 of the event database. Every name starts with event_ so that
-- an application's own tables can live in the same file (the outbox).

CREATE TABLE event_meta (
	key   TEXT PRIMARY KEY,
	value ANY
) STRICT, WITHOUT ROWID;

INSERT INTO event_meta (key, value) VALUES
	('application', 'github.com/ncore-io/event/store/sqlitestore'),
	-- Highest position deleted by retention: cursors below it expired.
	('low_watermark', 0);

-- position is AUTOINCREMENT so that positions of deleted records are never
-- handed out again: a cursor always means the same place in the log.
CREATE TABLE event_log (
	position     INTEGER PRIMARY KEY AUTOINCREMENT,
	id           TEXT    NOT NULL UNIQUE,
	topic        TEXT    NOT NULL,
	kind         TEXT    NOT NULL,
	aggregate_id TEXT,             -- NULL when the record has none
	version      INTEGER NOT NULL, -- 0 when the record has no aggregate
	time_us      INTEGER NOT NULL, -- Unix microseconds
	metadata     TEXT,             -- JSON object, NULL when empty
	payload_type TEXT    NOT NULL,
	content_type TEXT    NOT NULL,
	payload      BLOB              -- NULL for a nil payload
) STRICT;

CREATE UNIQUE INDEX event_log_aggregate ON event_log (aggregate_id, version) WHERE aggregate_id IS NOT NULL;
CREATE INDEX event_log_topic ON event_log (topic, position);

-- The current version of every aggregate. It survives retention, so
-- versions continue after an aggregate's records were deleted.
CREATE TABLE event_aggregates (
	aggregate_id TEXT PRIMARY KEY,
	version      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE event_checkpoints (
	name   TEXT PRIMARY KEY,
	cursor TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE event_dead_letters (
	subscription TEXT    NOT NULL,
	event_id     TEXT    NOT NULL,
	position     INTEGER NOT NULL,
	topic        TEXT    NOT NULL,
	kind         TEXT    NOT NULL,
	aggregate_id TEXT,
	version      INTEGER NOT NULL,
	time_us      INTEGER NOT NULL,
	metadata     TEXT,
	payload_type TEXT    NOT NULL,
	content_type TEXT    NOT NULL,
	payload      BLOB,
	error        TEXT    NOT NULL,
	attempts     INTEGER NOT NULL,
	dead_us      INTEGER NOT NULL,
	PRIMARY KEY (subscription, event_id)
) STRICT;

CREATE INDEX event_dead_letters_time ON event_dead_letters (dead_us);
