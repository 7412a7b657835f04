"""The README's table of differences between a partition partman makes and one `CREATE TABLE … PARTITION OF` makes,
checked on PostgreSQL 15 and 18: both kinds of partition are built on one richly dressed parent and compared
attribute by attribute (tests/likeness.py); the attributes that differ are exactly the README's rows."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import psycopg
import pytest

from dbtools import run_cli
from helpers import spec_data, write_spec
from likeness import describe

ROOT = Path(__file__).resolve().parent.parent
NOW = "2027-02-15T12:00:00Z"
SPACE = "partman_test_space"


def documented(version: int) -> set[str]:
    """The attributes of the README's difference table that apply to this server version."""
    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- differences from PARTITION OF -->", 1)[1].split("\n\n", 1)[0]
    found = set()
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        attribute, servers = cells[0].strip("`"), cells[-1]
        low = re.fullmatch(r"(\d+)–(\d+)", servers)
        if servers == "all" or (low and int(low[1]) <= version <= int(low[2])):
            found.add(attribute)
    return found


@pytest.fixture
def dressed(server, db_url):
    """A parent with an owner, grants (one a column grant, MAINTAIN where the server has it), a tablespace,
    comments, a check, a primary key, indexes, extended statistics, a statistics target, a trigger, a rule, and
    replica identity FULL; UNLOGGED where the server allows an unlogged parent (17 and earlier)."""
    tag = uuid.uuid4().hex[:8]
    owner, reader, auditor = f"owner_{tag}", f"reader_{tag}", f"auditor_{tag}"
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        for role in (owner, reader, auditor):
            admin.execute(f'CREATE ROLE "{role}"')
        if not admin.execute("SELECT 1 FROM pg_tablespace WHERE spcname = %s", (SPACE,)).fetchone():
            admin.execute("SET allow_in_place_tablespaces = on")
            admin.execute(f"CREATE TABLESPACE {SPACE} LOCATION ''")
    version = server.version
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"""
            CREATE {'UNLOGGED ' if version < 18 else ''}TABLE bookings (
                id bigint GENERATED ALWAYS AS IDENTITY,
                start_time timestamptz NOT NULL,
                note text,
                amount numeric(12,2) NOT NULL DEFAULT 0 CONSTRAINT amount_positive CHECK (amount >= 0),
                code text COLLATE "C",
                total numeric GENERATED ALWAYS AS (amount * 2) STORED,
                PRIMARY KEY (id, start_time)
            ) PARTITION BY RANGE (start_time) TABLESPACE {SPACE}""")
        for statement in [
            f'ALTER TABLE bookings OWNER TO "{owner}"',
            f'GRANT SELECT ON bookings TO "{reader}"',
            f'GRANT INSERT, UPDATE ON bookings TO "{auditor}"',
            f'GRANT SELECT (amount) ON bookings TO "{auditor}"',
            *([f'GRANT MAINTAIN ON bookings TO "{reader}"'] if version >= 17 else []),
            "COMMENT ON TABLE bookings IS 'the bookings'",
            "COMMENT ON COLUMN bookings.amount IS 'in cents'",
            "COMMENT ON CONSTRAINT amount_positive ON bookings IS 'no refunds here'",
            "CREATE INDEX bookings_code_idx ON bookings (code)",
            "COMMENT ON INDEX bookings_code_idx IS 'by code'",
            "CREATE STATISTICS bookings_stats (ndistinct) ON amount, code FROM bookings",
            "ALTER TABLE bookings ALTER COLUMN code SET STATISTICS 500",
            "ALTER TABLE bookings ALTER COLUMN note SET STORAGE EXTERNAL",
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'",
            "CREATE TRIGGER bookings_touch BEFORE UPDATE ON bookings FOR EACH ROW EXECUTE FUNCTION touch()",
            "CREATE RULE bookings_no_delete AS ON DELETE TO bookings DO INSTEAD NOTHING",
            "ALTER TABLE bookings REPLICA IDENTITY FULL",
        ]:
            conn.execute(statement)
    yield
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{owner}", "{reader}", "{auditor}"')
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        for role in (owner, reader, auditor):
            admin.execute(f'DROP ROLE "{role}"')


def test_partman_partitions_differ_from_partition_of_exactly_where_the_readme_says(capsys, workdir, db_url, server,
                                                                                    dressed):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE by_partition_of PARTITION OF bookings FOR VALUES FROM ('2020-01-01Z') TO ('2020-02-01Z')")
    write_spec(workdir / "specs", spec_data(premake="1 month"))
    result = run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW, "--auto-approve")
    assert result.code == 0, result.err
    with psycopg.connect(db_url, autocommit=True) as conn:
        theirs, ours = describe(conn, "by_partition_of"), describe(conn, "bookings_2027_02")
    differing = {name for name in theirs if theirs[name] != ours[name]}
    assert differing == documented(server.version), {name: (theirs[name], ours[name]) for name in differing}
