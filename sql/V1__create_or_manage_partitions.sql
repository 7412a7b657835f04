-- V1__create_or_manage_partitions.sql: partition management inside PostgreSQL, for Flyway, psql and pg_cron.
--
-- Placeholders, in Flyway's syntax (`partman sql render --set key=value` fills them by the same rules):
--   ${partitioning.prefix}            the parent table's name                      (required)
--   ${partitioning.schema}            the parent's schema                          default public
--   ${partitioning.interval_months}   1, 3, 6 or 12 months per partition           default 1
--   ${partitioning.retention_months}  detach partitions older than this; 0 = never default 0
--   ${partitioning.timezone}          IANA zone where boundaries fall              default UTC
--   ${partitioning.state_schema}      schema of partman's tables and functions     default public
-- Names must be plain lower-case identifiers ([a-z_][a-z0-9_]*): Flyway substitutes text, so a name that
-- needed quoting would mean different things in the identifiers and the literals below.
--
-- The same tables, lock and planning rules as the partman command line: partitions are known by their
-- bounds, read from pg_get_expr(relpartbound), never by their names; only partitions recorded in
-- partition_log are ever dropped; a populated partition is never dropped by an interval change.
-- Once released this file is immutable: later changes go in V2.

-- partman:state:begin
-- partman's state tables, shared by the Python tool (which runs this section) and the functions below.
-- Bounds are stored as timestamptz: a date or timestamp bound v is stored as (v::timestamp AT TIME ZONE 'UTC'),
-- an order-preserving map both faces compute alike, so log rows match partitions by their bounds.
CREATE TABLE IF NOT EXISTS ${partitioning.state_schema}.partition_log (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parent_schema    text        NOT NULL,
    parent_name      text        NOT NULL,
    partition_schema text        NOT NULL,
    partition_name   text        NOT NULL,
    range_start      timestamptz NOT NULL,
    range_end        timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    detached_at      timestamptz,
    dropped_at       timestamptz,
    created_by       text        NOT NULL DEFAULT 'partman',
    -- An intent written before a detach or drop that spans transactions (DETACH … CONCURRENTLY), so the
    -- next run finishes what an interrupted one began.
    pending_action   text        CHECK (pending_action IN ('detach', 'drop')),
    pending_since    timestamptz,
    CHECK (range_start < range_end)
);

CREATE UNIQUE INDEX IF NOT EXISTS partition_log_live_range
    ON ${partitioning.state_schema}.partition_log (parent_schema, parent_name, range_start)
    WHERE dropped_at IS NULL;

-- A table's newest log row (its high-water mark), read under the lock by every apply.
CREATE INDEX IF NOT EXISTS partition_log_parent_id
    ON ${partitioning.state_schema}.partition_log (parent_schema, parent_name, id);

CREATE TABLE IF NOT EXISTS ${partitioning.state_schema}.partition_audit_log (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action           text        NOT NULL CHECK (action IN ('create_table', 'create', 'detach', 'drop', 'config', 'reattach', 'adopt', 'convert')),
    partition_name   text        NOT NULL,
    start_date       timestamptz,
    end_date         timestamptz,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    table_name       text        NOT NULL,
    partition_schema text,
    reason           text,
    environment      text,
    db_user          text        NOT NULL DEFAULT current_user,
    plan_id          text,
    partman_version  text,
    rows_estimate    bigint,
    source           text        NOT NULL DEFAULT 'partman'
);

-- What manage_partitions() follows between deploys; `partman apply` keeps each row in step with its spec.
CREATE TABLE IF NOT EXISTS ${partitioning.state_schema}.partition_config (
    parent_schema    text        NOT NULL,
    parent_name      text        NOT NULL,
    interval_months  integer     CHECK (interval_months IN (1, 3, 6, 12)),  -- NULL: daily or weekly, partman only
    premake          interval,                                            -- NULL: through the end of next year
    retention        interval,                                            -- NULL: never detach
    retention_grace  interval    NOT NULL DEFAULT '7 days',
    timezone         text        NOT NULL DEFAULT 'UTC',
    updated_at       timestamptz NOT NULL DEFAULT now(),
    updated_by       text        NOT NULL DEFAULT 'migration',
    PRIMARY KEY (parent_schema, parent_name)
);
-- partman:state:end

-- The original requirement's table. Created only if missing: an existing table is never renamed or altered.
CREATE TABLE IF NOT EXISTS ${partitioning.schema}.${partitioning.prefix} (
    booking_id  bigint      GENERATED ALWAYS AS IDENTITY,
    amenity_id  bigint      NOT NULL,
    user_id     bigint      NOT NULL,
    start_time  timestamptz NOT NULL,
    end_time    timestamptz NOT NULL,
    status      text        NOT NULL DEFAULT 'pending',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     integer     NOT NULL DEFAULT 1,
    PRIMARY KEY (booking_id, start_time)
) PARTITION BY RANGE (start_time);

INSERT INTO ${partitioning.state_schema}.partition_config (parent_schema, parent_name, interval_months, retention, timezone)
VALUES ('${partitioning.schema}', '${partitioning.prefix}', ${partitioning.interval_months},
        CASE WHEN ${partitioning.retention_months} > 0 THEN make_interval(months => ${partitioning.retention_months}) END,
        '${partitioning.timezone}')
ON CONFLICT (parent_schema, parent_name) DO NOTHING;


