"""`partman plan` over 30,000 partitions in 300 tables vs the bare catalog query, each on a fresh connection.

Both sides are whole processes (interpreter, imports, connect, read), timed alike, back to back in each run; the
ratio is partman's whole plan (catalog snapshot, planning, rendering) over reading the partitions' bounds.
The statement count of partman's snapshot is printed for 3 and for 300 tables: it must not grow.
partman's modules are byte-compiled first, as an installed package's are (_compiled.py).

    .venv/bin/python bench/plan_scale.py [--servers pg18,pg15] [--tables 300] [--partitions 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import yaml

from _compiled import byte_compile
from _servers import servers

ROOT = Path(__file__).resolve().parent.parent
# The bare query as people write it (and as psql's \d+ does): pg_get_expr with the partition's OID, which makes
# the server open every partition. RELID_ZERO is the same query the way partman's snapshot runs it.
BARE = """
import sys, psycopg
with psycopg.connect(sys.argv[1]) as c:
    rows = c.execute(
        "SELECT i.inhparent::regclass, c.relname, pg_get_expr(c.relpartbound, " + sys.argv[3] + ") FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = ANY(%s::regclass[])", (sys.argv[2].split(","),)
    ).fetchall()
print(len(rows))
"""


def build(url: str, tables: int, partitions: int) -> None:
    """tables monthly-partitioned tables, partitions partitions each (from 2020-01), all recorded as partman's."""
    from partman.audit import state_ddl

    with psycopg.connect(url, autocommit=True) as c:
        c.execute(state_ddl("public"))
        c.execute(
            """CREATE OR REPLACE PROCEDURE bench_make(n int, parts int) LANGUAGE plpgsql AS $$
               BEGIN
                 FOR t IN 1..n LOOP
                   EXECUTE format('CREATE TABLE %I (id bigint, at timestamptz NOT NULL) PARTITION BY RANGE (at)', 't' || t);
                   FOR p IN 0..parts - 1 LOOP
                     EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', 't' || t || '_' || p,
                       't' || t, timestamptz '2020-01-01 00:00+00' + make_interval(months => p),
                       timestamptz '2020-01-01 00:00+00' + make_interval(months => p + 1));
                     INSERT INTO partition_log (parent_schema, parent_name, partition_schema, partition_name, range_start, range_end)
                     VALUES ('public', 't' || t, 'public', 't' || t || '_' || p,
                             timestamptz '2020-01-01 00:00+00' + make_interval(months => p),
                             timestamptz '2020-01-01 00:00+00' + make_interval(months => p + 1));
                   END LOOP;
                   COMMIT;
                 END LOOP;
               END $$"""
        )
        c.execute("CALL bench_make(%s, %s)", (tables, partitions))
        c.execute("VACUUM ANALYZE")
        c.execute("CHECKPOINT")  # the build's dirty pages written now, not by the checkpointer during the first runs


def write_specs(directory: Path, tables: int, partitions: int) -> None:
    # Layouts and the spec agree (monthly, through the last partition), so the plan is empty: pure reading.
    end = datetime(2020 + partitions // 12, 1 + partitions % 12, 1, tzinfo=timezone.utc)
    for t in range(1, tables + 1):
        spec = {"table": f"t{t}", "partition_key": "at", "interval": "monthly", "premake": "0 days",
                "environments": {"bench": {}}}
        (directory / f"t{t}.yaml").write_text(yaml.safe_dump(spec))
    (directory / "now").write_text((end.replace(month=1) if end.month > 1 else end).isoformat())


def timed(cmds: dict[str, list[str]], runs: int, cwd: Path) -> dict[str, list[float]]:
    """Each run times every command once, back to back: the machine's speed drifts between runs more than within one."""
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=cwd)
            samples[name].append(time.perf_counter() - t0)
    return samples


def paired(ours: list[float], theirs: list[float]) -> str:
    ratios = [a / b for a, b in zip(ours, theirs)]
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def statements(url: str, specs_dir: Path, tables: list[str]) -> int:
    from partman.catalog import snapshot
    from partman.planner import presence_needed
    from partman.spec import load_specs

    class Counting(psycopg.Cursor):
        n = 0

        def execute(self, *a, **k):
            Counting.n += 1
            return super().execute(*a, **k)

    specs = [s for s in load_specs([specs_dir], "bench") if s.table.name in tables]
    # Both connections count: a large read asks some of its questions on a companion (partman/companion.py).
    with psycopg.connect(url, autocommit=True, cursor_factory=Counting) as c:
        snapshot(c, specs, now=datetime(2028, 1, 1, tzinfo=timezone.utc), to_probe=presence_needed,
                 another=lambda: psycopg.connect(url, autocommit=True, cursor_factory=Counting))
    return Counting.n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", default="pg18")
    ap.add_argument("--tables", type=int, default=300)
    ap.add_argument("--partitions", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    byte_compile()
    for label, cluster in servers(args.servers):
        url = cluster.url()
        t0 = time.perf_counter()
        build(url, args.tables, args.partitions)
        print(f"\n{label}: built {args.tables} x {args.partitions} partitions in {time.perf_counter() - t0:.0f} s")
        with tempfile.TemporaryDirectory() as tmp:
            specs = Path(tmp)
            write_specs(specs, args.tables, args.partitions)
            now = (specs / "now").read_text()
            (specs / "now").unlink()
            names = ",".join(f"t{t}" for t in range(1, args.tables + 1))
            t = timed({"bare": [sys.executable, "-c", BARE, url, names, "c.oid"],
                       "bare0": [sys.executable, "-c", BARE, url, names, "0"],
                       "plan": [sys.executable, "-m", "partman", "plan", str(specs), "--env", "bench", "--database-url",
                                url, "--now", now]}, args.runs, specs)
            few, many = statements(url, specs, ["t1", "t2", "t3"]), statements(url, specs, [f"t{t}" for t in range(1, args.tables + 1)])
        bare, bare0, plan = (statistics.median(t[k]) for k in ("bare", "bare0", "plan"))
        print(f"  bare catalog query, fresh process+connection  {bare:6.2f} s (median of {args.runs})")
        print(f"  the same with pg_get_expr(relpartbound, 0)    {bare0:6.2f} s")
        print(f"  partman plan, fresh process+connection        {plan:6.2f} s   ratio {plan / bare:.2f}x (goal <= 1.5x);"
              f" {plan / bare0:.2f}x the relid-0 query")
        print(f"  median of paired ratios (range): {paired(t['plan'], t['bare'])} the bare query,"
              f" {paired(t['plan'], t['bare0'])} the relid-0 query (goal <= 2.0x)")
        print(f"  snapshot statements: {few} for 3 tables, {many} for {args.tables} tables")


if __name__ == "__main__":
    main()
