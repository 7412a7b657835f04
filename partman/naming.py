"""Cosmetic partition names: readable, unique among the schema's relations, and at most 63 bytes."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Set
from datetime import datetime
from typing import Optional

from .model import Bounds, TableRef
from .timeline import Grid

MAX_BYTES = 63


class NamesUnread(Exception):
    """A plan asked for a name where the names in use were left unread (catalog.snapshot(names_later=True)): the
    shell reads them (catalog.with_names_in_use) and plans again. The planner itself never reads."""


class Names(Set):
    """Relation names read from the catalog, as one set made on first use. A plan with no create never asks it,
    and a large database holds tens of thousands of names (every partition's). unread: the catalog's own question
    was not asked; any use raises NamesUnread, and read() gives the set with its answer."""

    def __init__(self, *groups: Iterable[TableRef], unread: bool = False) -> None:
        self._groups: tuple = groups
        self._set: Optional[frozenset] = None
        self._unread = unread
        self._making = threading.Lock()  # a snapshot may be read from several threads: its groups are run once

    def read(self, group: Iterable[TableRef]) -> "Names":
        """These names with the catalog's answer added (only of a set left unread)."""
        assert self._unread
        return Names(group, *self._groups)

    @property
    def _all(self) -> frozenset:
        if self._unread:
            raise NamesUnread()
        if self._set is None:
            with self._making:
                if self._set is None:
                    self._set, self._groups = frozenset().union(*self._groups), ()
        return self._set

    def __contains__(self, ref: object) -> bool:
        return ref in self._all

    def __iter__(self):
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def __repr__(self) -> str:
        return "Names(unread)" if self._unread else f"Names({set(self._all)!r})"

    __hash__ = Set._hash


class Taken:
    """The names a new partition may not take: those read (never copied) and those this plan has given out."""

    def __init__(self, read: Set = frozenset()) -> None:
        self._read, self._given = read, set()

    def __contains__(self, ref: TableRef) -> bool:
        return ref in self._given or ref in self._read

    def add(self, ref: TableRef) -> None:
        self._given.add(ref)


def partition_name(parent: TableRef, grid: Grid, bounds: Bounds, taken: Taken) -> TableRef:
    """A free name for a new partition of parent; adds it to taken.

    Aligned slots get the interval's label (bookings_2027_01, bookings_2027_q1); bridges get both ends
    (bookings_20271201_20280101). Nothing ever parses these back: partitions are known by their bounds."""
    if not isinstance(grid, Grid):
        label = grid.label(bounds)  # an id table's (widths.WidthGrid): events_p2000000
    elif grid.is_slot(bounds):
        label = grid.interval.label(grid.floor(bounds.start))
    else:
        label = f"{_stamp(grid, bounds.start)}_{_stamp(grid, bounds.end)}"
    base = fit(parent.name, "_" + label)
    candidate, n = TableRef(parent.schema, base), 1
    while candidate in taken:
        n += 1
        candidate = TableRef(parent.schema, fit(parent.name, f"_{label}_{n}"))
    taken.add(candidate)
    return candidate


def fit(stem: str, suffix: str) -> str:
    """stem + suffix, shortening the stem (with an md5 of it, so distinct stems stay distinct) to fit 63 bytes.

    md5 because the migration's PL/pgSQL names partitions the same way and PostgreSQL has it built in."""
    name = stem + suffix
    if len(name.encode()) <= MAX_BYTES:
        return name
    digest = "_" + hashlib.md5(stem.encode()).hexdigest()[:6]
    room = MAX_BYTES - len(suffix.encode()) - len(digest)
    cut = stem.encode()[:room].decode(errors="ignore")
    return cut + digest + suffix


def _stamp(grid: Grid, value) -> str:
    value = grid.space.instant(value)  # an epoch number or UUIDv7 is named for its instant, in the spec's zone
    if isinstance(value, datetime):
        local = value.astimezone(grid.space.zone) if value.tzinfo else value
        if local.time() != datetime.min.time():
            return local.strftime("%Y%m%d_%H%M%S")
        return local.strftime("%Y%m%d")
    return value.strftime("%Y%m%d")
