"""Writers' insert latency while partman creates, detaches and drops partitions, with and without a long reader.

Part 1 (as before): one writer inserts one row per transaction into the current partition. The work: a
quarterly table whose spec turns monthly, so next year's empty quarters are dropped and months created
(creates and drops), or a longer premake (creates only). It is done by `partman apply`, and for contrast by
the naive DDL (CREATE TABLE … PARTITION OF, DROP TABLE, no lock_timeout). The baseline is the writer alone.

Part 2 (retirement): a monthly table, retention 2 months with a grace of 0 days, made at 2026-10-15 and applied
at 2027-02-15: `partman apply` creates four months ahead and detaches and drops the two expired ones, without a
default partition (DETACH … CONCURRENTLY) and with one (creates one at a time beside it, ATTACH locking the
default; a plain DETACH). Meanwhile writers insert one row per transaction:
  current            through the parent, into the current partition
  retiring           directly into the oldest retiring partition (the table itself)
  retiring/parent    through the parent, into the same expired range (unusual: once the detach is pending such
                     rows go to the default partition, or fail)
  default            through the parent, rows no partition takes (2099), into the default partition
Failed statements (the partition dropped, no partition for the row) are counted apart, never in the percentiles;
the verdict takes the worst of both, since a statement that queued and then failed made its writer wait too.
A reader holds, for --reader seconds, the parent and every partition, or only the retiring partition, or only
the default, or the parent pruned to the current partition (a report over this month). Goal: every writer's
worst insert <= the first lock_timeout step (--lock-timeout-ms, 100 ms). The naive DDL with the same reader
is the contrast. --trace (adds load: not for the figures) samples pg_locks every 5 ms and has the server log
statements over 20 ms, and names for each writer's worst insert what it queued behind, how long it spent in
the server, and the partman statement that ended (or timed out) as it ended.

    .venv/bin/python bench/writer_latency.py [--servers pg18,pg15] [--reader 5] [--part 1,2] [--trace]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import psycopg
import yaml

from _servers import servers
from _writer import Writer

NOW = "2027-02-15T12:00:00+00:00"
RETIRE_MADE = "2026-10-15T12:00:00+00:00"  # the retirement table's first apply: October 2026 … February 2027
STEP_MS = 100  # partman's default --lock-timeout-ms: the first (and every) ladder step


def summary(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):6.2f} ms  p99 {p99:7.2f} ms  max {ms[-1]:8.2f} ms  ({len(ms)} inserts)"


def spec(directory: Path, interval: str, premake: str = "9 months", **extra) -> None:
    data = {"table": "events", "partition_key": "at", "interval": interval, "premake": premake,
            "columns": [{"name": "id", "type": "bigint", "identity": "always"}, {"name": "at", "type": "timestamptz", "not_null": True},
                        {"name": "v", "type": "text"}],
            "primary_key": ["id", "at"], "environments": {"bench": {}}, **extra}
    (directory / "events.yaml").write_text(yaml.safe_dump(data))


def database(admin: str) -> str:
    name = f"w_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return psycopg.conninfo.make_conninfo(admin, dbname=name)


def fresh(admin: str, directory: Path, then: str = "monthly") -> str:
    """A quarterly table with 9 months ahead; the spec then becomes `then` (monthly: creates and drops;
    quarterly with a longer premake: creates only)."""
    url = database(admin)
    spec(directory, "quarterly")
    partman(url, directory)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE INDEX ON events (v)")
    spec(directory, "monthly" if then == "monthly" else "quarterly", premake="9 months" if then == "monthly" else "36 months")
    return url


def run_partman(url: str, directory: Path, now: str = NOW, step_ms: int = STEP_MS) -> subprocess.CompletedProcess:
    # --allow-clock-skew: the clock is pinned on purpose, months away from the server's.
    return subprocess.run([sys.executable, "-m", "partman", "--quiet", "apply", str(directory), "--env", "bench",
                           "--database-url", url, "--now", now, "--allow-clock-skew", "--auto-approve",
                           "--lock-timeout-ms", str(step_ms)],
                          cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)


def partman(url: str, directory: Path) -> int:
    proc = run_partman(url, directory)
    if proc.returncode:
        raise RuntimeError(f"partman apply exited {proc.returncode}: {proc.stderr.strip()}")
    return 0


def naive(url: str, _: Path) -> int:
    """The same change as hand-written DDL usually does it: no lock_timeout, locks on the parent."""
    with psycopg.connect(url, autocommit=True) as c:
        for q in ("q2", "q3", "q4"):
            c.execute(f"DROP TABLE events_2027_{q}")
        for m in range(4, 12):
            c.execute(f"CREATE TABLE naive_{m} PARTITION OF events FOR VALUES FROM ('2027-{m:02d}-01Z') TO ('2027-{m + 1:02d}-01Z')")
    return 0


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


# ---------------------------------------------------------------------------------------------- part 2: retirement

CURRENT_AT, RETIRING_AT, RETIRING_PARENT_AT, DEFAULT_AT = "2027-02-20Z", "2026-10-20Z", "2026-10-21Z", "2099-06-01Z"


@dataclass
class Layout:
    """The retirement table as made at RETIRE_MADE: names found from the rows, never assumed."""
    url: str
    default: Optional[str]
    current: str
    retiring: str
    partitions: list[str]


def partitions(c) -> list[str]:
    return [r[0] for r in c.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass ORDER BY 1").fetchall()]


def fresh_retire(admin: str, directory: Path, with_default: bool) -> Layout:
    """Monthly, made at 2026-10-15 with 4 months ahead (Oct 2026 … Feb 2027); the spec then keeps 2 months
    (grace 0 days) at 2027-02-15: Oct and Nov are detached and dropped, Mar … Jun created."""
    url = database(admin)
    retention = {"retention": "2 months", "retention_grace": "0 days"}
    spec(directory, "monthly", premake="4 months", **retention)
    proc = run_partman(url, directory, now=RETIRE_MADE)
    if proc.returncode:
        raise RuntimeError(f"setting up: partman apply exited {proc.returncode}: {proc.stderr.strip()}")
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE INDEX ON events (v)")
        if with_default:
            c.execute("CREATE TABLE events_default PARTITION OF events DEFAULT")
        ats = [CURRENT_AT, RETIRING_AT] + ([DEFAULT_AT] if with_default else [])
        c.execute("INSERT INTO events (at, v) SELECT a::timestamptz, 'seed' FROM unnest(%s::text[]) a, generate_series(1, 100)", (ats,))
        def holder(at: str) -> str:
            return c.execute("SELECT tableoid::regclass::text FROM events WHERE at = %s::timestamptz LIMIT 1", (at,)).fetchone()[0]
        current, retiring = holder(CURRENT_AT), holder(RETIRING_AT)
        names = partitions(c)
    return Layout(url, "events_default" if with_default else None, current, retiring, names)


def naive_retire(layout: Layout) -> Callable[[str, Path], int]:
    """The same change by hand: DROP TABLE of the expired partitions, CREATE TABLE … PARTITION OF, no lock_timeout."""
    def work(url: str, _: Path) -> int:
        with psycopg.connect(url, autocommit=True) as c:
            for name in layout.partitions[:2]:  # October and November 2026
                c.execute(f'DROP TABLE "{name}"')
            for m in range(3, 7):
                c.execute(f"CREATE TABLE naive_{m} PARTITION OF events FOR VALUES FROM ('2027-{m:02d}-01Z') TO ('2027-{m + 1:02d}-01Z')")
        return 0
    return work


class LockSampler(threading.Thread):
    """Every few ms: each backend of the database waiting for a lock, what it waits for, and who blocks it
    (pg_blocking_pids: holders and the requests queued ahead of it), with their statements."""

    QUERY = r"""
    SELECT w.pid, l.locktype, coalesce(l.relation::regclass::text, l.locktype), l.mode,
           (SELECT array_agg(format('%s %s [%s%s]: %s', b.pid, b.application_name, b.state,
                                    CASE WHEN b.wait_event_type = 'Lock' THEN ', itself waiting for a lock' ELSE '' END,
                                    left(regexp_replace(b.query, '\s+', ' ', 'g'), 150)) ORDER BY b.pid)
              FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(w.pid)))
      FROM pg_stat_activity w JOIN pg_locks l ON l.pid = w.pid AND NOT l.granted
     WHERE w.datname = current_database() AND w.pid <> pg_backend_pid()
    """

    def __init__(self, url: str, interval: float = 0.005):
        super().__init__(daemon=True)
        self.url, self.interval, self.stop, self.samples = url, interval, threading.Event(), []

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name="sampler") as c:
            while not self.stop.is_set():
                t = time.perf_counter()
                rows = c.execute(self.QUERY).fetchall()
                if rows:
                    self.samples.append((t, rows))
                time.sleep(self.interval)

    def waits(self, pid: int, t0: float, t1: float) -> list[tuple[str, int]]:
        """What backend pid was seen waiting for between t0 and t1, and in how many samples."""
        seen = collections.Counter()
        for t, rows in self.samples:
            if t0 - 0.002 <= t <= t1:
                for wpid, _, rel, mode, blockers in rows:
                    if wpid == pid:
                        seen[f"{mode} on {rel}, behind " + "; ".join(blockers or ["(no one: just released)"])] += 1
        return seen.most_common()


WALL = time.time() - time.perf_counter()  # perf_counter() + WALL: seconds since the epoch, as the server logs them
_PREFIX = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC \[(\d+)\] (\S*) ?(LOG|ERROR|STATEMENT):  (.*)$")
_DURATION = re.compile(r"^duration: ([\d.]+) ms  (?:statement|(?:parse|bind|execute) [^:]*): (.*)$")


class ServerLog:
    """With --trace, the server logs every statement over 20 ms with its backend and application (partman's
    statements and the writers' slow inserts), so a slow insert's time in the server is told from the client's."""

    def __init__(self, admin: str, path: Path):
        self.path = path
        with psycopg.connect(admin, autocommit=True) as c:
            for name, value in (("log_min_duration_statement", "20ms"), ("log_line_prefix", "%m [%p] %a "),
                                ("log_timezone", "UTC")):
                c.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            c.execute("SELECT pg_reload_conf()")
        time.sleep(0.2)
        self.mark()

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def entries(self) -> list[tuple[float, int, str, float, str]]:
        """(end, pid, application, duration s or None for a failed statement, statement) logged since mark()."""
        import datetime as dt
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode(errors="replace")
        out, failed = [], {}
        for line in text.splitlines():
            m = _PREFIX.match(line)
            if not m:
                continue
            end = dt.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.timezone.utc).timestamp()
            pid, app, level, rest = int(m[2]), m[3], m[4], m[5]
            if level == "LOG" and (d := _DURATION.match(rest)):
                out.append((end, pid, app, float(d[1]) / 1000, d[2][:150]))
            elif level == "ERROR":
                failed[pid] = rest
            elif level == "STATEMENT" and pid in failed:  # a failed statement: its end, and why (lock timeout)
                out.append((end, pid, app, None, f"{failed.pop(pid)}: {rest[:150]}"))
        return out


