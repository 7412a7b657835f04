"""How much do partition creates stall concurrent writers? CREATE … PARTITION OF vs LIKE + ATTACH PARTITION.

A writer inserts one row per transaction through the parent. A reader holds the parent for READER_S seconds
(an open transaction that read it). Meanwhile one partition is created, each way; the writer's worst insert
latency during that window is the stall. The raw cost of each way is measured without contention.

    .venv/bin/python bench/create_ddl.py [--servers pg18,pg15] [--reader 3] [--partitions 60]
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
from psycopg import sql

from _servers import servers
from _writer import Writer

PARENT = "events"


def setup(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"DROP TABLE IF EXISTS {PARENT} CASCADE")
        c.execute(
            f"CREATE TABLE {PARENT} (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, v text,"
            f" PRIMARY KEY (id, at)) PARTITION BY RANGE (at)"
        )
        c.execute(f"CREATE INDEX ON {PARENT} (v)")
        c.execute(f"CREATE TABLE {PARENT}_live PARTITION OF {PARENT} FOR VALUES FROM ('2000-01-01Z') TO ('2001-01-01Z')")


def bounds(i: int) -> tuple[datetime, datetime]:
    start = datetime(2030, 1, 1, tzinfo=timezone.utc) + timedelta(days=i)
    return start, start + timedelta(days=1)


def partition_of(c, i: int) -> None:
    lo, hi = bounds(i)
    c.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
        sql.Identifier(f"p{i}"), sql.Identifier(PARENT), sql.Literal(lo), sql.Literal(hi)))


def like_attach(c, i: int) -> None:
    lo, hi = bounds(i)
    c.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)").format(
        sql.Identifier(f"p{i}"), sql.Identifier(PARENT)))
    c.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
        sql.Identifier(PARENT), sql.Identifier(f"p{i}"), sql.Literal(lo), sql.Literal(hi)))


def raw_cost(url: str, create, n: int, offset: int) -> float:
    """Seconds per partition, one transaction per partition, no contention."""
    with psycopg.connect(url, autocommit=True) as c:
        t0 = time.perf_counter()
        for i in range(offset, offset + n):
            with c.transaction():
                create(c, i)
        return (time.perf_counter() - t0) / n


def stall(url: str, create, i: int, reader_s: float, lock_timeout_ms: int | None) -> tuple[float, float]:
    """(worst insert latency in ms while the DDL ran behind a long reader, seconds until the DDL finished)."""
    writer = Writer(url, f"INSERT INTO {PARENT} (at, v) VALUES ('2000-06-01Z', 'x')")
    writer.start()
    time.sleep(0.3)
    reader = psycopg.connect(url)
    reader.execute(f"SELECT count(*) FROM {PARENT}")  # holds ACCESS SHARE on the parent until commit
    release = threading.Timer(reader_s, reader.commit)
    release.start()
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as c:
        while True:
            try:
                with c.transaction():
                    if lock_timeout_ms:
                        c.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_timeout_ms}ms")))
                    create(c, i)
                break
            except psycopg.errors.LockNotAvailable:
                time.sleep(0.05)
    done = time.perf_counter() - t0
    release.join()
    time.sleep(0.3)
    writer.stop.set()
    writer.join()
    reader.close()
    during = [lat for start, lat in writer.samples if start >= t0 - 0.01]
    return max(during) * 1000, done


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", default="pg18,pg15")
    ap.add_argument("--reader", type=float, default=3.0, help="seconds the long reader holds the parent")
    ap.add_argument("--partitions", type=int, default=60, help="partitions per way for the raw cost")
    args = ap.parse_args()
    for label, cluster in servers(args.servers):
        url = cluster.url()
        setup(url)
        a = raw_cost(url, partition_of, args.partitions, 0)
        b = raw_cost(url, like_attach, args.partitions, 1000)
        print(f"\n{label}: raw cost per partition (PK + one index), {args.partitions} each")
        print(f"  PARTITION OF        {a * 1000:7.2f} ms")
        print(f"  LIKE + ATTACH       {b * 1000:7.2f} ms   ratio {b / a:.2f}x")
        print(f"{label}: worst insert while one create waits behind a {args.reader:g} s reader")
        for name, create, timeout, i in (
            ("PARTITION OF, no lock_timeout", partition_of, None, 2000),
            ("PARTITION OF, lock_timeout 100ms+retry", partition_of, 100, 2001),
            ("LIKE + ATTACH, lock_timeout 100ms", like_attach, 100, 2002),
        ):
            worst, took = stall(url, create, i, args.reader, timeout)
            print(f"  {name:<40} worst insert {worst:8.1f} ms   create finished after {took:5.2f} s")


if __name__ == "__main__":
    main()