-- The advisory lock partman apply takes for the same table: (1885434484 = 'part' in ASCII,
-- first 32 bits of md5 of the quoted qualified name). Waits up to p_wait, then fails: never forever.
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_lock(p_schema text, p_name text, p_wait interval DEFAULT '30 seconds')
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    k int := ('x' || left(md5(format('%I.%I', p_schema, p_name)), 8))::bit(32)::int;
    deadline timestamptz := clock_timestamp() + p_wait;
BEGIN
    LOOP
        IF pg_try_advisory_xact_lock(1885434484, k) THEN
            RETURN;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RAISE EXCEPTION 'partman: lock on %.% not obtained within %; another run holds it, retry later',
                quote_ident(p_schema), quote_ident(p_name), p_wait USING ERRCODE = 'lock_not_available';
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$fn$;


-- One DDL statement under a short lock_timeout (its callers compose it with format('%I', …) and partman_literal), retried with back-off (100 ms doubling to 5 s, 30 s in all):
-- a DDL statement that waits without a timeout behind a long query queues every writer behind itself.
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_ddl(p_statement text)
RETURNS void LANGUAGE plpgsql SET lock_timeout = '100ms' AS $fn$
DECLARE
    step int := 100;
    deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
    LOOP
        BEGIN
            PERFORM set_config('lock_timeout', step || 'ms', true);
            EXECUTE p_statement;
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            IF clock_timestamp() >= deadline THEN
                RAISE EXCEPTION 'partman: lock not obtained within 30 s for: %', p_statement
                    USING ERRCODE = 'lock_not_available';
            END IF;
            PERFORM pg_sleep(least(step, 1000) / 1000.0 * (0.25 + random() * 0.25));
            step := least(step * 2, 5000);
        END;
    END LOOP;
END
$fn$;


-- Partitions of a parent with their bounds in log space (see partition_log), parsed from the catalog's
-- bound expressions printed in UTC. NULL bounds are MINVALUE/MAXVALUE; readable is false for what is not understood.
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_partitions(p_parent regclass)
RETURNS TABLE (relid oid, schema_name text, table_name text, range_start timestamptz, range_end timestamptz,
               is_default boolean, readable boolean, detach_pending boolean)
LANGUAGE plpgsql STABLE SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' AS $fn$
DECLARE
    r record;
    m text[];
BEGIN
    FOR r IN
        SELECT c.oid, n.nspname, c.relname, pg_get_expr(c.relpartbound, 0) AS expr,  -- constants only: relid 0 is enough
               i.inhdetachpending AS pending
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE i.inhparent = p_parent
    LOOP
        relid := r.oid; schema_name := r.nspname; table_name := r.relname;
        range_start := NULL; range_end := NULL;
        is_default := r.expr = 'DEFAULT';
        readable := is_default;
        detach_pending := r.pending;
        m := regexp_match(r.expr, '^FOR VALUES FROM \((.+)\) TO \((.+)\)$');
        IF m IS NOT NULL THEN
            BEGIN
                range_start := ${partitioning.state_schema}.partman_bound(m[1]);
                range_end := ${partitioning.state_schema}.partman_bound(m[2]);
                readable := true;
            EXCEPTION WHEN data_exception THEN
                readable := false;
            END;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$;

CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_bound(p_value text)
RETURNS timestamptz LANGUAGE plpgsql STABLE SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' AS $fn$
DECLARE
    m text[];
