"""plpgsql_check over every PL/pgSQL function of the migration, on PostgreSQL 15 (Debian's
postgresql-15-plpgsql-check; the embedded PostgreSQL 18 wheel does not ship the extension)."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from pgcluster import Cluster, debian_bindir

from partman import migration

# Each accepted finding, with why it is acceptable.
ACCEPTED = {
    # partman_ddl runs statements its callers compose with format('%I.%I', ...) and partman_literal();
    # it exists to put every one of them under the lock_timeout ladder.
    ("partman_ddl", "text type variable is not sanitized"),
}


@pytest.fixture(scope="module")
def pg15():
    bindir = debian_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL 15 binaries not found (pg_config --bindir); install postgresql-15")
    cluster = Cluster(bindir, "lint").start()
    yield cluster, bindir
    cluster.stop()


def test_plpgsql_check_finds_nothing_but_the_accepted(pg15):
    cluster, bindir = pg15
    subprocess.run(
        [str(bindir / "psql"), cluster.url(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input=migration.render({"partitioning.prefix": "amenity_booking"}), capture_output=True, text=True, check=True,
    )
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION plpgsql_check")
        checked = conn.execute(
            """SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
                WHERE p.pronamespace = 'public'::regnamespace"""
        ).fetchone()[0]
        findings = conn.execute(
            """SELECT r.functionid, r.lineno, r.level, r.message
                 FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql',
                      LATERAL plpgsql_check_function_tb(p.oid, extra_warnings => true, security_warnings => true) r
                WHERE p.pronamespace = 'public'::regnamespace"""
        ).fetchall()
    assert checked >= 12
    unexpected = [f for f in findings if (f[0], f[3]) not in ACCEPTED]
    assert unexpected == []
