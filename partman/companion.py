"""A companion reader: a second session that reads inside the caller's snapshot (pg_export_snapshot, then SET
TRANSACTION SNAPSHOT), so that the questions of one consistent view that do not rest on each other's answers run on
two server backends at once while the caller reads and parses its own. What it sees is exactly what the caller's
transaction sees: the same snapshot (checked after the import), READ ONLY, the same session settings.

partman's state tables are one job, read by whichever session takes it and by that session alone in the view. So
neither session holds a lock on them that the other could queue behind (through a third session's ACCESS
EXCLUSIVE request waiting between them); a lock met on them ends the read as it would on the caller alone
(lock_timeout, then the ladder's next step).

The questions wait in one queue. The companion takes them from the front, where the caller puts those that cost
the server much and Python little (a few rows); the caller, once its own reading is done, takes them from the back.
Python runs one thread at a time: parsing is best left where it does not hold up the other session's waiting.

It is an optimisation and never a condition: a server, pooler or role that will not give a second session (no
connection slot, a snapshot that cannot be imported, another server behind the same address), or a companion whose
connection breaks midway, leaves its questions to the caller's own connection, which asks them in the same
snapshot. A question that fails on the companion for any other reason fails as it would have on the caller's
connection: its exception is raised to the caller. Used as a context manager, a caller that gives up on its read
(an error, Ctrl-C) stops the companion too."""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

import psycopg
from psycopg import Connection, Cursor, IsolationLevel, sql

Job = Callable[[Cursor], Any]
_UNANSWERED = object()


class Unexported(Exception):
    """The server would not export the caller's snapshot, which ends the caller's transaction (a snapshot cannot be
    exported from a savepoint): read again without a companion."""


class Companion:
    """Jobs answered on the caller's connection and, when started, on a second one in the caller's snapshot."""

    def __init__(self, jobs: list[Job]) -> None:
        self._jobs = list(jobs)
        self._results: list[Any] = [_UNANSWERED] * len(self._jobs)
        self._front, self._back = 0, len(self._jobs)  # the jobs not yet taken: [front, back)
        self._theirs = 0  # jobs the companion took
        self._lock = threading.Lock()
        self._error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        self._conn: Optional[Connection] = None

    @classmethod
    def start(cls, cur: Cursor, connect: Callable[[], Connection], settings: sql.Composable, jobs: list[Job]) -> "Companion":
        """cur: the caller's cursor, in its REPEATABLE READ transaction; settings: the statement that set up its
        session (run on the companion too, in its transaction). Returns at once; the companion works in a thread.
        Raises Unexported where the server will not export the snapshot."""
        companion = cls(jobs)
        try:
            snapshot, seen = cur.execute("SELECT pg_export_snapshot(), pg_current_snapshot()::text").fetchone()
        except psycopg.Error:
            raise Unexported() from None
        companion._thread = threading.Thread(target=companion._run, args=(connect, snapshot, seen, settings),
                                             name="partman-companion", daemon=True)
        companion._thread.start()
        return companion

    def __enter__(self) -> "Companion":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if error is not None:
            self.cancel()

    def results(self, cur: Cursor) -> list:
        """Every job's result, in the jobs' order. The caller answers what the companion has not taken, on cur, then
        waits for the companion (bounded: its statements read catalogs under the read's lock_timeout) and answers
        what it handed back. So this must be called while the caller's transaction is open."""
        try:
            self._work(cur)
            if self._theirs:  # else it took nothing (still connecting, or could not): its answers are not awaited
                self._thread.join()
        except BaseException:
            self.cancel()
            raise
        if self._error is not None:
            raise self._error
        for i, result in enumerate(self._results):
            if result is _UNANSWERED:  # the companion's connection broke while it asked this one
                self._results[i] = self._jobs[i](cur)
        return self._results

    def cancel(self) -> None:
        """Stop what the companion is asking (the caller is giving up on this read)."""
        with self._lock:
            self._front = self._back
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                conn.cancel_safe(timeout=2)
            except Exception:  # a cancel that cannot be sent leaves a read-only statement to finish on its own
                pass

    def _work(self, cur: Cursor, theirs: bool = False) -> None:
        """Answer jobs until none is left: the companion from the front of the queue, the caller from the back."""
        while self._error is None:
            with self._lock:
                if self._front == self._back:
                    return
                if theirs:
                    i, self._front, self._theirs = self._front, self._front + 1, self._theirs + 1
                else:
                    self._back -= 1
                    i = self._back
            self._results[i] = self._jobs[i](cur)

    def _run(self, connect: Callable[[], Connection], snapshot: str, seen: str, settings: sql.Composable) -> None:
        try:
            self._conn = conn = connect()
        except Exception:  # no slot for another session, a role's connection limit: the caller asks everything
            return
        asking = False
        try:
            conn.isolation_level, conn.read_only = IsolationLevel.REPEATABLE_READ, True
            with conn.transaction(), conn.cursor() as cur:
                if not _imported(cur, snapshot, seen):
                    return  # e.g. a pooler that put this session on another server: the caller asks everything
                cur.execute(settings)
                asking = True
                self._work(cur, theirs=True)
        except BaseException as exc:
            # Only a question's own failure is the caller's; a broken connection (terminated, the network) leaves
            # what it was asking unanswered, for the caller to ask.
            if asking and not conn.broken:
                self._error = exc
        finally:
            conn.close()


def _imported(cur: Cursor, snapshot: str, seen: str) -> bool:
    """Whether this session now reads the caller's very snapshot: imported, and showing the same transactions in
    progress (another server that happened to hold a snapshot of that id would not)."""
    try:
        cur.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        return cur.execute("SELECT pg_current_snapshot()::text").fetchone()[0] == seen
    except psycopg.Error:
        return False
