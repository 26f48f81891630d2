-- Version 2: appends run one SQL statement (see append.go) instead of the
-- append function, which spent most of its time in PL/pgSQL. The
-- statement calls this function only when an expectation fails, to abort
-- with SQLSTATE EV409 and a JSON detail as the append function did. The
-- append function stays for processes of the previous version until they
-- are upgraded; they refuse this schema version anyway.
CREATE FUNCTION {{schema}}.version_conflict(p_agg text, p_expected bigint, p_actual bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    RAISE EXCEPTION 'version conflict on aggregate %', p_agg
        USING ERRCODE = 'EV409',
              DETAIL = json_build_object('aggregate', p_agg, 'expected', p_expected, 'actual', p_actual)::text;
END
$fn$;
