"""`partman apply` making 100 tables x 12 monthly partitions vs replaying the same DDL raw with psql.

Each side starts from the same 100 empty parents (primary key and one index) in a fresh database and is timed
as a whole process. The raw script is exactly the DDL partman runs (LIKE + ATTACH per partition, rendered
by partman.ddl from partman's own plan), one statement after another, with no bookkeeping at all.
Each line also gives the client process's CPU time (user + system, median): psql's, or partman's own; and the
server's: the CPU of the backends the run's connections had, read from the postmaster's reaped children.

    .venv/bin/python bench/apply_vs_raw.py [--servers pg18,pg15] [--tables 100] [--runs 3] [--parallelism N]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import psycopg
import yaml

from _compiled import byte_compile
from _servers import servers

from partman import pool

NOW = "2027-01-15T00:00:00+00:00"  # with premake 11 months: January to December, 12 partitions a table


def fresh_database(admin_url: str, tables: int) -> str:
    name = f"b_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as c:
        for t in range(tables):
            c.execute(
                f"CREATE TABLE t{t} (id bigint NOT NULL, at timestamptz NOT NULL, v text, PRIMARY KEY (id, at))"
                f" PARTITION BY RANGE (at); CREATE INDEX ON t{t} (v)"
            )
        # partman's state tables exist on both sides, so neither pays for creating them in the timed run
        from partman.audit import state_ddl

        c.execute(state_ddl("public"))
    return url


def write_specs(directory: Path, tables: int) -> None:
    for t in range(tables):
        spec = {"table": f"t{t}", "partition_key": "at", "interval": "monthly", "premake": "11 months",
                "environments": {"bench": {}}}
        (directory / f"t{t}.yaml").write_text(yaml.safe_dump(spec))


def raw_script(url: str, specs_dir: Path) -> str:
    """The DDL of partman's own plan for this database, as a plain script."""
    from partman import catalog, ddl, planner
    from partman.spec import load_specs

    specs = load_specs([specs_dir], "bench")
    now = datetime.fromisoformat(NOW)
    with psycopg.connect(url, autocommit=True) as c:
        plan = planner.plan(specs, catalog.snapshot(c, specs, now=now, to_probe=planner.presence_needed), now=now, env="bench")
        lines = []
        for t in plan.tables:
            for a in t.actions:
                lines += [s.as_string(c) + ";" for s in ddl.create_partition(t.table, a.partition, a.bounds)]
    return "\n".join(lines) + "\n"


CLIENT_CPU: dict[str, list[float]] = {}  # per column: the client process's CPU seconds (user + system) per run
SERVER_CPU: dict[str, list[float]] = {}  # per column: the server backends' CPU seconds per run


def server_cpu(data: Path) -> float:
    """The CPU seconds of the postmaster's exited children (cutime + cstime): a backend's, once its session ended."""
    pid = (data / "postmaster.pid").read_text().split()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def run(cmd: list[str], cwd: Path, column: str, data: Path) -> float:
    before, server = resource.getrusage(resource.RUSAGE_CHILDREN), server_cpu(data)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=cwd)
    took = time.perf_counter() - t0
    time.sleep(0.2)  # the postmaster reaps the run's backends just after they exit
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CLIENT_CPU.setdefault(column, []).append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    SERVER_CPU.setdefault(column, []).append(server_cpu(data) - server)
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", default="pg18,pg15")
    ap.add_argument("--tables", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--parallelism", type=int, default=None,
                    help="the parallel column's --parallelism (default: none given, partman's default)")
    args = ap.parse_args()
    byte_compile()
    for label, cluster in servers(args.servers):
        psql = str(cluster.bindir / "psql")
        times: dict[str, list[float]] = {"raw": [], "serial": [], "parallel": []}
        with tempfile.TemporaryDirectory() as tmp:
            specs = Path(tmp)
            write_specs(specs, args.tables)
            for _ in range(args.runs):
                url = fresh_database(cluster.url(), args.tables)
                script = specs / "raw.sql"
                script.write_text(raw_script(url, specs))
                count = script.read_text().count("ATTACH PARTITION")
                times["raw"].append(run([psql, url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)], specs, "raw",
                                        cluster.data))
                for column, workers in (("serial", 1), ("parallel", args.parallelism)):
                    url = fresh_database(cluster.url(), args.tables)
                    asked = ["--parallelism", str(workers)] if workers else []
                    times[column].append(run([sys.executable, "-m", "partman", "--quiet", "apply", str(specs), "--env",
                                              "bench", "--database-url", url, "--now", NOW, "--auto-approve",
                                              "--allow-clock-skew", *asked], specs, column, cluster.data))
        raw = statistics.median(times["raw"])
        print(f"\n{label}: {count} partitions in {args.tables} tables (median of {args.runs})")
        print(f"  {'raw DDL replayed by psql':<30} {raw:6.2f} s   runs: {', '.join(f'{t:.2f}' for t in times['raw'])}"
              f"   client CPU {statistics.median(CLIENT_CPU.pop('raw')):.2f} s"
              f"   server CPU {statistics.median(SERVER_CPU.pop('raw')):.2f} s")
        with psycopg.connect(cluster.url()) as c:
            default = pool.size(c, args.parallelism, args.tables)
        shown = f"-j {args.parallelism}" if args.parallelism else f"default (-j {default})"
        for column, label_ in (("serial", "partman apply -j 1"), ("parallel", f"partman apply {shown}")):
            ours = statistics.median(times[column])
            # Each run pairs them back to back; the machine's speed drifts between runs more than within a run.
            ratios = [p / r for p, r in zip(times[column], times["raw"])]
            paired = statistics.median(ratios)
            print(f"  {label_:<30} {ours:6.2f} s   runs: {', '.join(f'{t:.2f}' for t in times[column])}"
                  f"   {ours / raw:.2f}x raw (paired {paired:.2f}x, {min(ratios):.2f}-{max(ratios):.2f}; goal <= 1.0x)"
                  f"   client CPU {statistics.median(CLIENT_CPU.pop(column)):.2f} s"
                  f"   server CPU {statistics.median(SERVER_CPU.pop(column)):.2f} s")


if __name__ == "__main__":
    main()
