-- partman's state tables, shared by the Python tool and the SQL functions of the migration.
-- {schema} is replaced by a quoted identifier (psycopg.sql in Python, the placeholder in the migration).
-- Bounds are stored as timestamptz: a date or timestamp bound v is stored as (v::timestamp AT TIME ZONE 'UTC'),
-- an order-preserving map both faces compute the same way, so log rows match partitions by their bounds.

CREATE TABLE IF NOT EXISTS {schema}.partition_log (
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
    CHECK (range_start < range_end)
);

CREATE UNIQUE INDEX IF NOT EXISTS partition_log_live_range
    ON {schema}.partition_log (parent_schema, parent_name, range_start)
    WHERE dropped_at IS NULL;

CREATE TABLE IF NOT EXISTS {schema}.partition_audit_log (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action           text        NOT NULL CHECK (action IN ('create_table', 'create', 'detach', 'drop')),
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