@dataclass
class Result:
    work_s: float
    exit: int
    stderr: str
    writers: dict[str, Writer] = field(default_factory=dict)
    window: dict[str, tuple[int, int]] = field(default_factory=dict)  # samples and errors before the work began


def measure_all(url: str, directory: Path, work: Callable[[str, Path], object], statements: dict[str, str],
                reader_sql: Optional[str], reader_s: float, sampler: Optional[LockSampler]) -> Result:
    writers = {name: Writer(url, statement, name=name) for name, statement in statements.items()}
    for w in writers.values():
        w.start()
    for w in writers.values():
        if not w.ready.wait(30):
            raise RuntimeError(f"writer {w.name} did not connect")
    if sampler:
        sampler.start()
    time.sleep(0.3)
    reader, release = None, None
    if reader_sql:
        reader = psycopg.connect(url, application_name="reader")
        reader.execute(reader_sql)  # ACCESS SHARE on what it reads, until rolled back
        release = threading.Timer(reader_s, reader.rollback)
        release.start()
    window = {name: (len(w.samples), len(w.errors)) for name, w in writers.items()}
    t0 = time.perf_counter()
    out = work(url, directory)
    work_s = time.perf_counter() - t0
    if release:
        release.join()
    time.sleep(0.3)
    for w in writers.values():
        w.stop.set()
    for w in writers.values():
        w.join()
    if sampler:
        sampler.stop.set()
        sampler.join()
    if reader:
        reader.close()
    code, stderr = (out.returncode, out.stderr.strip()) if isinstance(out, subprocess.CompletedProcess) else (int(out or 0), "")
    return Result(work_s, code, stderr, writers, window)


