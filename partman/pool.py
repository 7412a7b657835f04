"""Units of work run in parallel over a bounded set of connections, one worker thread each: a unit is a table of a
database today (apply), and the cap is per server, so a later unit "a table of one of many databases" fits. Results
are released in the units' order whatever finished first, so what is printed never depends on timing; Ctrl-C
cancels the statements in flight (each partition is done or untouched, as a serial run leaves it) before it is
raised. A unit whose connection was lost fails alone: its worker's next unit runs on a new connection."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, TypeVar

U = TypeVar("U")
R = TypeVar("R")

# At most a tenth of the server's max_connections, and DEFAULT unless asked: the application keeps its connections.
SHARE = 10
DEFAULT = 4


def size(conn: Any, asked: Optional[int], units: int, cores: Optional[int] = None) -> int:
    """How many connections a run over units gets on the server conn is connected to. Unasked, a server on this
    machine gets no more than its cores: its backends share them with partman, and more DDL at once than cores
    only queues (bench/apply_vs_raw.py on two cores: -j 2 0.91x the serial replay, -j 4 0.99x)."""
    max_connections = int(conn.execute("SELECT current_setting('max_connections')").fetchone()[0])
    default = min(DEFAULT, cores or _cores()) if on_this_machine(conn.info.host) else DEFAULT
    return max(1, min(asked or default, max_connections // SHARE, units))


def on_this_machine(host: str) -> bool:
    """A Unix socket's directory, or a loopback name or address."""
    import ipaddress

    if host.startswith(("/", "@")) or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cores() -> int:
    """The cores this process may run on (a container's or a cpuset's share, where the system tells it)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class _Slot:
    done: bool = False
    result: Any = None
    error: Optional[BaseException] = None


def run(units: Sequence[U], work: Callable[[Any, U], R], connections: Sequence[Any],
        on_result: Optional[Callable[[R], None]] = None, renew: Optional[Callable[[], Any]] = None) -> list[R]:
    """work(connection, unit) for every unit, each worker on a connection of its own; on_result(result) in the
    units' order. An exception of work is raised (in order) once the workers stopped; so is Ctrl-C, once the
    statements in flight were cancelled.

    renew() makes a connection in place of one whose session ended (terminated, timed out, the network), so that one
    unit's lost connection is that unit's failure alone, not that of every unit its worker takes after it. A worker
    that cannot get one leaves the units to the others; the last one left takes them on the connection it has, and
    each fails on its own."""
    renewal = _Renewal(renew, len(connections))
    try:
        if len(connections) == 1:  # one connection: in this thread, exactly as a serial run
            results, conn = [], connections[0]
            for unit in units:
                conn = renewal.fresh(conn) or conn
                results.append(work(conn, unit))
                if on_result:
                    on_result(results[-1])
            return results
        return _parallel(units, work, connections, on_result, renewal)
    finally:
        renewal.close()


def _parallel(units: Sequence[U], work: Callable[[Any, U], R], connections: Sequence[Any],
              on_result: Optional[Callable[[R], None]], renewal: "_Renewal") -> list[R]:
    slots = [_Slot() for _ in units]
    todo: queue.Queue = queue.Queue()
    for i in range(len(units)):
        todo.put(i)
    changed = threading.Condition()
    stop = threading.Event()
    current = list(connections)  # each worker's connection now, for Ctrl-C to cancel

    def worker(k: int) -> None:
        while not stop.is_set():
            renewed = renewal.fresh(current[k])
            if renewed is _LEAVE:
                return
            current[k] = renewed or current[k]
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            slot = slots[i]
            try:
                slot.result = work(current[k], units[i])
            except BaseException as exc:  # handed to the main thread, raised there in order
                slot.error = exc
            with changed:
                slot.done = True
                changed.notify_all()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(len(connections))]
    for t in threads:
        t.start()
    results: list[R] = []
    try:
        for slot in slots:
            with changed:
                while not slot.done:
                    changed.wait(0.2)  # a timeout, so Ctrl-C reaches the main thread while it waits
            if slot.error is not None:
                raise slot.error
            results.append(slot.result)
            if on_result:
                on_result(slot.result)
    except BaseException:
        stop.set()
        for c in current:
            _cancel(c)
        for t in threads:
            t.join()
        raise
    for t in threads:
        t.join()
    return results


_LEAVE = object()  # what _Renewal.fresh says to a worker that lost its connection while others still have theirs


class _Renewal:
    """Connections made in place of broken ones (closed when the run ends), and how many workers are left."""

    def __init__(self, renew: Optional[Callable[[], Any]], workers: int) -> None:
        self.renew, self.left, self.made = renew, workers, []
        self.lock = threading.Lock()

    def fresh(self, conn: Any) -> Any:
        """None while conn holds; else a new connection, or _LEAVE, or None for the last worker (its units fail)."""
        if self.renew is None or not (getattr(conn, "closed", False) or getattr(conn, "broken", False)):
            return None
        try:
            made = self.renew()
        except Exception:  # the server gives no connection now: the units go to workers that have one
            with self.lock:
                if self.left > 1:
                    self.left -= 1
                    return _LEAVE
            return None
        with self.lock:
            self.made.append(made)
        return made

    def close(self) -> None:
        for c in self.made:
            try:
                c.close()
            except Exception:  # closing what already broke has nothing left to release
                pass


def _cancel(conn: Any) -> None:
    """Cancel the statement in flight on conn, if any: its transaction rolls back, nothing of it stays."""
    try:
        (getattr(conn, "cancel_safe", None) or conn.cancel)()
    except Exception:  # a connection already gone has nothing in flight
        pass
