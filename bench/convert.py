"""Converting a live table (`convert: attach`) against the floor it cannot beat, while writers insert.

A plain table of --rows rows (primary key including the key, an identity, a secondary index, an index on the key
unless --no-key-index, a foreign key into it from another table, a view) is built once per server and copied for
each run. Each pair of runs, back to back, each while 4 writers insert one row per transaction through the table
with keys from a year ago to a month ahead:
  bare     on one copy: ADD CONSTRAINT … CHECK NOT VALID, then the timed ALTER TABLE … VALIDATE CONSTRAINT, which
           reads every row: the least any conversion that proves its bound must do
  partman  on another copy: `partman apply` of the spec with `convert: attach`, in its own process, timed whole
           (start-up, plan, CHECK, VALIDATE, swap, the foreign key's validation)
Without an index on the key, the plan reads the largest key with a scan of its own (the cutover must lie past it).
Prints per server the median of the paired ratios partman/bare with their spread (goal <= 1.2x), and the writers'
worst insert during the conversion against their worst in the same length of time alone before it (goal: under
the first ladder step, 100 ms). Writers' errors are counted (goal: none).

    .venv/bin/python bench/convert.py [--servers pg18,pg15] [--rows 10000000] [--runs 3]
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

from _servers import servers
from _writer import Writer

SCHEMA = """
CREATE TABLE accounts (id int PRIMARY KEY);
INSERT INTO accounts SELECT generate_series(1, 1000);
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, account_id int NOT NULL,
                     payload text, PRIMARY KEY (id, at));
INSERT INTO events (at, account_id, payload)
  SELECT now() - interval '400 days' + g * (interval '400 days' / {rows}), 1 + g % 1000, md5(g::text)
    FROM generate_series(1, {rows}) g;
CREATE INDEX events_account ON events (account_id, at);
{key_index}
CREATE TABLE receipts (event_id bigint, event_at timestamptz, FOREIGN KEY (event_id, event_at) REFERENCES events);
INSERT INTO receipts SELECT id, at FROM events WHERE id % 10000 = 0;
CREATE VIEW latest AS SELECT id, at FROM events WHERE at > now() - interval '1 day';

"""
WRITE = ("INSERT INTO events (at, account_id, payload)"
         " VALUES (now() - interval '365 days' + random() * interval '395 days', 1 + (random() * 999)::int, 'w')")
STEP_MS = 100


def copy(admin: str, template: str) -> tuple[str, str]:
    name = f"c_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name, psycopg.conninfo.make_conninfo(admin, dbname=name)


def drop(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def bare(url: str) -> float:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("ALTER TABLE events ADD CONSTRAINT cut CHECK (at < '2100-01-01Z') NOT VALID")
        t0 = time.perf_counter()
        c.execute("ALTER TABLE events VALIDATE CONSTRAINT cut")
        return time.perf_counter() - t0


def partman(url: str, work: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "partman", "--quiet", "apply", "specs", "--database-url", url,
                           "--auto-approve", "--lock-timeout-ms", str(STEP_MS)], cwd=work, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"partman apply exited {proc.returncode}: {proc.stderr.strip()}")
    return time.perf_counter() - t0


def startup(work: Path) -> float:
    """The interpreter's start and partman's imports for an apply: what any run pays before its first query."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import partman.cli, partman.commands, partman.apply, psycopg"], cwd=work, check=True)
    return time.perf_counter() - t0


def with_writers(url: str, work: Path, run) -> tuple[float, list, list, list]:
    """run(url, work) timed, with the writers' samples before and during it and their errors."""
    writers = [Writer(url, WRITE, f"writer{i}") for i in range(4)]
    for w in writers:
        w.start()
        w.ready.wait(10)
    time.sleep(2.0)
    t0 = time.perf_counter()
    took = run(url, work)
    time.sleep(0.2)
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(10)
    before = [lat for w in writers for start, lat in w.samples if t0 - took <= start < t0]
    during = [lat for w in writers for start, lat in w.samples if t0 <= start < t0 + took]
    return took, before, during, [e for w in writers for e in w.errors]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="pg18,pg15")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-key-index", action="store_true", help="no index on the key: the plan scans for the largest key")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "specs").mkdir()
        (work / "specs" / "events.yaml").write_text(yaml.safe_dump({
            "table": "public.events", "partition_key": "at", "interval": "monthly", "premake": "3 months",
            "convert": "attach"}))
        for label, cluster in servers(args.servers):
            admin = cluster.url()
            template = f"tpl_{uuid.uuid4().hex[:6]}"
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{template}"')
            with psycopg.connect(psycopg.conninfo.make_conninfo(admin, dbname=template), autocommit=True) as c:
                key_index = "" if args.no_key_index else "CREATE INDEX events_at ON events (at);"
                c.execute(SCHEMA.format(rows=args.rows, key_index=key_index))
                c.execute("VACUUM ANALYZE events")
            ratios, worst_before, worst_during, errors, walls, starts = [], [], [], 0, [], []
            for _ in range(args.runs):
                name, url = copy(admin, template)
                floor, *_ = with_writers(url, work, lambda u, _: bare(u))
                drop(admin, name)
                name, url = copy(admin, template)
                took, before, during, errs = with_writers(url, work, partman)
                drop(admin, name)
                ratios.append(took / floor)
                starts.append(startup(work))
                walls.append((took, floor))
                worst_before.append(max(before) * 1000 if before else 0.0)
                worst_during.append(max(during) * 1000 if during else 0.0)
                errors += len(errs)
            pairs = "  ".join(f"{t:.2f}/{f:.2f} s" for t, f in walls)
            index = "no index on the key" if args.no_key_index else "an index on the key"
            print(f"{label}: {args.rows:,} rows, {index}, {args.runs} pairs (partman/bare VALIDATE: {pairs})")
            print(f"  partman conversion / bare VALIDATE: median {statistics.median(ratios):.2f}x"
                  f" (spread {min(ratios):.2f}x-{max(ratios):.2f}x; goal <= 1.2x)")
            net = [(t - st) / f for (t, f), st in zip(walls, starts)]
            print(f"  without the interpreter's start and imports ({statistics.median(starts):.2f} s): median"
                  f" {statistics.median(net):.2f}x (spread {min(net):.2f}x-{max(net):.2f}x)")
            print(f"  writers' worst insert: during the conversion {max(worst_during):.1f} ms (per run:"
                  f" {', '.join(f'{x:.1f}' for x in worst_during)}), alone before it {max(worst_before):.1f} ms;"
                  f" goal < {STEP_MS} ms; writer errors: {errors}")


if __name__ == "__main__":
    main()
