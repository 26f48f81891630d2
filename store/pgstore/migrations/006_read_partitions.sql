-- Version 6: a consumer group member's read in one statement.
--
-- A read takes the horizon in one statement and reads below it in a later
-- one, whose snapshot is taken after the first has ended (see read.go).
-- Sent as a pipeline, that is five statements (the transaction's BEGIN and
-- COMMIT, the horizon, the bounds, the page), which costs a client for
-- every one of them; a member at light load reads once per event.
-- read_partitions runs the three queries in one call: a VOLATILE function
-- takes a fresh snapshot for each query it runs when the transaction is
-- READ COMMITTED, so each of its queries starts after the one before has
-- ended, as the separate statements did. Under REPEATABLE READ or
-- SERIALIZABLE every query would share the transaction's snapshot, so
-- then it raises EV001, and the client calls it again inside a READ
-- COMMITTED transaction of its own.
--
-- read_horizon is the horizon H that every read stops below; horizon.go
-- says why it is what it is. It is PL/pgSQL, which the planner never
-- inlines into a calling statement: its query takes a snapshot of its own,
-- later than the caller's.
CREATE FUNCTION {{schema}}.read_horizon() RETURNS xid8
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    RETURN {{schema}}.log_xid(coalesce((
        SELECT t.x FROM pg_snapshot_xip(pg_current_snapshot()) AS t(x)
        WHERE t.x::text::bigint % 4294967296 IN (
            SELECT a.backend_xid::text::bigint FROM pg_stat_get_activity(NULL) AS a
            WHERE a.backend_xid IS NOT NULL
              AND a.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
            UNION ALL
            SELECT p.transaction::text::bigint FROM pg_prepared_xacts AS p
            WHERE p.database = current_database())
        ORDER BY t.x LIMIT 1
    ), pg_snapshot_xmax(pg_current_snapshot())));
END
$fn$;

-- The first row returned holds the bounds, with o_id NULL: the horizon in
-- o_txid, and in b_bounds, packed as five binary values, the retention
-- watermark (xid8, bigint), the log's last record below the horizon
-- (xid8, bigint) and whether records past the horizon are to be seen
-- already (bool). The page's records follow, in order, b_bounds NULL.
-- (Thirteen columns: a client decodes up to sixteen without allocating
-- their descriptions.) The arguments are those of ReadPartitions: the
-- cursor (base_tx, base_pos) of the partitions whose bit is set in
-- base_parts (bit p%8 of byte p/8), the other partitions ps with their
-- cursors, and the page's size.
CREATE FUNCTION {{schema}}.read_partitions(base_tx xid8, base_pos bigint, base_parts bytea, ps int[], txs xid8[], poss bigint[], lim int)
RETURNS TABLE (o_txid xid8, o_position bigint, o_id text, o_topic text, o_kind text, o_aggregate_id text, o_version bigint,
               o_time timestamptz, o_metadata jsonb, o_payload_type text, o_content_type text, o_payload bytea, b_bounds bytea)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    h xid8;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'read_partitions needs a READ COMMITTED transaction, not %', current_setting('transaction_isolation')
            USING ERRCODE = 'EV001';
    END IF;
    h := {{schema}}.read_horizon();

    RETURN QUERY
    SELECT h, NULL::bigint, NULL::text, NULL::text, NULL::text, NULL::text, NULL::bigint, NULL::timestamptz, NULL::jsonb,
           NULL::text, NULL::text, NULL::bytea,
           xid8send(r.txid) || int8send(r.position) || xid8send(coalesce(e.txid, '0')) || int8send(coalesce(e.position, 0)) ||
           boolsend(coalesce((SELECT true FROM {{schema}}.events AS x WHERE x.txid > h ORDER BY x.txid, x.position LIMIT 1), false))
    FROM {{schema}}.retention AS r
    LEFT JOIN LATERAL (SELECT v.txid, v.position FROM {{schema}}.events AS v
                       WHERE v.txid < h ORDER BY v.txid DESC, v.position DESC LIMIT 1) AS e ON true;

    RETURN QUERY
    WITH c(p, tx, pos) AS (
        SELECT g, base_tx, base_pos FROM generate_series(0, octet_length(base_parts) * 8 - 1) AS g WHERE get_bit(base_parts, g) = 1
        UNION ALL SELECT * FROM unnest(ps, txs, poss)),
    k AS (
        SELECT x.txid, x.position FROM c CROSS JOIN LATERAL (
            SELECT v.txid, v.position FROM {{schema}}.events AS v
            WHERE v.part = c.p AND (v.txid, v.position) > (c.tx, c.pos) AND v.txid < h
            ORDER BY v.txid, v.position LIMIT lim) AS x
        ORDER BY x.txid, x.position LIMIT lim)
    SELECT e.txid, e.position, e.id, e.topic, e.kind, e.aggregate_id, e.version, e.time, e.metadata, e.payload_type, e.content_type, e.payload,
           NULL::bytea
    FROM k JOIN {{schema}}.events AS e ON e.txid = k.txid AND e.position = k.position
    ORDER BY e.txid, e.position;
END
$fn$;
