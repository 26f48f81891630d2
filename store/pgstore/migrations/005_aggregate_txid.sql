-- Version 5: the log lists each aggregate's records in version order also
-- when transactions append to it concurrently. The log's order is by
-- transaction ID, which a transaction takes at its first write, while an
-- aggregate's versions go in the order its row lock is taken: a
-- transaction that took its ID, then waited for the lock of a transaction
-- with a later ID, numbered its record after the other's but sorted
-- before it. So each aggregate keeps the key (log_xid) of the transaction
-- that last appended to it, and an append by a transaction with a lower
-- key fails with a serialization failure (SQLSTATE 40001): retried in a
-- new transaction, it gets a later key. Rows of earlier versions start at
-- key 0, which every transaction passes.
ALTER TABLE {{schema}}.aggregates ADD COLUMN txid xid8 NOT NULL DEFAULT '0';

CREATE FUNCTION {{schema}}.order_conflict(p_agg text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    RAISE EXCEPTION 'aggregate % was appended to by a transaction that began after this one; retry in a new transaction', p_agg
        USING ERRCODE = '40001';
END
$fn$;
