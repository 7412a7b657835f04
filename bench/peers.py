"""partman against its peers on PostgreSQL 15: pg_partman 4.7.2's run_maintenance() and pg-partsmith's apply,
each making the same partitions, side by side in one run, with raw DDL as the floor.

Every tool starts from the same state: 100 parents (primary key and one index), each with this month's and next
month's partitions and an empty default partition (what pg_partman's create_parent leaves with premake 1), and
must bring each table to 12 months ahead: 11 new monthly partitions per table, 1,100 in all. All use the
server's clock. Each is timed as the whole command an operator runs (a process), median of --runs.

Needs Debian's postgresql-15-partman and pg-partsmith[cli] in its own virtualenv (its pins differ from ours):

    python3 -m venv .bench-venv && .bench-venv/bin/pip install 'pg-partsmith[cli]'
    .venv/bin/python bench/peers.py [--tables 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import yaml

from _compiled import byte_compile
from _servers import servers

ROOT = Path(__file__).resolve().parent.parent
PARTSMITH = ROOT / ".bench-venv" / "bin" / "pg-partsmith"


def fresh(admin: str, tables: int, naming: str) -> str:
    """tables parents, each with this month and next (named as the tool would name them) and a default."""
    name = f"p_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    with psycopg.connect(url, autocommit=True) as c:
        month = c.execute("SELECT date_trunc('month', now())").fetchone()[0]
        if naming == "pg_partman":
            c.execute("CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman")
        for t in range(tables):
            c.execute(f"CREATE TABLE t{t} (id bigint NOT NULL, at timestamptz NOT NULL, v text, PRIMARY KEY (id, at))"
                      f" PARTITION BY RANGE (at); CREATE INDEX ON t{t} (v)")
            if naming == "pg_partman":
                c.execute("SELECT partman.create_parent(%s, 'at', 'native', 'monthly', p_premake := 1,"
                          " p_start_partition := %s)", (f"public.t{t}", month.strftime("%Y-%m-%d")))
                continue
            c.execute(f"CREATE TABLE t{t}_default PARTITION OF t{t} DEFAULT")
            for i in range(2):
                lo = c.execute("SELECT %s::timestamptz + make_interval(months => %s)", (month, i)).fetchone()[0]
                hi = c.execute("SELECT %s::timestamptz + make_interval(months => %s)", (month, i + 1)).fetchone()[0]
                label = f"t{t}__{lo:%Y_%m}" if naming == "partsmith" else f"t{t}_{lo:%Y_%m}"
                c.execute(psycopg.sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                    psycopg.sql.Identifier(label), psycopg.sql.Identifier(f"t{t}"), psycopg.sql.Literal(lo), psycopg.sql.Literal(hi)))
        if naming == "pg_partman":
            # infinite_time_partitions: without it pg_partman makes no partition ahead of the newest row
            c.execute("UPDATE partman.part_config SET premake = 12, infinite_time_partitions = true")
        from partman.audit import state_ddl

        c.execute(state_ddl("public"))  # partman's state tables: not part of anyone's timed run
    return url


def partitions(url: str) -> int:
    with psycopg.connect(url) as c:
        return c.execute("SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                         " WHERE pg_get_expr(c.relpartbound, 0) <> 'DEFAULT'").fetchone()[0]


def timed(cmd: list[str], cwd: Path, url: str) -> tuple[float, int]:
    before = partitions(url)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    took = time.perf_counter() - t0
    return took, partitions(url) - before


def raw_script(url: str, tables: int) -> str:
    """The floor: the same partitions, as CREATE TABLE … PARTITION OF statements in a psql script."""
    with psycopg.connect(url) as c:
        month = c.execute("SELECT date_trunc('month', now())").fetchone()[0]
        lines = []
        for t in range(tables):
            for i in range(2, 13):
                lo, hi = c.execute("SELECT %s::timestamptz + make_interval(months => %s), %s::timestamptz + make_interval(months => %s)",
                                   (month, i, month, i + 1)).fetchone()
                lines.append(psycopg.sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({});").format(
                    psycopg.sql.Identifier(f"t{t}_raw_{i}"), psycopg.sql.Identifier(f"t{t}"),
                    psycopg.sql.Literal(lo), psycopg.sql.Literal(hi)).as_string(c))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    byte_compile()
    if not PARTSMITH.exists():
        sys.exit(f"{PARTSMITH} not found: python3 -m venv .bench-venv && .bench-venv/bin/pip install 'pg-partsmith[cli]'")
    for label, cluster in servers("pg15"):
        psql = str(cluster.bindir / "psql")
        results: dict[str, list[tuple[float, int]]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            (d / "specs").mkdir()
            for t in range(args.tables):
                (d / "specs" / f"t{t}.yaml").write_text(yaml.safe_dump(
                    {"table": f"t{t}", "partition_key": "at", "interval": "monthly", "premake": "12 months",
                     "environments": {"bench": {}}}))
            (d / "partsmith.yaml").write_text(yaml.safe_dump({
                "version": 1,
                "defaults": {"partition_column": "at", "granularity": "month", "create_ahead_count": 13, "retention_count": 1000},
                "tables": [{"table_name": f"t{t}"} for t in range(args.tables)],
            }))
            for _ in range(args.runs):
                url = fresh(cluster.url(), args.tables, "raw")
                (d / "raw.sql").write_text(raw_script(url, args.tables))
                results.setdefault("raw DDL (PARTITION OF) via psql", []).append(
                    timed([psql, url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(d / "raw.sql")], d, url))
                url = fresh(cluster.url(), args.tables, "partman")
                results.setdefault("partman apply", []).append(timed(
                    [sys.executable, "-m", "partman", "--quiet", "apply", "specs", "--env", "bench", "--database-url", url,
                     "--auto-approve"], d, url))
                url = fresh(cluster.url(), args.tables, "pg_partman")
                results.setdefault("pg_partman 4.7.2 run_maintenance()", []).append(
                    timed([psql, url, "-X", "-q", "-c", "SELECT partman.run_maintenance()"], d, url))
                url = fresh(cluster.url(), args.tables, "partsmith")
                parts = psycopg.conninfo.conninfo_to_dict(url)
                as_url = f"postgresql://{parts['user']}@{parts['host']}:{parts['port']}/{parts['dbname']}"  # it takes URLs
                results.setdefault("pg-partsmith apply", []).append(
                    timed([str(PARTSMITH), "apply", "--config", str(d / "partsmith.yaml"), "--dsn", as_url], d, url))
        def per_partition(runs):  # the tools do not agree on the count by one, so compare per partition made
            return statistics.median(t / n for t, n in runs)

        ours = per_partition(results["partman apply"])
        print(f"\n{label}: {args.tables} tables, median of {args.runs} runs")
        for name, runs in results.items():
            took, made, each = statistics.median(t for t, _ in runs), runs[0][1], per_partition(runs)
            print(f"  {name:<38} {took:6.2f} s  {made:5d} partitions  {each * 1000:5.2f} ms each   partman/this {ours / each:5.2f}x")


if __name__ == "__main__":
    main()
