-- Version 4: the log's order survives a dump restored into another
-- cluster. Transaction IDs are a cluster's own: a cluster made by initdb
-- starts them again low, below those that the restored rows carry, and
-- new records would sort before old ones, and below the cursors of old
-- readers. So the order no longer uses a transaction's ID as it is but
-- log_xid of it: the ID plus the schema's offset, which New raises when
-- the log holds keys that this cluster's transactions would not sort
-- after (see realign.go).
--
-- The offset is the constant that xid_offset returns, rather than a row
-- of meta, so that the column default costs no lookup per row. Both
-- functions are STABLE SQL functions of one expression, which the planner
-- inlines and records as dependencies of the plan: replacing xid_offset
-- invalidates every session's cached plans, so each one uses the new
-- offset from its next statement on. (An IMMUTABLE xid_offset would be
-- folded into plans without such a record.) xid8 has no arithmetic, hence
-- the way through bigint, which holds any transaction ID of the next few
-- billion years.
--
-- The offset starts at 0, which orders the records of earlier versions
-- as they were.
CREATE FUNCTION {{schema}}.xid_offset() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$ SELECT 0::bigint $fn$;

CREATE FUNCTION {{schema}}.log_xid(x xid8) RETURNS xid8
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$ SELECT (x::text::bigint + {{schema}}.xid_offset())::text::xid8 $fn$;

ALTER TABLE {{schema}}.events ALTER COLUMN txid SET DEFAULT {{schema}}.log_xid(pg_current_xact_id());
