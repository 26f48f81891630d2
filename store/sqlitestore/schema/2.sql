-- Version 2: partitions for consumer groups. Every record gets the
-- partition that store.Partition gives it (filled in for older records by
-- Open, which computes it in Go), and groups keep their members and, per
-- partition, an owner's lease and a checkpoint.

ALTER TABLE event_log ADD COLUMN part INTEGER NOT NULL DEFAULT -1;

-- A process of schema version 1 that opened the file before another
-- migrated it goes on appending without a partition: its records would
-- get -1, in no partition that a group reads. Such appends fail instead,
-- saying why, until every process runs version 2.
CREATE TRIGGER event_log_part BEFORE INSERT ON event_log WHEN NEW.part < 0
BEGIN
	SELECT RAISE(ABORT, 'sqlitestore: record appended without a partition, by an sqlitestore older than schema version 2 that opened this file before it was migrated; upgrade every process that opens this file');
END;

-- host and pid name the member's process: host is the host name and, on
-- Linux, the PID namespace (as in 'web-1 pid:[4026531836]'), pid the
-- process ID there. A claim by a process of the same host and namespace
-- takes over at once the partitions of a member whose process has exited,
-- rather than wait for its lease to run out.
CREATE TABLE event_group_members (
	grp        TEXT    NOT NULL,
	member     TEXT    NOT NULL,
	expires_us INTEGER NOT NULL,
	host       TEXT    NOT NULL,
	pid        INTEGER NOT NULL,
	PRIMARY KEY (grp, member)
) STRICT, WITHOUT ROWID;

-- owner is '' when no member holds the partition. token changes with every
-- change of owner, and fences checkpoint writes.
CREATE TABLE event_group_partitions (
	grp        TEXT    NOT NULL,
	part       INTEGER NOT NULL,
	owner      TEXT    NOT NULL DEFAULT '',
	token      INTEGER NOT NULL DEFAULT 0,
	expires_us INTEGER NOT NULL DEFAULT 0,
	cursor     TEXT    NOT NULL DEFAULT '',
	PRIMARY KEY (grp, part)
) STRICT, WITHOUT ROWID;
