"""Units of work run in parallel over a bounded set of connections, one worker thread each: a unit is a table of a
database today (apply), and the cap is per server, so a later unit "a table of one of many databases" fits. Results
are released in the units' order whatever finished first, so what is printed never depends on timing; Ctrl-C
cancels the statements in flight (each partition is done or untouched, as a serial run leaves it) before it is
raised. A unit whose connection was lost fails alone: its worker's next unit runs on a new connection."""

from __future__ import annotations

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
    local = on_this_machine(conn.info.host) or on_this_machine(getattr(conn.info, "hostaddr", "") or "")
    default = min(DEFAULT, cores or _cores()) if local else DEFAULT
    return max(1, min(asked or default, max_connections // SHARE, units))


def on_this_machine(host: str) -> bool:
    """A Unix socket's directory, or a loopback name or address (an IPv4 one mapped into IPv6 too)."""
    import ipaddress

    if host.startswith(("/", "@")) or host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or bool(getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback)


def _cores() -> int:
    """The cores this process may run on: its CPU affinity (a cpuset's), where the system tells it; a CPU quota
    (a container's --cpus) is not seen."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class _Slot:
    done: bool = False
    result: Any = None
    error: Optional[BaseException] = None


STOPPING = threading.Event()  # set while a parallel run's workers are told to stop: their sleeps wake on it (lock.py)


def run(units: Sequence[U], work: Callable[[Any, U], R], connections: Sequence[Any],
        on_result: Optional[Callable[[R], None]] = None, renew: Optional[Callable[[], Any]] = None) -> list[R]:
    """work(connection, unit) for every unit, each worker on a connection of its own; on_result(result) in the
    units' order. An exception of work is raised (in order) once the workers stopped; so is Ctrl-C, once the
    statements in flight were cancelled.

    renew() makes a connection in place of one whose session ended (terminated, timed out, the network), so that one
    unit's lost connection is that unit's failure alone, not that of every unit its worker takes after it. Once it
    fails it is not tried again: a worker without a connection leaves its units to the others, and the last one left
    takes them on the connection it has, each failing on its own at once."""
    pool = _Pool(units, connections, renew)
    try:
        if len(connections) == 1:  # one connection: in this thread, exactly as a serial run
            results = []
            for unit in units:
                pool.renew_for(0)
                results.append(work(pool.current[0], unit))
                if on_result:
                    on_result(results[-1])
            return results
        return pool.parallel(work, on_result)
    finally:
        pool.close()


class _Pool:
    """The units not yet taken, the workers still running, each worker's connection now, and those made anew."""

    def __init__(self, units: Sequence[Any], connections: Sequence[Any], renew: Optional[Callable[[], Any]]) -> None:
        self.units, self.current, self.renew = units, list(connections), renew
        self.pending = list(range(len(units)))[::-1]  # popped from the end: the units' order
        self.slots = [_Slot() for _ in units]
        self.running, self.made, self.dead = len(connections), [], False
        self.changed = threading.Condition()  # guards all of the above; told when a slot is done
        self.stop = False

    def renew_for(self, k: int) -> bool:
        """Worker k's connection holds, or was made anew: True. False when it broke and no new one can be had."""
        conn = self.current[k]
        if self.renew is None or not (getattr(conn, "closed", False) or getattr(conn, "broken", False)):
            return True
        if self.dead:
            return False
        try:
            made = self.renew()
        except Exception:  # the server gives no connection now; asking again for every unit would cost each a timeout
            self.dead = True
            return False
        with self.changed:
            self.made.append(made)
            if not self.stop:  # once stopping, nothing new starts on it (and Ctrl-C cancelled what it saw)
                self.current[k] = made
        return True

    def take(self, k: int) -> Optional[int]:
        """The next unit for worker k, or None: none left, stopping, or no connection while others have one."""
        with self.changed:
            if self.stop or not self.pending:
                self.running -= 1
                return None
            i = self.pending.pop()
        if self.renew_for(k):
            with self.changed:
                if not self.stop:
                    return i
                self.running -= 1
                return None
        with self.changed:
            if self.stop or self.running > 1:  # the others take it; the last one left runs it, and it fails
                self.pending.append(i)
                self.running -= 1
                return None
        return i

    def parallel(self, work: Callable[[Any, Any], Any], on_result: Optional[Callable[[Any], None]]) -> list:
        def worker(k: int) -> None:
            while (i := self.take(k)) is not None:
                slot = self.slots[i]
                try:
                    slot.result = work(self.current[k], self.units[i])
                except BaseException as exc:  # handed to the main thread, raised there in order
                    slot.error = exc
                with self.changed:
                    slot.done = True
                    self.changed.notify_all()

        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(len(self.current))]
        for t in threads:
            t.start()
        try:
            results = [self._result(slot, on_result) for slot in self.slots]
        except BaseException:
            self._stop(threads)
            raise
        for t in threads:
            t.join()
        return results

    def _result(self, slot: _Slot, on_result: Optional[Callable[[Any], None]]) -> Any:
        with self.changed:
            while not slot.done:
                self.changed.wait(0.2)  # a timeout, so Ctrl-C reaches the main thread while it waits
        if slot.error is not None:
            raise slot.error
        if on_result:
            on_result(slot.result)
        return slot.result

    def _stop(self, threads: list[threading.Thread]) -> None:
        """Nothing new starts, the statements in flight are cancelled and the waits between lock attempts end. Once:
        a table's own cleanup (its advisory unlock) runs uncancelled."""
        with self.changed:
            self.stop = True
            current = list(self.current)
        STOPPING.set()
        try:
            for c in current:
                _cancel(c)
            for t in threads:
                t.join()
        finally:
            STOPPING.clear()

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
