-- Version 1: the event log, aggregate versions, retention watermark,
-- checkpoints, dead letters and the append function.
--
-- {{schema}} is replaced by the quoted schema name and {{channel}} by the
-- NOTIFY channel as a string literal before this runs.

-- Global order is (txid, position): the transaction that inserted a row,
-- then the position it drew. Readers only read below the oldest running
-- transaction, so a transaction that commits late can never slip in
-- behind a cursor (see read.go).
CREATE TABLE {{schema}}.events (
    txid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    position     bigint      NOT NULL GENERATED ALWAYS AS IDENTITY,
    id           text        COLLATE "C" NOT NULL,
    topic        text        COLLATE "C" NOT NULL,
    kind         text        COLLATE "C" NOT NULL,
    aggregate_id text        COLLATE "C" NOT NULL,
    version      bigint      NOT NULL,
    time         timestamptz NOT NULL,
    metadata     jsonb,
    payload_type text        NOT NULL,
    content_type text        NOT NULL,
    payload      bytea,
    PRIMARY KEY (txid, position),
    CONSTRAINT events_id_key UNIQUE (id)
);
CREATE UNIQUE INDEX events_aggregate_version ON {{schema}}.events (aggregate_id, version) WHERE aggregate_id <> '';
CREATE INDEX events_time ON {{schema}}.events (time);

-- One row per aggregate with its last version. Appenders lock the row, so
-- writers of one aggregate are serialised across processes and versions
-- stay dense. Rows outlive retention so versions are never reused.
CREATE TABLE {{schema}}.aggregates (
    aggregate_id text   COLLATE "C" PRIMARY KEY,
    version      bigint NOT NULL
);

-- The highest (txid, position) that retention deleted: cursors below it
-- have missed events.
CREATE TABLE {{schema}}.retention (
    singleton bool     PRIMARY KEY DEFAULT true CHECK (singleton),
    txid      xid8     NOT NULL,
    position  bigint   NOT NULL
);
INSERT INTO {{schema}}.retention (txid, position) VALUES ('0', 0);

CREATE TABLE {{schema}}.checkpoints (
    name       text        PRIMARY KEY,
    cursor     text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {{schema}}.dead_letters (
    subscription text        NOT NULL,
    event_id     text        NOT NULL,
    topic        text        NOT NULL,
    kind         text        NOT NULL,
    aggregate_id text        NOT NULL,
    version      bigint      NOT NULL,
    position     bigint      NOT NULL,
    time         timestamptz NOT NULL,
    metadata     jsonb,
    payload_type text        NOT NULL,
    content_type text        NOT NULL,
    payload      bytea,
    error        text        NOT NULL,
    attempts     integer     NOT NULL,
    dead_at      timestamptz NOT NULL,
    seq          bigint      NOT NULL GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (subscription, event_id)
);
CREATE INDEX dead_letters_order ON {{schema}}.dead_letters (dead_at, seq);

-- append stores a batch atomically and returns each record's position and
-- version in batch order. The arrays p_ids … p_payloads hold one element
-- per record. Expectation k says aggregate p_eaggs[k] must be at version
-- p_evers[k] just before record p_eords[k] (1-based), which lets one call
-- carry the batches of several callers one after the other. An ID already
-- stored raises unique_violation on events_id_key; otherwise a failed
-- expectation raises SQLSTATE EV409 with a JSON detail. Either way the call has
-- changed nothing. A NULL payload is a nil one, kept apart from an empty
-- one.
CREATE FUNCTION {{schema}}.append(
    p_ids text[], p_topics text[], p_kinds text[], p_aggs text[], p_times timestamptz[],
    p_metas jsonb[], p_ptypes text[], p_ctypes text[], p_payloads bytea[],
    p_eaggs text[], p_evers bigint[], p_eords integer[])
RETURNS TABLE (o_position bigint, o_version bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_aggs text[] := '{}';
    v_old  bigint[] := '{}';
    v_bad  record;
BEGIN
    IF cardinality(p_eaggs) > 0 OR EXISTS (SELECT 1 FROM unnest(p_aggs) AS a WHERE a <> '') THEN
        -- Lock and advance every aggregate touched, in aggregate_id order
        -- so that concurrent appenders cannot deadlock.
        WITH c AS (
            SELECT x.a AS agg, sum(x.n)::bigint AS n
            FROM (SELECT a, 1 AS n FROM unnest(p_aggs) AS a WHERE a <> ''
                  UNION ALL
                  SELECT a, 0 FROM unnest(p_eaggs) AS a) AS x
            GROUP BY x.a
        ), u AS (
            INSERT INTO {{schema}}.aggregates AS t (aggregate_id, version)
            SELECT c.agg, c.n FROM c ORDER BY c.agg
            ON CONFLICT (aggregate_id) DO UPDATE SET version = t.version + excluded.version
            RETURNING t.aggregate_id, t.version
        )
        SELECT array_agg(u.aggregate_id), array_agg(u.version - c.n)
        INTO v_aggs, v_old
        FROM u JOIN c ON c.agg = u.aggregate_id;
    END IF;

    -- ORDER BY makes positions, drawn per row as it is inserted, follow
    -- batch order.
    RETURN QUERY
    INSERT INTO {{schema}}.events AS ev
        (id, topic, kind, aggregate_id, version, time, metadata, payload_type, content_type, payload)
    SELECT r.id, r.topic, r.kind, r.agg,
           CASE WHEN r.agg = '' THEN 0
                ELSE o.old + row_number() OVER (PARTITION BY r.agg ORDER BY r.i) END,
           r.t, r.m, r.pt, r.ct, r.p
    FROM unnest(p_ids, p_topics, p_kinds, p_aggs, p_times, p_metas, p_ptypes, p_ctypes, p_payloads)
             WITH ORDINALITY AS r(id, topic, kind, agg, t, m, pt, ct, p, i)
    LEFT JOIN unnest(v_aggs, v_old) AS o(agg, old) ON o.agg = r.agg
    ORDER BY r.i
    RETURNING ev.position, ev.version;

    -- Expectations after the insert, so that a replayed batch fails on its
    -- stored IDs (unique_violation) rather than on its stale expectation;
    -- raising undoes the insert.
    IF cardinality(p_eaggs) > 0 THEN
        SELECT e.agg, e.ver, e.actual INTO v_bad
        FROM (
            SELECT x.agg, x.ver,
                   o.old + (SELECT count(*) FROM unnest(p_aggs) WITH ORDINALITY AS r(a, i)
                            WHERE r.a = x.agg AND r.i < x.ord) AS actual
            FROM unnest(p_eaggs, p_evers, p_eords) AS x(agg, ver, ord)
            JOIN unnest(v_aggs, v_old) AS o(agg, old) ON o.agg = x.agg
        ) AS e
        WHERE e.actual <> e.ver
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'version conflict on aggregate %', v_bad.agg
                USING ERRCODE = 'EV409',
                      DETAIL = json_build_object('aggregate', v_bad.agg, 'expected', v_bad.ver, 'actual', v_bad.actual)::text;
        END IF;
    END IF;

    -- Delivered at commit, and only once per transaction.
    PERFORM pg_notify({{channel}}, '');
END
$fn$;
