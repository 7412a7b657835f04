"""`partman plan` of an interval change over 300 tables: 4,500 row-presence probes (EXISTS per future partition).

The first shape asked every probe in one `SELECT k, EXISTS (...) UNION ALL ...` statement. The planner flattens
such a UNION ALL into one level, and its work grows with the square of the arms: on PostgreSQL 15, 4,500 probes
planned for 70-200 s in a backend of 14 GB. partman's catalog now fences each arm with OFFSET 0 (each stays a
subquery of its own) and sends chunks of catalog.PROBES_PER_STATEMENT arms. This bench, on each server, side by
side:

  1. the single unfenced statement at a quarter and at half the probes (enough to show it squares; all of them
     can take a PG 15 backend past the machine's memory), and the fenced chunks over the same probes;
  2. whole `partman plan` processes (fresh interpreter and connection) of the interval change over every table.

    .venv/bin/python bench/plan_probes.py [--servers pg18,pg15] [--tables 300] [--partitions 15] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import yaml
from psycopg import sql

from _servers import servers

ROOT = Path(__file__).resolve().parent.parent
NOW = "2027-01-15T12:00:00Z"


def build(url: str, tables: int, partitions: int) -> None:
    """tables monthly tables of partitions months from 2027-01, all partman's, all empty."""
    from partman.audit import state_ddl

    with psycopg.connect(url, autocommit=True) as c:
        c.execute(state_ddl("public"))
        c.execute(
            """CREATE OR REPLACE PROCEDURE bench_make(n int, parts int) LANGUAGE plpgsql AS $$
               DECLARE s timestamptz;
               BEGIN
                 FOR t IN 1..n LOOP
                   EXECUTE format('CREATE TABLE %I (id bigint, at timestamptz NOT NULL) PARTITION BY RANGE (at)', 't' || t);
                   FOR p IN 0..parts - 1 LOOP
                     s := timestamptz '2027-01-01 00:00+00' + make_interval(months => p);
                     EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                                    't' || t || '_' || p, 't' || t, s, s + interval '1 month');
                     INSERT INTO partition_log (parent_schema, parent_name, partition_schema, partition_name,
                                                range_start, range_end)
                     VALUES ('public', 't' || t, 'public', 't' || t || '_' || p, s, s + interval '1 month');
                   END LOOP;
                   COMMIT;
                 END LOOP;
               END $$"""
        )
        c.execute("CALL bench_make(%s, %s)", (tables, partitions))


def future_partitions(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as c:
        return c.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                         " WHERE c.relispartition AND c.relname ~ '_([1-9]|1[0-5])$' ORDER BY 1, 2").fetchall()


def timed_statement(url: str, statement: sql.Composable, runs: int) -> list[float]:
    """Seconds of one statement, each run on a fresh connection (cold caches, as a fresh plan)."""
    out = []
    for _ in range(runs):
        with psycopg.connect(url) as c:
            c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            start = time.perf_counter()
            c.execute(statement).fetchall()
            out.append(time.perf_counter() - start)
    return out


def timed_chunks(url: str, relations: list[tuple[str, str]], runs: int) -> list[float]:
    """catalog.ask over the relations: fenced chunks, each in a savepoint, as the snapshot runs them."""
    from partman import catalog
    from partman.model import TableRef

    questions = catalog.presence_questions({i: TableRef(s, n) for i, (s, n) in enumerate(relations)})
    out = []
    for _ in range(runs):
        with psycopg.connect(url) as c:
            with c.transaction(), c.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                start = time.perf_counter()
                catalog.ask(cur, questions)
                out.append(time.perf_counter() - start)
    return out


def single(relations: list[tuple[str, str]]) -> sql.Composed:
    return sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}::int, EXISTS (SELECT 1 FROM {})").format(sql.Literal(i), sql.Identifier(s, n))
        for i, (s, n) in enumerate(relations)
    )


def plan_processes(url: str, tables: int, runs: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        specs = Path(tmp) / "specs"
        specs.mkdir()
        for t in range(1, tables + 1):
            (specs / f"t{t}.yaml").write_text(yaml.safe_dump({
                "table": f"t{t}", "partition_key": "at", "interval": "quarterly", "premake": "15 months",
                "environments": {"bench": {}}}))
        out = []
        for _ in range(runs):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "partman", "plan", "specs", "--env", "bench", "--database-url",
                                   url, "--now", NOW], cwd=tmp, capture_output=True, text=True)
            out.append(time.perf_counter() - start)
            if proc.returncode not in (0, 2) or "to drop" not in proc.stdout:
                raise SystemExit(f"partman plan failed: {proc.stderr or proc.stdout[-400:]}")
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="pg18,pg15")
    parser.add_argument("--tables", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for label, cluster in servers(args.servers):
        url = cluster.url()
        build(url, args.tables, args.partitions)
        relations = future_partitions(url)
        print(f"{label}: {args.tables} tables, {len(relations)} probes")
        for share in (4, 2):
            part = relations[: len(relations) // share]
            one = statistics.median(timed_statement(url, single(part), 1 if label == "pg15" else args.runs))
            fenced = statistics.median(timed_chunks(url, part, args.runs))
            print(f"  {len(part):5} probes: one UNION ALL {one:7.2f} s   fenced chunks {fenced:6.3f} s   ratio {one / fenced:7.1f}x")
        fenced = timed_chunks(url, relations, args.runs)
        print(f"  {len(relations):5} probes: fenced chunks {statistics.median(fenced):6.3f} s"
              f" (min {min(fenced):.3f}, max {max(fenced):.3f})")
        plans = plan_processes(url, args.tables, args.runs)
        print(f"  partman plan, interval change over {args.tables} tables: median {statistics.median(plans):.2f} s"
              f" (min {min(plans):.2f}, max {max(plans):.2f}); goal <= 5 s")


if __name__ == "__main__":
    main()