def _short(message: str) -> str:
    return re.sub(r'"[^"]*"', '"…"', message)


def report(label: str, title: str, result: Result, step_ms: int, sampler: Optional[LockSampler], contrast: bool,
           done: str, logged: Optional[list] = None) -> None:
    print(f"\n{label}: {title}")
    status = f"exit {result.exit}" + (f" ({result.stderr})" if result.exit else "")
    print(f"    work: {status} in {result.work_s:.2f} s; {done}")
    print(f"    {'writer':<18} {'p50':>9} {'p99':>10} {'max':>11} {'inserts':>8} {f'>{step_ms // 2}ms':>7} {'errors':>7}   slowest error, messages")
    verdicts = []
    for name, w in result.writers.items():
        s0, e0 = result.window[name]
        ok = [(t, lat) for t, lat in w.samples[s0:]]
        bad = w.errors[e0:]
        ms = sorted(lat * 1000 for _, lat in ok)
        if ms:
            p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
            row = f"{statistics.median(ms):6.2f} ms {p99:7.2f} ms {ms[-1]:8.2f} ms"
        else:
            row = f"{'-':>9} {'-':>10} {'-':>11}"
        kinds = collections.Counter(_short(m) for _, _, m in bad)
        err = (f"{max(lat for _, lat, _ in bad) * 1000:7.2f} ms, " + "; ".join(f"{n}× {m}" for m, n in kinds.most_common(2))) if bad else ""
        stalls = sum(x > step_ms / 2 for x in ms)
        print(f"    {name:<18} {row} {len(ms):>8} {stalls:>7} {len(bad):>7}   {err}")
        worst_ok = max((lat for _, lat in ok), default=0.0)
        worst_bad = max((lat for _, lat, _ in bad), default=0.0)
        worst = max(worst_ok, worst_bad)
        which = (ok + [(t, lat) for t, lat, _ in bad])
        at = max(which, key=lambda x: x[1]) if which else None
        verdicts.append((name, w, worst, worst_bad > worst_ok, at))
    for name, w, worst, was_error, at in verdicts:
        worst_ms = worst * 1000
        good = worst_ms <= step_ms
        kind = "failed statement" if was_error else "insert"
        line = (f"    verdict {name:<18} worst {kind} {worst_ms:8.2f} ms {'<=' if good else '> '} {step_ms} ms (first ladder step):"
                f" {'yes' if good else 'NO'}, margin {step_ms - worst_ms:+.2f} ms")
        print(line + ("  (contrast)" if contrast else ""))
        if sampler and at and (not good or worst_ms > step_ms / 2):
            waits = sampler.waits(w.pid, at[0], at[0] + at[1])
            if not waits:
                print(f"        {name}: no lock wait sampled during its worst insert (CPU or scheduling, not a lock queue)")
            for what, n in waits[:3]:
                print(f"        {name} waited for {what}  [{n} samples]")
            if logged is not None:
                start, end = at[0] + WALL, at[0] + at[1] + WALL
                mine = [e for e in logged if e[1] == w.pid and start - 0.01 <= e[0] <= end + 0.05]
                slow = [f"{e[3] * 1000:.1f} ms" for e in mine if e[3] is not None]
                failed = sum(e[3] is None for e in mine)
                print(f"        {name} in the server: " + (", ".join(slow) if slow else
                      "under 20 ms (the rest of its time was spent in the client or waiting for a CPU)")
                      + (f" (and {failed} failed statements around it)" if failed else ""))
                for e in logged:
                    if e[2] == "partman" and e[0] - (e[3] or 0) <= end + 0.005 and e[0] >= start:
                        took = "failed" if e[3] is None else f"{e[3] * 1000:.1f} ms"
                        print(f"        partman's statement ending {(e[0] - end) * 1000:+6.1f} ms from the insert's end ({took}): {e[4]}")


