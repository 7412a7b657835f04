"""A writer for the latency benchmarks: one statement per transaction, timed, until stopped."""

from __future__ import annotations

import threading
import time

import psycopg


class Writer(threading.Thread):
    """samples: (start, latency) of each insert, in seconds from time.perf_counter()."""

    def __init__(self, url: str, statement: str):
        super().__init__(daemon=True)
        self.url, self.statement, self.stop, self.samples = url, statement, threading.Event(), []

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as c:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                c.execute(self.statement)
                self.samples.append((t0, time.perf_counter() - t0))
                time.sleep(0.002)