BEGIN
    IF p_value IN ('MINVALUE', 'MAXVALUE') THEN
        RETURN NULL;
    END IF;
    m := regexp_match(p_value, '^''((?:[^'']|'''')*)''(?:::[a-z ]+)?$');
    IF m IS NULL THEN
        RAISE EXCEPTION 'bound % not understood', p_value USING ERRCODE = 'invalid_datetime_format';
    END IF;
    IF m[1] IN ('infinity', '-infinity') THEN
        RETURN NULL;
    END IF;
    -- With TimeZone UTC a date or timestamp reads as UTC midnight or UTC wall time: the log-space map.
    RETURN replace(m[1], '''''', '''')::timestamptz;
END
$fn$;


-- A local wall-clock moment as a bound in log space, for each key type. A timestamptz key reads it as
-- PostgreSQL reads local time, as rows are routed: a time a DST change repeats is its second occurrence, a time
-- it skips is read with the offset from before the change (partman's timeline._instant does the same).
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_to_log(p_local timestamp, p_key_type text, p_tz text)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE p_key_type
        WHEN 'date' THEN date_trunc('day', p_local) AT TIME ZONE 'UTC'
        WHEN 'timestamp without time zone' THEN p_local AT TIME ZONE 'UTC'
        ELSE p_local AT TIME ZONE p_tz
    END
$fn$;

-- The local date a bound in log space falls on.
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_local_date(p_value timestamptz, p_key_type text, p_tz text)
RETURNS date LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE p_key_type
        WHEN 'timestamp with time zone' THEN (p_value AT TIME ZONE p_tz)::date
        ELSE (p_value AT TIME ZONE 'UTC')::date
    END
$fn$;

CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_floor(p_day date, p_months int)
RETURNS date LANGUAGE sql IMMUTABLE AS $fn$
    SELECT make_date(extract(year FROM p_day)::int, ((extract(month FROM p_day)::int - 1) / p_months) * p_months + 1, 1)
$fn$;

-- A bound as a typed literal for FOR VALUES: timestamptz with an explicit +00 offset, never session-dependent.
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_literal(p_value timestamptz, p_key_type text)
RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE p_key_type
        WHEN 'date' THEN format('%L::date', (p_value AT TIME ZONE 'UTC')::date)
        WHEN 'timestamp without time zone' THEN format('%L::timestamp', to_char(p_value AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'))
        ELSE format('%L::timestamptz', to_char(p_value AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00')
    END
$fn$;

-- Cosmetic names, as partman names them: parent_2027_01, parent_2027_q1, parent_2027_h1, parent_2027, and
-- bridges parent_20271201_20280101; shortened with an md5 digest to fit 63 bytes. Never parsed back.
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_name(
    p_schema text, p_parent text, p_start timestamptz, p_end timestamptz, p_months int, p_key_type text, p_tz text)
RETURNS text LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    s date := ${partitioning.state_schema}.partman_local_date(p_start, p_key_type, p_tz);
    label text;
    suffix text;
    stem text := p_parent;
    candidate text;
    n int := 1;
BEGIN
    IF p_start = ${partitioning.state_schema}.partman_to_log(${partitioning.state_schema}.partman_floor(s, p_months), p_key_type, p_tz)
       AND p_end = ${partitioning.state_schema}.partman_to_log(${partitioning.state_schema}.partman_floor(s, p_months) + make_interval(months => p_months), p_key_type, p_tz) THEN
        label := CASE p_months
            WHEN 1 THEN to_char(s, 'YYYY_MM')
            WHEN 3 THEN to_char(s, 'YYYY') || '_q' || ((extract(month FROM s)::int - 1) / 3 + 1)
            WHEN 6 THEN to_char(s, 'YYYY') || '_h' || ((extract(month FROM s)::int - 1) / 6 + 1)
            ELSE to_char(s, 'YYYY')
        END;
    ELSE
        label := ${partitioning.state_schema}.partman_stamp(p_start, p_key_type, p_tz) || '_'
              || ${partitioning.state_schema}.partman_stamp(p_end, p_key_type, p_tz);
    END IF;
    LOOP
        suffix := '_' || label || CASE WHEN n > 1 THEN '_' || n ELSE '' END;
        candidate := stem || suffix;
        IF octet_length(candidate) > 63 THEN
            candidate := left(stem, 63);
            WHILE octet_length(candidate) > 63 - octet_length(suffix) - 7 LOOP
                candidate := left(candidate, -1);
            END LOOP;
            candidate := candidate || '_' || left(md5(stem), 6) || suffix;
        END IF;
        EXIT WHEN to_regclass(format('%I.%I', p_schema, candidate)) IS NULL;
        n := n + 1;
    END LOOP;
    RETURN candidate;
END
$fn$;

CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_stamp(p_value timestamptz, p_key_type text, p_tz text)
RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE WHEN local::time = '00:00' THEN to_char(local, 'YYYYMMDD') ELSE to_char(local, 'YYYYMMDD_HH24MISS') END
      FROM (SELECT CASE p_key_type WHEN 'timestamp with time zone' THEN p_value AT TIME ZONE p_tz
                                   ELSE p_value AT TIME ZONE 'UTC' END AS local) AS l
$fn$;


-- The key column and its type; refuses what partman does not manage.
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_key_type(p_parent regclass)
RETURNS text LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    t text;
BEGIN
    SELECT format_type(a.atttypid, a.atttypmod) INTO t
      FROM pg_partitioned_table pt
      JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = (pt.partattrs::int2[])[0]
     WHERE pt.partrelid = p_parent AND pt.partstrat = 'r' AND pt.partnatts = 1;
    IF t IS NULL THEN
        RAISE EXCEPTION 'partman: % is not partitioned by range on one column', p_parent;
    END IF;
    IF t NOT IN ('date', 'timestamp without time zone', 'timestamp with time zone') THEN
        RAISE EXCEPTION 'partman: % is partitioned by a % column; partman manages timestamptz, timestamp and date keys', p_parent, t;
    END IF;
    RETURN t;
END
$fn$;


CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_has_rows(p_schema text, p_name text)
RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
    found boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I)', p_schema, p_name) INTO found;
    RETURN found;
END
$fn$;


CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_audit(
    p_action text, p_schema text, p_name text, p_start timestamptz, p_end timestamptz, p_parent regclass, p_reason text,
    p_rows bigint DEFAULT NULL)
RETURNS void LANGUAGE sql AS $fn$
    INSERT INTO ${partitioning.state_schema}.partition_audit_log
        (action, partition_name, partition_schema, start_date, end_date, table_name, reason, partman_version, rows_estimate, source)
    SELECT p_action, p_name, p_schema, p_start, p_end, format('%I.%I', n.nspname, c.relname), p_reason, 'sql-v1', p_rows, 'sql'
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_parent
$fn$;


-- Detach an attached partition, check it is still empty, and drop it with CASCADE (as the requirement
-- asks), naming what the cascade removes. Rows found: the whole call fails and nothing is changed.
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_drop_empty(
    p_parent regclass, p_schema text, p_name text, p_start timestamptz, p_end timestamptz, p_reason text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    rel oid := to_regclass(format('%I.%I', p_schema, p_name));
    cascaded text;
BEGIN
    PERFORM ${partitioning.state_schema}.partman_ddl(format('ALTER TABLE %s DETACH PARTITION %I.%I', p_parent, p_schema, p_name));
    IF ${partitioning.state_schema}.partman_has_rows(p_schema, p_name) THEN
        RAISE EXCEPTION 'partman: %.% holds rows (future-data check under lock); nothing changed for %',
            quote_ident(p_schema), quote_ident(p_name), p_parent USING ERRCODE = 'object_in_use';
    END IF;
    SELECT string_agg(DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid), ', ') INTO cascaded
      FROM pg_depend d
     WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = rel AND d.deptype = 'n';
    PERFORM ${partitioning.state_schema}.partman_ddl(format('DROP TABLE %I.%I CASCADE', p_schema, p_name));
    RAISE NOTICE 'partman: dropped %.% (%)%', quote_ident(p_schema), quote_ident(p_name), p_reason,
        CASE WHEN cascaded IS NULL THEN '' ELSE '; the cascade also removed: ' || cascaded END;
    UPDATE ${partitioning.state_schema}.partition_log l
       SET dropped_at = now()
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_parent AND l.parent_schema = n.nspname AND l.parent_name = c.relname
       AND l.range_start = p_start AND l.range_end = p_end AND l.dropped_at IS NULL;
    PERFORM ${partitioning.state_schema}.partman_audit('drop', p_schema, p_name, p_start, p_end, p_parent, p_reason, 0);
END
$fn$;


-- A new partition made to match its parent, as partman makes it (README: Partitions that match their parent): the
-- parent's owner and privileges (table and column, grant options; none when the parent has row-level security,
-- whose policies a direct read of a partition would bypass) and a replica identity FULL or NOTHING, before the
-- ATTACH; the tablespace and persistence are in its CREATE TABLE (partman_create).
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_match_parent(p_parent regclass, p_schema text, p_name text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    par record;
    target regclass := to_regclass(format('%I.%I', p_schema, p_name));
    g record;
    who text;
    what text;
BEGIN
    SELECT c.relowner, c.relacl, c.relrowsecurity, c.relreplident INTO par FROM pg_class c WHERE c.oid = p_parent;
    IF par.relowner <> (SELECT c.relowner FROM pg_class c WHERE c.oid = target) THEN
        PERFORM ${partitioning.state_schema}.partman_ddl(format('ALTER TABLE %s OWNER TO %I', target, pg_get_userbyid(par.relowner)));
    END IF;
    IF NOT par.relrowsecurity THEN
        -- Grantees as 'o' (the owner), 'p' (PUBLIC) or 'r' and a name; who granted is not what a partition shares.
        FOR g IN
            WITH want AS (
                SELECT '' AS col, a.grantee, a.privilege_type AS priv, a.is_grantable AS opt
                  FROM aclexplode(coalesce(par.relacl, acldefault('r', par.relowner))) a
                UNION ALL
                SELECT at.attname::text, a.grantee, a.privilege_type, a.is_grantable
                  FROM pg_attribute at, aclexplode(at.attacl) a
                 WHERE at.attrelid = p_parent AND at.attacl IS NOT NULL AND NOT at.attisdropped
            ), have AS (
                SELECT '' AS col, a.grantee, a.privilege_type AS priv, a.is_grantable AS opt
                  FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a WHERE c.oid = target
                UNION ALL
                SELECT at.attname::text, a.grantee, a.privilege_type, a.is_grantable
                  FROM pg_attribute at, aclexplode(at.attacl) a
                 WHERE at.attrelid = target AND at.attacl IS NOT NULL AND NOT at.attisdropped
            )
            SELECT coalesce(w.col, h.col) AS col, coalesce(w.grantee, h.grantee) AS grantee,
                   coalesce(w.priv, h.priv) AS priv, w.opt AS want_opt, h.opt AS have_opt
              FROM want w FULL JOIN have h ON h.col = w.col AND h.grantee = w.grantee AND h.priv = w.priv
             WHERE w.opt IS DISTINCT FROM h.opt
             ORDER BY 1, 2, 3
        LOOP
            who := CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END;
            what := g.priv || CASE WHEN g.col <> '' THEN format(' (%I)', g.col) ELSE '' END;
            IF g.want_opt IS NULL THEN
                PERFORM ${partitioning.state_schema}.partman_ddl(format('REVOKE %s ON TABLE %s FROM %s', what, target, who));
            ELSIF g.have_opt IS NULL OR g.want_opt THEN
                PERFORM ${partitioning.state_schema}.partman_ddl(format('GRANT %s ON TABLE %s TO %s%s', what, target, who,
                                               CASE WHEN g.want_opt THEN ' WITH GRANT OPTION' ELSE '' END));
            ELSE
                PERFORM ${partitioning.state_schema}.partman_ddl(format('REVOKE GRANT OPTION FOR %s ON TABLE %s FROM %s', what, target, who));
            END IF;
        END LOOP;
    END IF;
    IF par.relreplident IN ('f', 'n') THEN
        PERFORM ${partitioning.state_schema}.partman_ddl(format('ALTER TABLE %s REPLICA IDENTITY %s', target,
                                       CASE par.relreplident WHEN 'f' THEN 'FULL' ELSE 'NOTHING' END));
    END IF;
END
$fn$;

-- After the ATTACH: a replica identity USING INDEX names the partition's index that ATTACH matched to the parent's.
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_match_identity(p_parent regclass, p_schema text, p_name text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    idx text;
BEGIN
    SELECT ic.relname INTO idx
      FROM pg_index x JOIN pg_inherits ii ON ii.inhrelid = x.indexrelid JOIN pg_class ic ON ic.oid = x.indexrelid
     WHERE x.indrelid = to_regclass(format('%I.%I', p_schema, p_name))
       AND ii.inhparent = (SELECT px.indexrelid FROM pg_index px WHERE px.indrelid = p_parent AND px.indisreplident);
    IF idx IS NOT NULL THEN
        PERFORM ${partitioning.state_schema}.partman_ddl(format('ALTER TABLE %I.%I REPLICA IDENTITY USING INDEX %I', p_schema, p_name, idx));
    END IF;
END
$fn$;

-- CREATE TABLE … (LIKE parent …) in the parent's tablespace and persistence, with its access method where it has one.
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_create(p_parent regclass, p_schema text, p_name text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    par record;
BEGIN
    SELECT c.relpersistence, (SELECT s.spcname FROM pg_tablespace s WHERE s.oid = c.reltablespace) AS space,
           (SELECT am.amname FROM pg_am am WHERE am.oid = c.relam) AS am
      INTO par FROM pg_class c WHERE c.oid = p_parent;
    PERFORM ${partitioning.state_schema}.partman_ddl(format(
        'CREATE %sTABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES'
        ' INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS INCLUDING GENERATED INCLUDING COMPRESSION)%s%s',
        CASE WHEN par.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END, p_schema, p_name, p_parent,
        CASE WHEN par.am IS NOT NULL THEN format(' USING %I', par.am) ELSE '' END,
        CASE WHEN par.space IS NOT NULL THEN format(' TABLESPACE %I', par.space) ELSE '' END));
    PERFORM ${partitioning.state_schema}.partman_match_parent(p_parent, p_schema, p_name);
END
$fn$;

-- The planner's rules, in PL/pgSQL, for month-based intervals (the same rules as partman's planner.py):
-- cover [start of the slot holding p_at, p_until) with contiguous partitions; replace empty future
-- partitions that partman made and that do not fit the grid; keep populated ones and bridge around them;
-- with p_retention, detach partitions that ended at or before p_at - retention and drop them after the grace.
-- p_scope_end limits which partitions an interval change may replace (create_or_update_partitions: one year).
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_sync(
    p_parent regclass, p_at timestamptz, p_months int, p_from date, p_until date, p_retention boolean,
    p_scope_end timestamptz DEFAULT NULL)
RETURNS TABLE (created int, detached int, dropped int)
LANGUAGE plpgsql SET TimeZone = 'UTC' AS $fn$
DECLARE
    key_type text := ${partitioning.state_schema}.partman_key_type(p_parent);
    pschema text;
    pname text;
    tz text;
    retention interval;
    grace interval;
    local_now timestamp;
    now_log timestamptz;
    w_start timestamptz;
    w_end timestamptz;
    cutoff timestamptz;
    obstacles tstzmultirange := '{}'::tstzmultirange;
    candidates tstzrange[] := '{}'::tstzrange[];
    pieces tstzrange[] := '{}'::tstzrange[];
    gap tstzrange;
    piece tstzrange;
    g date;
    slot_start timestamptz;
    slot_end timestamptz;
    p record;
    managed boolean;
    is_slot boolean;
    new_name text;
BEGIN
    created := 0; detached := 0; dropped := 0;
    SELECT n.nspname, c.relname INTO pschema, pname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_parent;
    SELECT cf.timezone, cf.retention, cf.retention_grace INTO tz, retention, grace
      FROM ${partitioning.state_schema}.partition_config cf WHERE cf.parent_schema = pschema AND cf.parent_name = pname;
    tz := coalesce(tz, 'UTC');
    grace := coalesce(grace, interval '7 days');
    local_now := p_at AT TIME ZONE tz;
    now_log := ${partitioning.state_schema}.partman_to_log(local_now, key_type, tz);
    w_start := ${partitioning.state_schema}.partman_to_log(p_from, key_type, tz);
    w_end := ${partitioning.state_schema}.partman_to_log(p_until, key_type, tz);
    IF p_retention AND retention IS NOT NULL THEN
        cutoff := ${partitioning.state_schema}.partman_to_log(local_now - retention, key_type, tz);
    END IF;

    FOR p IN SELECT * FROM ${partitioning.state_schema}.partman_partitions(p_parent) WHERE NOT is_default ORDER BY range_start NULLS FIRST LOOP
        IF NOT p.readable THEN
            RAISE NOTICE 'partman: bound of %.% not understood; left alone, and no partition is made', p.schema_name, p.table_name;
            obstacles := obstacles + tstzmultirange(tstzrange(NULL, NULL));
            CONTINUE;
        END IF;
        IF p.detach_pending THEN
            RAISE NOTICE 'partman: %.% has a detach pending (an interrupted partman apply); partman apply finishes it',
                p.schema_name, p.table_name;
            obstacles := obstacles + tstzmultirange(tstzrange(p.range_start, p.range_end));
            CONTINUE;
        END IF;
        managed := EXISTS (SELECT 1 FROM ${partitioning.state_schema}.partition_log l
                            WHERE l.parent_schema = pschema AND l.parent_name = pname AND l.dropped_at IS NULL
                              AND l.range_start = coalesce(p.range_start, '-infinity') AND l.range_end = coalesce(p.range_end, 'infinity'));
        IF cutoff IS NOT NULL AND p.range_end IS NOT NULL AND p.range_end <= cutoff THEN
            IF managed THEN
                PERFORM ${partitioning.state_schema}.partman_ddl(format('ALTER TABLE %s DETACH PARTITION %I.%I', p_parent, p.schema_name, p.table_name));
                UPDATE ${partitioning.state_schema}.partition_log SET detached_at = p_at
                 WHERE parent_schema = pschema AND parent_name = pname AND range_start = coalesce(p.range_start, '-infinity')
                   AND range_end = coalesce(p.range_end, 'infinity') AND dropped_at IS NULL;
                PERFORM ${partitioning.state_schema}.partman_audit('detach', p.schema_name, p.table_name, p.range_start, p.range_end, p_parent, 'retention');
                RAISE NOTICE 'partman: detached %.% (retention)', quote_ident(p.schema_name), quote_ident(p.table_name);
                detached := detached + 1;
                IF grace = interval '0' THEN
                    PERFORM ${partitioning.state_schema}.partman_ddl(format('DROP TABLE %I.%I', p.schema_name, p.table_name));
                    UPDATE ${partitioning.state_schema}.partition_log SET dropped_at = p_at
                     WHERE parent_schema = pschema AND parent_name = pname AND range_start = coalesce(p.range_start, '-infinity')
                       AND range_end = coalesce(p.range_end, 'infinity') AND dropped_at IS NULL;
                    PERFORM ${partitioning.state_schema}.partman_audit('drop', p.schema_name, p.table_name, p.range_start, p.range_end, p_parent, 'retention_grace_elapsed');
                    dropped := dropped + 1;
                END IF;
            ELSE
                RAISE NOTICE 'partman: %.% expired by retention but is not in partition_log; left alone', p.schema_name, p.table_name;
            END IF;
            -- An expired range stays spoken for: it is never filled again.
            obstacles := obstacles + tstzmultirange(tstzrange(p.range_start, p.range_end));
            CONTINUE;
        END IF;
        g := ${partitioning.state_schema}.partman_floor(${partitioning.state_schema}.partman_local_date(p.range_start, key_type, tz), p_months);
        is_slot := p.range_start IS NOT NULL AND p.range_end IS NOT NULL
               AND p.range_start = ${partitioning.state_schema}.partman_to_log(g, key_type, tz)
               AND p.range_end = ${partitioning.state_schema}.partman_to_log(g + make_interval(months => p_months), key_type, tz);
        IF managed AND p.range_start > now_log AND NOT is_slot
           AND (p_scope_end IS NULL OR p.range_end <= p_scope_end) THEN
            IF ${partitioning.state_schema}.partman_has_rows(p.schema_name, p.table_name) THEN
                RAISE NOTICE 'partman: kept %.%: holds rows (future-data check); the new layout fills around it', p.schema_name, p.table_name;
            ELSE
                candidates := candidates || tstzrange(p.range_start, p.range_end);
                CONTINUE;
            END IF;
        END IF;
        obstacles := obstacles + tstzmultirange(tstzrange(p.range_start, p.range_end));
    END LOOP;

    -- Detached by retention earlier and past their grace: drop.
    IF p_retention THEN
        FOR p IN SELECT l.* FROM ${partitioning.state_schema}.partition_log l
                  WHERE l.parent_schema = pschema AND l.parent_name = pname AND l.detached_at IS NOT NULL AND l.dropped_at IS NULL
                    AND (l.detached_at AT TIME ZONE tz) + grace <= local_now
                    AND NOT EXISTS (SELECT 1 FROM ${partitioning.state_schema}.partman_partitions(p_parent) x
                                     WHERE x.range_start = l.range_start AND x.range_end = l.range_end) LOOP
            IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = p.partition_schema AND c.relname = p.partition_name AND NOT c.relispartition) THEN
                PERFORM ${partitioning.state_schema}.partman_ddl(format('DROP TABLE %I.%I', p.partition_schema, p.partition_name));
                UPDATE ${partitioning.state_schema}.partition_log SET dropped_at = p_at WHERE id = p.id;
                PERFORM ${partitioning.state_schema}.partman_audit('drop', p.partition_schema, p.partition_name, p.range_start, p.range_end, p_parent, 'retention_grace_elapsed');
                dropped := dropped + 1;
            END IF;
        END LOOP;
    END IF;

    -- The free parts of the window, cut at the grid's boundaries: aligned slots, bridges at the edges.
    FOR gap IN SELECT unnest(tstzmultirange(tstzrange(w_start, w_end)) - obstacles) LOOP
        g := ${partitioning.state_schema}.partman_floor(${partitioning.state_schema}.partman_local_date(lower(gap), key_type, tz), p_months);
        -- A gap that begins in the first pass of an hour repeated at midnight (America/Havana, 2026-11-01
        -- 00:30 CDT) is on its local date but before that date's boundary, the second 00:00: the slot before.
        IF ${partitioning.state_schema}.partman_to_log(g, key_type, tz) > lower(gap) THEN
            g := ${partitioning.state_schema}.partman_floor(g - 1, p_months);
        END IF;
        LOOP
            slot_start := ${partitioning.state_schema}.partman_to_log(g, key_type, tz);
            slot_end := ${partitioning.state_schema}.partman_to_log(g + make_interval(months => p_months), key_type, tz);
            EXIT WHEN slot_start >= upper(gap);
            piece := tstzrange(greatest(slot_start, lower(gap)), least(slot_end, upper(gap)));
            IF cutoff IS NULL OR upper(piece) > cutoff THEN
                pieces := pieces || piece;
            END IF;
            g := (g + make_interval(months => p_months))::date;
        END LOOP;
    END LOOP;

    FOR p IN SELECT x.* FROM ${partitioning.state_schema}.partman_partitions(p_parent) x
              WHERE tstzrange(x.range_start, x.range_end) = ANY (candidates)
                AND NOT tstzrange(x.range_start, x.range_end) = ANY (pieces) ORDER BY x.range_start LOOP
        PERFORM ${partitioning.state_schema}.partman_drop_empty(p_parent, p.schema_name, p.table_name, p.range_start, p.range_end, 'interval_change');
        dropped := dropped + 1;
    END LOOP;

    FOREACH piece IN ARRAY pieces LOOP
        CONTINUE WHEN piece = ANY (candidates);
        new_name := ${partitioning.state_schema}.partman_name(pschema, pname, lower(piece), upper(piece), p_months, key_type, tz);
        PERFORM ${partitioning.state_schema}.partman_create(p_parent, pschema, new_name);
        PERFORM ${partitioning.state_schema}.partman_ddl(format('ALTER TABLE %s ATTACH PARTITION %I.%I FOR VALUES FROM (%s) TO (%s)',
                       p_parent, pschema, new_name,
                       ${partitioning.state_schema}.partman_literal(lower(piece), key_type),
                       ${partitioning.state_schema}.partman_literal(upper(piece), key_type)));
        PERFORM ${partitioning.state_schema}.partman_match_identity(p_parent, pschema, new_name);
        -- A live row for this range whose partition is gone (dropped by hand) is closed, not left to clash.
        UPDATE ${partitioning.state_schema}.partition_log SET dropped_at = p_at
         WHERE parent_schema = pschema AND parent_name = pname AND range_start = lower(piece) AND dropped_at IS NULL;
        INSERT INTO ${partitioning.state_schema}.partition_log
            (parent_schema, parent_name, partition_schema, partition_name, range_start, range_end, created_at, created_by)
        VALUES (pschema, pname, pschema, new_name, lower(piece), upper(piece), p_at, 'sql');
        PERFORM ${partitioning.state_schema}.partman_audit('create', pschema, new_name, lower(piece), upper(piece), p_parent, 'premake');
        created := created + 1;
    END LOOP;
    RETURN NEXT;
END
$fn$;


-- The requirement's functions. Each acts on one table: by name (partition_prefix), or the table
-- ${partitioning.schema}.${partitioning.prefix} unless p_parent names another.

CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_parent(p_name text)
RETURNS regclass LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    rel regclass := to_regclass(p_name);
BEGIN
    IF rel IS NULL THEN
        RAISE EXCEPTION 'partman: table % does not exist', p_name USING ERRCODE = 'undefined_table';
    END IF;
    RETURN rel;
END
$fn$;

CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.partman_timezone(p_parent regclass)
RETURNS text LANGUAGE sql STABLE AS $fn$
    SELECT coalesce((SELECT cf.timezone FROM ${partitioning.state_schema}.partition_config cf
                       JOIN pg_namespace n ON n.nspname = cf.parent_schema
                       JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = cf.parent_name
                      WHERE c.oid = p_parent), 'UTC')
$fn$;


-- True if any partition starting on or after start_date holds a row, or the default partition holds a row
-- at or after it. EXISTS per partition: never count(*).
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.check_future_partition_data(partition_prefix text, start_date date)
RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
    parent regclass := ${partitioning.state_schema}.partman_parent(partition_prefix);
    key_type text := ${partitioning.state_schema}.partman_key_type(parent);
    tz text := ${partitioning.state_schema}.partman_timezone(parent);
    threshold timestamptz := ${partitioning.state_schema}.partman_to_log(start_date, key_type, tz);
    key_column text;
    p record;
    found boolean;
BEGIN
    SELECT a.attname INTO key_column FROM pg_partitioned_table pt
      JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = (pt.partattrs::int2[])[0]
     WHERE pt.partrelid = parent;
    FOR p IN SELECT * FROM ${partitioning.state_schema}.partman_partitions(parent) LOOP
        IF p.is_default THEN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I WHERE %I >= %s)', p.schema_name, p.table_name, key_column,
                           CASE key_type WHEN 'timestamp with time zone' THEN quote_literal(threshold) || '::timestamptz'
                                         ELSE ${partitioning.state_schema}.partman_literal(threshold, key_type) END)
               INTO found;
        ELSIF p.range_start >= threshold THEN
            found := ${partitioning.state_schema}.partman_has_rows(p.schema_name, p.table_name);
        ELSE
            found := false;
        END IF;
        IF found THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END
$fn$;


-- Drops the empty partitions partman made that start on or after start_date and in start_year or later,
-- never a populated one (it is kept, with a notice). Returns how many were dropped.
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.drop_future_partitions(partition_prefix text, start_year integer, start_date date)
RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
    parent regclass := ${partitioning.state_schema}.partman_parent(partition_prefix);
    key_type text := ${partitioning.state_schema}.partman_key_type(parent);
    tz text := ${partitioning.state_schema}.partman_timezone(parent);
    threshold timestamptz := ${partitioning.state_schema}.partman_to_log(greatest(start_date, make_date(start_year, 1, 1)), key_type, tz);
    pschema text;
    pname text;
    p record;
    n int := 0;
BEGIN
    SELECT ns.nspname, c.relname INTO pschema, pname FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace WHERE c.oid = parent;
    PERFORM ${partitioning.state_schema}.partman_lock(pschema, pname);
    FOR p IN SELECT x.*, EXISTS (SELECT 1 FROM ${partitioning.state_schema}.partition_log l
                                   WHERE l.parent_schema = pschema AND l.parent_name = pname AND l.dropped_at IS NULL
                                     AND l.range_start = x.range_start AND l.range_end = x.range_end) AS managed
               FROM ${partitioning.state_schema}.partman_partitions(parent) x
              WHERE NOT x.is_default AND x.range_start >= threshold ORDER BY x.range_start LOOP
        IF NOT p.managed THEN
            RAISE NOTICE 'partman: %.% is not in partition_log; left alone', p.schema_name, p.table_name;
        ELSIF ${partitioning.state_schema}.partman_has_rows(p.schema_name, p.table_name) THEN
            RAISE NOTICE 'partman: kept %.%: holds rows (future-data check)', p.schema_name, p.table_name;
        ELSE
            PERFORM ${partitioning.state_schema}.partman_drop_empty(parent, p.schema_name, p.table_name, p.range_start, p.range_end, 'drop_future_partitions');
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$fn$;


-- Makes current_year's partitions at interval_months (from the slot holding now; past slots are not made),
-- replacing empty future partitions of another interval and bridging around populated ones. The interval
-- becomes the table's configured interval, so manage_partitions() keeps to it.
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.create_or_update_partitions(
    current_year integer, frequency integer, interval_months integer,
    p_parent text DEFAULT '${partitioning.schema}.${partitioning.prefix}')
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    parent regclass := ${partitioning.state_schema}.partman_parent(p_parent);
    key_type text := ${partitioning.state_schema}.partman_key_type(parent);
    tz text := ${partitioning.state_schema}.partman_timezone(parent);
    local_today date := (now() AT TIME ZONE tz)::date;
    pschema text;
    pname text;
    r record;
BEGIN
    IF interval_months NOT IN (1, 3, 6, 12) THEN
        RAISE EXCEPTION 'partman: interval_months must be 1, 3, 6 or 12, not %', interval_months;
    END IF;
    IF frequency IS DISTINCT FROM 12 / interval_months THEN
        RAISE EXCEPTION 'partman: frequency % does not match interval_months % (expected % partitions a year)',
            frequency, interval_months, 12 / interval_months;
    END IF;
    SELECT ns.nspname, c.relname INTO pschema, pname FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace WHERE c.oid = parent;
    PERFORM ${partitioning.state_schema}.partman_lock(pschema, pname);
    INSERT INTO ${partitioning.state_schema}.partition_config AS cf (parent_schema, parent_name, interval_months, updated_by)
    VALUES (pschema, pname, interval_months, 'create_or_update_partitions')
    ON CONFLICT (parent_schema, parent_name) DO UPDATE
       SET interval_months = EXCLUDED.interval_months, updated_at = now(), updated_by = EXCLUDED.updated_by
     WHERE cf.interval_months IS DISTINCT FROM EXCLUDED.interval_months;
    IF make_date(current_year + 1, 1, 1) <= local_today THEN
        RAISE NOTICE 'partman: % is in the past; nothing to make', current_year;
        RETURN;
    END IF;
    SELECT * INTO r FROM ${partitioning.state_schema}.partman_sync(
        parent, now(), interval_months,
        greatest(make_date(current_year, 1, 1), ${partitioning.state_schema}.partman_floor(local_today, interval_months)),
        make_date(current_year + 1, 1, 1), false,
        ${partitioning.state_schema}.partman_to_log(make_date(current_year + 1, 1, 1), key_type, tz));
    RAISE NOTICE 'partman: %: % created, % dropped', parent, r.created, r.dropped;
END
$fn$;


-- Partitions for the current and next year (or the configured premake) at the configured interval, retention
-- included, under the same advisory lock as partman apply. Safe to schedule with pg_cron.
CREATE OR REPLACE FUNCTION ${partitioning.state_schema}.manage_partitions(
    p_parent text DEFAULT '${partitioning.schema}.${partitioning.prefix}', p_at timestamptz DEFAULT now())
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    parent regclass := ${partitioning.state_schema}.partman_parent(p_parent);
    pschema text;
    pname text;
    cfg record;
    local_now timestamp;
    w_first date;
    horizon timestamp;
    w_last date;
    r record;
BEGIN
    RAISE NOTICE 'partman: run partition management in a maintenance window or off-peak: it takes short locks on %', parent;
    SELECT ns.nspname, c.relname INTO pschema, pname FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace WHERE c.oid = parent;
    PERFORM ${partitioning.state_schema}.partman_lock(pschema, pname);
    SELECT * INTO cfg FROM ${partitioning.state_schema}.partition_config WHERE parent_schema = pschema AND parent_name = pname;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'partman: no partition_config row for %; insert one or run partman apply', parent;
    END IF;
    IF cfg.interval_months IS NULL THEN
        RAISE EXCEPTION 'partman: % has a daily or weekly interval; only partman apply manages it', parent;
    END IF;
    local_now := p_at AT TIME ZONE cfg.timezone;
    w_first := ${partitioning.state_schema}.partman_floor(local_now::date, cfg.interval_months);
    horizon := coalesce(local_now + cfg.premake, make_date(extract(year FROM local_now)::int + 2, 1, 1)::timestamp);
    w_last := ${partitioning.state_schema}.partman_floor(horizon::date, cfg.interval_months);
    IF w_last::timestamp < horizon THEN
        w_last := (w_last + make_interval(months => cfg.interval_months))::date;
    END IF;
    w_last := greatest(w_last, (w_first + make_interval(months => cfg.interval_months))::date);
    SELECT * INTO r FROM ${partitioning.state_schema}.partman_sync(parent, p_at, cfg.interval_months, w_first, w_last, true);
    RAISE NOTICE 'partman: %: % created, % detached, % dropped', parent, r.created, r.detached, r.dropped;
END
$fn$;


SELECT ${partitioning.state_schema}.manage_partitions('${partitioning.schema}.${partitioning.prefix}');
