"""Writers' insert latency while partitions are created and dropped, with and without a 5 s reader holding the parent.

A writer inserts one row per transaction into the current partition. The work: a quarterly table whose spec
turns monthly, so next year's empty quarters are dropped and months created (creates and drops). It is done by
`partman apply`, and for contrast by the naive DDL (CREATE TABLE … PARTITION OF, DROP TABLE, no lock_timeout).
The baseline is the writer alone. Goal: partman's worst insert <= 2x the baseline's worst for creates, and
never above the first lock_timeout step (100 ms) for anything.

    .venv/bin/python bench/writer_latency.py [--servers pg18,pg15] [--reader 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
import yaml

from _servers import servers
from _writer import Writer

NOW = "2027-02-15T12:00:00+00:00"


def summary(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):6.2f} ms  p99 {p99:7.2f} ms  max {ms[-1]:8.2f} ms  ({len(ms)} inserts)"


def spec(directory: Path, interval: str, premake: str = "9 months") -> None:
    data = {"table": "events", "partition_key": "at", "interval": interval, "premake": premake,
            "columns": [{"name": "id", "type": "bigint", "identity": "always"}, {"name": "at", "type": "timestamptz", "not_null": True},
                        {"name": "v", "type": "text"}],
            "primary_key": ["id", "at"], "environments": {"bench": {}}}
    (directory / "events.yaml").write_text(yaml.safe_dump(data))


def fresh(admin: str, directory: Path, then: str = "monthly") -> str:
    """A quarterly table with 9 months ahead; the spec then becomes `then` (monthly: creates and drops;
    quarterly with a longer premake: creates only)."""
    name = f"w_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    spec(directory, "quarterly")
    partman(url, directory)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE INDEX ON events (v)")
    spec(directory, "monthly" if then == "monthly" else "quarterly", premake="9 months" if then == "monthly" else "36 months")
    return url


def partman(url: str, directory: Path) -> None:
    subprocess.run([sys.executable, "-m", "partman", "--quiet", "apply", str(directory), "--env", "bench",
                    "--database-url", url, "--now", NOW, "--auto-approve"], check=True, cwd=directory,
                   stdout=subprocess.DEVNULL)


def naive(url: str, _: Path) -> None:
    """The same change as hand-written DDL usually does it: no lock_timeout, locks on the parent."""
    with psycopg.connect(url, autocommit=True) as c:
        for q in ("q2", "q3", "q4"):
            c.execute(f"DROP TABLE events_2027_{q}")
        for m in range(4, 12):
            c.execute(f"CREATE TABLE naive_{m} PARTITION OF events FOR VALUES FROM ('2027-{m:02d}-01Z') TO ('2027-{m + 1:02d}-01Z')")


def measure(url: str, directory: Path, work, reader_s: float) -> list[float]:
    writer = Writer(url, "INSERT INTO events (at, v) VALUES ('2027-02-20Z', 'x')")
    writer.start()
    time.sleep(0.3)
    reader, release = None, None
    if reader_s:
        reader = psycopg.connect(url)
        reader.execute("SELECT count(*) FROM events")  # ACCESS SHARE on the parent and every partition
        release = threading.Timer(reader_s, reader.rollback)
        release.start()
    start = len(writer.samples)
    work(url, directory)
    if release:
        release.join()
    time.sleep(0.3)
    writer.stop.set()
    writer.join()
    if reader:
        reader.close()
    return [latency for _, latency in writer.samples[start:]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", default="pg18,pg15")
    ap.add_argument("--reader", type=float, default=5.0)
    args = ap.parse_args()
    for label, cluster in servers(args.servers):
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            url = fresh(cluster.url(), d)
            baseline = measure(url, d, lambda u, _: time.sleep(args.reader + 1), 0)
            print(f"\n{label}: {'writer alone':<52} {summary(baseline)}")
            for name, work, then in (
                ("partman apply, creates only", partman, "longer"),
                ("partman apply, creates and drops", partman, "monthly"),
                ("naive DDL (PARTITION OF, DROP), no lock_timeout", naive, "monthly"),
            ):
                for reader in (0, args.reader):
                    url = fresh(cluster.url(), d, then)
                    got = measure(url, d, work, reader)
                    with_reader = f"{reader:g} s reader" if reader else "no reader"
                    print(f"{label}: {name + ', ' + with_reader:<52} {summary(got)}   max/baseline {max(got) / max(baseline):6.1f}x")


if __name__ == "__main__":
    main()
