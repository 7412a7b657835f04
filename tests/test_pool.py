"""The pool that apply runs tables on: results come back in the units' order whatever finished first, a failure is
raised in its turn after the workers stopped, one connection means no thread at all, and the size stays within a
tenth of the server's connections, and unasked, within this machine's cores when the server runs on it."""

from __future__ import annotations

import threading
import time
import types

import pytest

from partman import pool


class Conn:
    def __init__(self, max_connections: int = 100, host: str = "db.example.com"):
        self.max_connections, self.cancelled, self.closed = max_connections, 0, False
        self.info = types.SimpleNamespace(host=host)

    def close(self):
        self.closed = True

    def execute(self, *_):
        return self

    def fetchone(self):
        return (str(self.max_connections),)

    def cancel_safe(self):
        self.cancelled += 1


def test_results_come_in_the_units_order_when_they_finish_in_reverse():
    finished = []

    def work(conn, n):
        time.sleep(0.02 * (5 - n))  # the last unit finishes first
        finished.append(n)
        return (n, threading.current_thread().name)

    told = []
    results = pool.run(range(5), work, [Conn() for _ in range(5)], told.append)
    assert [n for n, _ in results] == [0, 1, 2, 3, 4] == [n for n, _ in told]
    assert finished != sorted(finished), "they did finish in another order"
    assert len({name for _, name in results}) > 1, "on several workers"


def test_a_failure_is_raised_in_its_turn_once_the_workers_stopped():
    def work(conn, n):
        if n == 2:
            raise ValueError("unit 2")
        return n

    told = []
    with pytest.raises(ValueError, match="unit 2"):
        pool.run(range(4), work, [Conn(), Conn()], told.append)
    assert told == [0, 1]


def test_one_connection_runs_in_the_calling_thread():
    here = threading.current_thread()
    assert pool.run([1, 2], lambda c, n: threading.current_thread() is here, [Conn()]) == [True, True]


@pytest.mark.parametrize("asked, units, max_connections, size", [
    (None, 50, 100, 4), (8, 50, 100, 8), (32, 50, 100, 10), (8, 3, 100, 3), (8, 50, 15, 1), (8, 0, 100, 1)])
def test_the_size_is_what_was_asked_within_a_tenth_of_the_servers_connections(asked, units, max_connections, size):
    assert pool.size(Conn(max_connections), asked, units) == size


@pytest.mark.parametrize("host", ["/var/run/postgresql", "localhost", "127.0.0.1", "::1"])
def test_a_server_on_this_machine_gets_no_more_workers_than_its_cores_unless_asked(host):
    assert pool.size(Conn(100, host), None, 50, cores=2) == 2
    assert pool.size(Conn(100, host), 6, 50, cores=2) == 6, "what was asked is what it gets"


@pytest.mark.parametrize("host", ["db.example.com", "10.0.0.7", "2001:db8::1"])
def test_a_server_elsewhere_gets_the_default_whatever_this_machine_has(host):
    assert pool.size(Conn(100, host), None, 50, cores=2) == pool.DEFAULT


def _losing(lost_at: int, seen: list):
    """Work whose connection's session ends during unit lost_at: that unit fails, as apply reports a table."""
    def work(conn, n):
        if conn.closed:
            return (n, "the connection is closed")
        seen.append((n, conn))
        if n == lost_at:
            conn.closed = True
            return (n, "terminated")
        time.sleep(0.01)
        return (n, "ok")
    return work


@pytest.mark.parametrize("workers", [1, 2])
def test_a_lost_connection_costs_its_unit_alone_the_next_runs_on_a_new_one(workers):
    seen, made = [], []

    def renew():
        made.append(Conn())
        return made[-1]

    results = pool.run(range(8), _losing(1, seen), [Conn() for _ in range(workers)], renew=renew)
    assert results == [(n, "terminated" if n == 1 else "ok") for n in range(8)]
    assert len(made) == 1 and all(c.closed for c in made), "one renewed connection, closed when the run ended"


def test_a_worker_that_cannot_reconnect_leaves_its_units_to_the_others():
    seen = []

    def renew():
        raise ConnectionError("too many clients")

    results = pool.run(range(8), _losing(1, seen), [Conn(), Conn()], renew=renew)
    assert results == [(n, "terminated" if n == 1 else "ok") for n in range(8)]
    assert len({id(c) for n, c in seen if n > 1}) == 1, "every later unit ran on the worker that kept its connection"


def test_the_last_worker_without_a_connection_still_gives_every_unit_its_own_outcome():
    def renew():
        raise ConnectionError("the server is gone")

    results = pool.run(range(4), _losing(0, []), [Conn()], renew=renew)
    assert results == [(0, "terminated")] + [(n, "the connection is closed") for n in range(1, 4)]


def test_a_connection_made_while_the_run_stops_starts_nothing_on_it():
    """Ctrl-C while a worker reconnects: the cancel could not reach the connection it was still making."""
    ran, one_started, renewing = [], threading.Event(), threading.Event()

    def renew():
        renewing.set()
        assert pool.STOPPING.wait(5), "the run stops while this connection is made"
        return Conn()

    def work(conn, n):
        if n == 0:  # on one worker: its connection is lost with this unit
            one_started.wait(5)
            conn.closed = True
            return n
        if n == 1:  # on the other: Ctrl-C arrives while the first reconnects for unit 2
            one_started.set()
            renewing.wait(5)
            raise KeyboardInterrupt
        ran.append(n)
        return n

    with pytest.raises(KeyboardInterrupt):
        pool.run(range(3), work, [Conn(), Conn()], renew=renew)
    assert ran == []


def test_a_connection_that_cannot_be_had_is_asked_for_once_not_once_per_unit():
    asked = []

    def renew():
        asked.append(1)
        raise ConnectionError("no route to host")

    results = pool.run(range(5), _losing(0, []), [Conn()], renew=renew)
    assert results == [(0, "terminated")] + [(n, "the connection is closed") for n in range(1, 5)]
    assert len(asked) == 1


def test_a_mapped_loopback_address_and_a_loopback_hostaddr_are_this_machine():
    assert pool.on_this_machine("::ffff:127.0.0.1")
    conn = Conn(100, "db.internal")
    conn.info.hostaddr = "127.0.0.1"
    assert pool.size(conn, None, 50, cores=2) == 2
