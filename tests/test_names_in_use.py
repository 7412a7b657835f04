"""The names a new partition may not take (naming.Names, naming.Taken): read once, lazily, and never copied."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from helpers import spec

from partman import planner
from partman.model import TableRef
from partman.naming import Names, NamesUnread, Taken
from partman.snapshot import Snapshot, TableState


def refs(n: int, stem: str = "t"):
    return (TableRef("public", f"{stem}_{i}") for i in range(n))


def test_names_hold_every_group_and_compare_as_the_set_they_make():
    names = Names([TableRef("public", "other")], refs(3))
    assert TableRef("public", "t_2") in names and TableRef("public", "other") in names
    assert names == {TableRef("public", "other"), *refs(3)} and len(names) == 4


def test_names_are_made_once_whichever_of_many_threads_asks_first():
    made = []

    def group():
        made.append(threading.get_ident())
        yield from refs(50_000)

    names = Names(group())
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(TableRef("public", "t_49999") in names)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [True] * 8 and len(made) == 1, "the group ran once (a generator run twice raises)"


def test_taken_adds_the_names_a_plan_gives_out_without_touching_those_read():
    read = frozenset(refs(2))
    taken = Taken(read)
    taken.add(TableRef("public", "new"))
    assert TableRef("public", "new") in taken and TableRef("public", "t_1") in taken
    assert TableRef("public", "new") not in read


def test_names_left_unread_refuse_every_use_until_read_and_then_hold_the_answer_too():
    unread = Names(refs(2), unread=True)
    for use in (lambda: TableRef("public", "t_1") in unread, lambda: len(unread), lambda: list(unread)):
        with pytest.raises(NamesUnread):
            use()
    assert repr(unread) == "Names(unread)"
    read = unread.read([TableRef("public", "other")])
    assert read == {TableRef("public", "other"), *refs(2)}


def test_the_planner_asks_for_unread_names_by_raising_and_reads_nothing_itself():
    wanted = spec("monthly")  # a table to create: its partitions want names
    snap = Snapshot(tables={wanted.table: TableState(wanted.table)}, taken_names=Names(unread=True))
    with pytest.raises(NamesUnread):
        planner.plan([wanted], snap, now=datetime(2027, 2, 15, tzinfo=timezone.utc), env="test")
    full = Snapshot(tables=snap.tables, taken_names=snap.taken_names.read([]))
    assert planner.plan([wanted], full, now=datetime(2027, 2, 15, tzinfo=timezone.utc), env="test").changes
