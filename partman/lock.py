"""Short, bounded locks: the lock_timeout ladder and the per-table advisory lock both faces take."""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, TypeVar

import psycopg
from psycopg import Connection, sql

from .errors import LockBusy
from .model import TableRef
from .pool import STOPPING

T = TypeVar("T")

# pg_advisory_xact_lock(int4, int4): the first key is 'part' in ASCII, so partman's locks are easy to spot in
# pg_locks (classid = 1885434484); the second is the first 32 bits of md5 of the quoted, qualified table name,
# computed by the server so the Python tool and the migration's PL/pgSQL take the very same key.
LOCK_CLASS = 0x70617274
_ADVISORY = "SELECT pg_advisory_xact_lock(%s, ('x' || left(md5(format('%%I.%%I', %s::text, %s::text)), 8))::bit(32)::int)"


@dataclass(frozen=True)
class Ladder:
    """Lock attempts: each waits in the lock queue at most step_ms (lock_timeout), and the pause between
    attempts grows from step_ms, doubling up to max_pause_ms, until budget_s of wall time is spent.

    The wait inside the queue never grows: a lock request that waits queues every later writer behind
    it, so partman backs off by sleeping between attempts, never by waiting longer in the queue."""

    step_ms: int = 100
    max_pause_ms: int = 5000
    budget_s: float = 30.0
    # Told (what, who holds it) after the first attempt that timed out, so a wait is never silent.
    on_wait: Optional[Callable[[str, Optional[str]], None]] = field(default=None, compare=False, repr=False)

    @property
    def first_ms(self) -> int:
        return self.step_ms

    @property
    def wait_ms(self) -> int:
        """The lock_timeout of every attempt: the step less a twentieth (at least 1 ms), so that a writer queued
        behind partman's request, its own insert included, is done within the step (bench/writer_latency.py)."""
        return max(1, self.step_ms - max(1, self.step_ms // 20))

    def pause(self, attempt: int) -> float:
        """Seconds to sleep after the attempt-th failed attempt (from 1), jittered so that competing runs
        do not retry in step."""
        base = min(self.step_ms * (2 ** min(attempt - 1, 16)), self.max_pause_ms)
        return base / 1000 * random.uniform(0.5, 1.0)


def advisory_lock(conn: Connection, table: TableRef) -> None:
    conn.execute(_ADVISORY, (LOCK_CLASS, table.schema, table.name))


# The session lock is taken with the session's lock_timeout set in the same statement; that timeout then bounds
# the statements run outside transactions while the lock is held, and the unlock restores the session's own value.
_SESSION_LOCK = (
    "SELECT set_config('lock_timeout', %s, false),"
    " pg_advisory_lock(%s, ('x' || left(md5(format('%%I.%%I', %s::text, %s::text)), 8))::bit(32)::int)"
)
# Two statements in one round trip (the simple protocol: no parameters, so the names go as literals): RESET costs
# nothing, where reading the reset value from pg_settings builds a row for every setting (0.4 ms on PostgreSQL 15).
_SESSION_UNLOCK = (
    "SELECT pg_advisory_unlock({}, ('x' || left(md5(format('%I.%I', {}::text, {}::text)), 8))::bit(32)::int);"
    " RESET lock_timeout"
)


# A wait shorter than this goes unsaid: most locks are obtained on a second or third attempt.
ANNOUNCE_AFTER_S = 1.0


def attempts(ladder: Ladder, what: str, conn: Optional[Connection] = None) -> Iterator[int]:
    """The lock_timeout (ms) of each attempt, always the same (Ladder.wait_ms), sleeping between attempts; LockBusy
    once the budget is spent. The caller breaks out of the loop on success and continues it after a timeout."""
    deadline = time.monotonic() + ladder.budget_s
    count, announced = 0, False
    while True:
        count += 1
        yield ladder.wait_ms
        remaining = deadline - time.monotonic()
        if not announced and ladder.on_wait is not None and ladder.budget_s - remaining >= ANNOUNCE_AFTER_S:
            announced = True
            ladder.on_wait(what, holder(conn, what) if conn is not None else None)
        if remaining <= 0:
            raise LockBusy(
                f"{what}: lock not obtained in {count} attempt{'s' if count != 1 else ''} within {ladder.budget_s:g}s"
                " (another session holds it); safe to retry"
            )
        if STOPPING.wait(min(ladder.pause(count), remaining)):  # a parallel run is stopping (Ctrl-C): no more attempts
            raise KeyboardInterrupt


def with_retries(conn: Connection, ladder: Ladder, what: str, work: Callable[[], T],
                 settings: tuple[tuple[str, str], ...] = ()) -> T:
    """Run work in one transaction with a short lock_timeout; on a lock timeout roll back, pause, and retry.
    settings: more (name, value) pairs for the transaction, set in the same statement as the lock_timeout.

    Never waits without a timeout: a DDL statement queued behind a long query queues every later writer
    behind itself, so giving up and retrying is kinder to the application than waiting."""
    statement = _TRANSACTION_SETTINGS + ", set_config(%s, %s, true)" * len(settings)
    values = [v for pair in settings for v in pair]
    for step in attempts(ladder, what, conn):
        try:
            with conn.transaction():
                conn.execute(statement, (f"{step}ms", *values))
                return work()
        except psycopg.errors.LockNotAvailable:
            continue
    raise AssertionError("unreachable: attempts() raises when the budget is spent")


# No JIT: partman's statements are short, and compiling one costs more than running it.
_TRANSACTION_SETTINGS = "SELECT set_config('lock_timeout', %s, true), set_config('jit', 'off', true)"


def statement_with_retries(conn: Connection, ladder: Ladder, what: str, work: Callable[[int], T]) -> T:
    """Like with_retries, for statements that cannot run in a transaction block (DETACH … CONCURRENTLY):
    lock_timeout is set for the session before each attempt and stays at the step afterwards, so later
    statements outside a transaction are bounded too (session_lock restores the session's own value).
    work gets the attempt number (from 0)."""
    for n, step in enumerate(attempts(ladder, what, conn)):
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{step}ms")))
        try:
            return work(n)
        except psycopg.errors.LockNotAvailable:
            continue
    raise AssertionError("unreachable: attempts() raises when the budget is spent")


@contextmanager
def session_lock(conn: Connection, table: TableRef, ladder: Ladder) -> Iterator[None]:
    """The table's advisory lock held across several transactions (a concurrent detach needs more than one).
    Session and transaction advisory locks on one key exclude each other, so the SQL face still waits."""
    key = (LOCK_CLASS, table.schema, table.name)
    try:
        for step in attempts(ladder, f"{table}: partman's lock", conn):
            try:
                conn.execute(_SESSION_LOCK, (f"{step}ms", *key))
                break
            except psycopg.errors.LockNotAvailable:
                continue
    except LockBusy:
        conn.execute("RESET lock_timeout")
        raise
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute(sql.SQL(_SESSION_UNLOCK).format(*map(sql.Literal, key)))


# The oldest other session of this database holding a granted lock on the table, one of its partitions, or the
# table's partman lock (the advisory key both faces take, see _ADVISORY).
_HOLDER = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), a.usename::text, '?'), a.state,
       extract(epoch FROM now() - coalesce(a.xact_start, a.query_start))::int
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.granted AND l.pid <> pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND (l.relation = to_regclass(%(table)s)
        OR l.relation IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass(%(table)s))
        OR (l.locktype = 'advisory' AND l.classid = %(class)s
            AND l.objid = (('x' || left(md5(format('%%I.%%I', %(schema)s::text, %(name)s::text)), 8))::bit(32)::int)::oid))
 ORDER BY coalesce(a.xact_start, a.query_start) NULLS LAST
 LIMIT 1
"""


def holder(conn: Connection, what: str) -> Optional[str]:
    """Who holds what partman waits for, as 'pid 123 (psql, idle in transaction for 40 s)'; None if unknown.
    Best effort under a short statement timeout: naming the holder must never be a wait of its own."""
    try:
        table = TableRef.parse(what.split(":", 1)[0].strip())
    except Exception:  # noqa: BLE001 - not about one table: no holder to name
        return None
    params = {"table": str(table), "schema": table.schema, "name": table.name, "class": LOCK_CLASS}
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('statement_timeout', '1000ms', true)")
            row = conn.execute(_HOLDER, params).fetchone()
    except psycopg.Error:
        return None
    if row is None:
        return None
    pid, app, state, seconds = row
    return f"pid {pid} ({app}, {state or 'unknown state'} for {seconds or 0} s)"