READERS = {
    "parent": "SELECT count(*) FROM events",  # the parent, every partition and the default
    "retiring": 'SELECT count(*) FROM "{retiring}"',
    "default": 'SELECT count(*) FROM "{default}"',
    "pruned": "SELECT count(*) FROM events WHERE at >= '2027-02-01Z' AND at < '2027-03-01Z'",  # parent + current only
}
READER_TEXT = {
    "parent": "a {s:g} s reader holding the parent (and every partition)",
    "retiring": "a {s:g} s reader holding only the retiring partition",
    "default": "a {s:g} s reader holding only the default partition",
    "pruned": "a {s:g} s reader holding the parent pruned to the current partition",
}


def retirement(label: str, admin: str, d: Path, reader_s: float, step_ms: int, log: Optional[ServerLog]) -> None:
    trace = log is not None
    for with_default in (False, True):
        shape = ("default partition: creates one at a time beside it, plain DETACH" if with_default
                 else "no default partition: DETACH CONCURRENTLY")
        readers = ["parent", "retiring"] + (["default"] if with_default else []) + ["pruned"]
        runs = [("partman", r) for r in readers] + [("naive", "parent")]
        for how, reader in runs:
            layout = fresh_retire(admin, d, with_default)
            statements = {
                "current": f"INSERT INTO events (at, v) VALUES ('{CURRENT_AT}', 'w')",
                "retiring": f"INSERT INTO \"{layout.retiring}\" (id, at, v) OVERRIDING SYSTEM VALUE"
                            f" VALUES (nextval(pg_get_serial_sequence('events', 'id')), '{RETIRING_AT}', 'w')",
                "retiring/parent": f"INSERT INTO events (at, v) VALUES ('{RETIRING_PARENT_AT}', 'w')",
            }
            if with_default:
                statements["default"] = f"INSERT INTO events (at, v) VALUES ('{DEFAULT_AT}', 'w')"
            sql = READERS[reader].format(retiring=layout.retiring, default=layout.default)
            sampler = LockSampler(layout.url) if trace else None
            if how == "partman":
                work = lambda u, dd: run_partman(u, dd, step_ms=step_ms)
                title = f"retirement, {shape}; partman apply; {READER_TEXT[reader].format(s=reader_s)}"
            else:
                work = naive_retire(layout)
                title = f"retirement, {shape}; naive DDL (DROP TABLE, PARTITION OF, no lock_timeout); {READER_TEXT[reader].format(s=reader_s)}"
            if log:
                log.mark()
            result = measure_all(layout.url, d, work, statements, sql, reader_s, sampler)
            with psycopg.connect(layout.url, autocommit=True) as c:
                after = partitions(c)
            made = sorted(set(after) - set(layout.partitions))
            gone = sorted(set(layout.partitions) - set(after))
            done = f"created {len(made)} ({', '.join(made)}), gone {len(gone)} ({', '.join(gone)})"
            report(label, title, result, step_ms, sampler, how == "naive", done, log.entries() if log else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", default="pg18,pg15")
    ap.add_argument("--reader", type=float, default=5.0, help="seconds the long reader holds its locks")
    ap.add_argument("--part", default="1,2", help="1: creates and drops, one writer; 2: retirement, several writers")
    ap.add_argument("--lock-timeout-ms", type=int, default=STEP_MS, help="partman's ladder step, and the goal")
    ap.add_argument("--trace", action="store_true", help="sample pg_locks (adds load) and name what slow inserts waited behind")
    args = ap.parse_args()
    parts = set(args.part.split(","))
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for label, cluster in servers(args.servers):
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            if "1" in parts:
                url = fresh(cluster.url(), d)
                baseline = measure(url, d, lambda _url, _: time.sleep(args.reader + 1), 0)
                print(f"\n{label}: {'writer alone':<66} {summary(baseline)}")
                for name, work, then in (
                    ("partman apply, creates only", partman, "longer"),
                    ("partman apply, creates and drops", partman, "monthly"),
                    ("naive DDL (PARTITION OF, DROP), no lock_timeout", naive, "monthly"),
                ):
                    for reader in (0, args.reader):
                        url = fresh(cluster.url(), d, then)
                        got = measure(url, d, work, reader)
                        with_reader = f"{reader:g} s reader" if reader else "no reader"
                        print(f"{label}: {name + ', ' + with_reader:<66} {summary(got)}   max/baseline {max(got) / max(baseline):6.1f}x")
            if "2" in parts:
                log = ServerLog(cluster.url(), cluster.root / "log") if args.trace else None
                retirement(label, cluster.url(), d, args.reader, args.lock_timeout_ms, log)
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
