-- Version 3: partitions for consumer groups. Every record keeps the
-- partition that store.Partition gives it (computed in SQL alike, here for
-- the records already stored and by the append statement for new ones),
-- and groups keep their members and, per partition, an owner's lease and a
-- checkpoint. {{partitions}} is the partition count. The index that
-- partition reads scan is made by the first claim (see indexPartitions):
-- a log that no group reads does not keep it up on every append.
ALTER TABLE {{schema}}.events ADD COLUMN part integer;
UPDATE {{schema}}.events
   SET part = ((('x' || left(md5(CASE WHEN aggregate_id = '' THEN id ELSE aggregate_id END), 8))::bit(32)::bigint % {{partitions}})::int);
ALTER TABLE {{schema}}.events ALTER COLUMN part SET NOT NULL;
INSERT INTO {{schema}}.meta (key, value) VALUES ('partitions', '{{partitions}}');

CREATE TABLE {{schema}}.group_members (
    grp     text        NOT NULL,
    member  text        NOT NULL,
    expires timestamptz NOT NULL,
    PRIMARY KEY (grp, member)
);

-- owner is '' when no member holds the partition; token changes with every
-- change of owner and fences checkpoint writes.
CREATE TABLE {{schema}}.group_partitions (
    grp     text        NOT NULL,
    part    integer     NOT NULL,
    owner   text        NOT NULL DEFAULT '',
    token   bigint      NOT NULL DEFAULT 0,
    expires timestamptz NOT NULL DEFAULT '-infinity',
    cursor  text        NOT NULL DEFAULT '',
    PRIMARY KEY (grp, part)
);
