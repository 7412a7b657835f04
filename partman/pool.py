"""Units of work run in parallel over a bounded set of connections, one worker thread each: a unit is a table of a
database today (apply), and the cap is per server, so a later unit "a table of one of many databases" fits. Results
are released in the units' order whatever finished first, so what is printed never depends on timing; Ctrl-C
cancels the statements in flight (each partition is done or untouched, as a serial run leaves it) before it is
raised."""

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
        on_result: Optional[Callable[[R], None]] = None) -> list[R]:
    """work(connection, unit) for every unit, each worker on a connection of its own; on_result(result) in the
    units' order. An exception of work is raised (in order) once the workers stopped; so is Ctrl-C, once the
    statements in flight were cancelled."""
    if len(connections) == 1:  # one connection: in this thread, exactly as a serial run
        results = []
        for unit in units:
            results.append(work(connections[0], unit))
            if on_result:
                on_result(results[-1])
        return results
    slots = [_Slot() for _ in units]
    todo: queue.Queue = queue.Queue()
    for i in range(len(units)):
        todo.put(i)
    changed = threading.Condition()
    stop = threading.Event()

    def worker(conn: Any) -> None:
        while not stop.is_set():
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            slot = slots[i]
            try:
                slot.result = work(conn, units[i])
            except BaseException as exc:  # handed to the main thread, raised there in order
                slot.error = exc
            with changed:
                slot.done = True
                changed.notify_all()

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in connections]
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
        for c in connections:
            _cancel(c)
        for t in threads:
            t.join()
        raise
    for t in threads:
        t.join()
    return results


def _cancel(conn: Any) -> None:
    """Cancel the statement in flight on conn, if any: its transaction rolls back, nothing of it stays."""
    try:
        (getattr(conn, "cancel_safe", None) or conn.cancel)()
    except Exception:  # a connection already gone has nothing in flight
        pass
