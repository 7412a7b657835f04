"""A writer for the latency benchmarks: one statement per transaction, timed, until stopped."""

from __future__ import annotations

import threading
import time

import psycopg


class Writer(threading.Thread):
    """samples: (start, latency) of each insert that succeeded, in seconds from time.perf_counter().
    errors: (start, latency, first line of the message) of each that failed; the writer goes on after a failure
    (a partition dropped under it, a row no partition accepts), so failures are counted, never taken as latency.
    pid: the writer's backend, once connected (to find its lock waits in pg_locks)."""

    def __init__(self, url: str, statement: str, name: str = "writer"):
        super().__init__(daemon=True)
        self.url, self.statement, self.name = url, statement, name
        self.stop, self.ready, self.samples, self.errors = threading.Event(), threading.Event(), [], []
        self.pid = None

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name=self.name) as c:
            self.pid = c.info.backend_pid
            self.ready.set()
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    c.execute(self.statement)
                    self.samples.append((t0, time.perf_counter() - t0))
                except psycopg.Error as exc:
                    message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    self.errors.append((t0, time.perf_counter() - t0, message))
                time.sleep(0.002)
