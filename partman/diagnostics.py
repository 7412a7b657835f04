"""Every diagnostic code partman prints, what it means and what to do about it: the registry behind the notes of
a plan (PM1xx kept, PM2xx left alone or warned) and the ways a table's apply ends short (PM3xx). The README's
table of codes is this registry; tests/test_diagnostics.py keeps the two and the code base in step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Diagnostic:
    code: str
    title: str
    hint: str


_ALL = [
    Diagnostic("PM101", "kept: holds rows",
               "a partition the new layout would replace holds rows: it stays as it is and the grid fills around it;"
               " move its rows yourself if you want the layout everywhere"),
    Diagnostic("PM102", "kept: referenced",
               "rows of another table reference it through a foreign key: retention retires it once they are gone"
               " (delete or re-point them, or keep the partition)"),
    Diagnostic("PM201", "unmanaged partition",
               "not in partition_log, so partman never drops it; drop it yourself or leave it"),
    Diagnostic("PM202", "unmanaged partition past retention",
               "retention would retire it if partman had made it; drop it yourself if its data may go"),
    Diagnostic("PM203", "retired partition gone",
               "partition_log says it was detached, but no such table exists any more; nothing to do"),
    Diagnostic("PM204", "rows in the default partition",
               "new partitions over those rows need them moved: apply --move-default-rows, or move_default_rows: true"),
    Diagnostic("PM205", "bound not understood",
               "a partition bound partman cannot read as the key's type; check the partition by hand"),
    Diagnostic("PM207", "interrupted work",
               "an earlier apply was interrupted; this apply finishes (or, if it never began, re-plans) it"),
    Diagnostic("PM208", "locked by another session",
               "what it is about stayed locked for the whole ladder and was planned conservatively; run again later,"
               " or raise --lock-budget"),
    Diagnostic("PM209", "time zone ignored",
               "the key is timestamp or date, which has no zone: boundaries fall at local midnight; remove timezone:"),
    Diagnostic("PM210", "retired partition overlaps",
               "a detached partition's range is covered again by an attached one; drop or re-attach it by hand"),
    Diagnostic("PM211", "adopted past retention",
               "adopt: existing takes it over in this apply; retention retires it from the next apply on, once the"
               " adoption has been reviewed and applied"),
    Diagnostic("PM212", "default partition not adopted",
               "a default partition is never adopted or dropped; its rows move into partitions only with"
               " move_default_rows"),
    Diagnostic("PM213", "gap between partitions",
               "no partition covers this range and the plan does not fill it (it is behind the window): inserts"
               " there fail or go to the default partition; create a partition by hand if they should not"),
    Diagnostic("PM214", "foreign key without an index",
               "checking the referencing table for rows that point into a retiring partition reads all of it; an index"
               " leading with the referencing key column makes the check cheap"),
    Diagnostic("PM215", "difference apply does not fix",
               "a partition differs from what its parent's partitions get where partman does not act: a tablespace,"
               " persistence (UNLOGGED) or access method (changing them rewrites the table under ACCESS EXCLUSIVE: do it"
               " yourself in a quiet hour), a privilege another role granted (only that role can revoke it), or a"
               " partition whose owner the connected role cannot act for"),
    Diagnostic("PM216", "history before retention",
               "history_from reaches further back than retention keeps: retention wins, so no partition is made before"
               " its cutoff (rows older than that belong nowhere); move history_from later or lengthen retention"),
    Diagnostic("PM217", "key type runs out",
               "the key's type holds nothing outside its range (epoch seconds in an integer column: 1901-12-13 to"
               " 2038-01-19; integer ids: up to 2,147,483,647): the partitions outside it are not made; move the column"
               " to bigint before then"),
    Diagnostic("PM218", "ids jumped past the partitions",
               "an id table's mark (its sequence, or its largest key) lies past the end of its partitions, as after a"
               " setval or a restart: partitions are made from the mark's slot only, never up to it; the ids between"
               " have none (history_from, an id, covers them if rows will come there)"),
    Diagnostic("PM219", "id past the sequence",
               "a row holds an id larger than the sequence has given (inserted by hand): partitions follow the sequence;"
               " when nextval reaches that id it collides, so setval the sequence past it, or move the row"),
    Diagnostic("PM220", "sequence shared",
               "the sequence that feeds this key feeds other columns too: this table's ids are not dense, and premake"
               " in ids counts theirs; premake in partitions is the safer measure"),
    Diagnostic("PM301", "blocked by the future-data check",
               "a partition about to be dropped holds rows now: nothing of that table changed; check the rows and retention"),
    Diagnostic("PM302", "stale plan", "the database changed since the plan was made: run plan again and review it"),
    Diagnostic("PM303", "lock not obtained", "another session held a lock for the whole --lock-budget; safe to run again"),
    Diagnostic("PM304", "apply failed", "the database refused a statement; nothing of the failed step changed"),
    Diagnostic("PM305", "destructive actions withheld",
               "the environment is protected: detaches and drops run only from a reviewed plan file"),
]

REGISTRY = {d.code: d for d in _ALL}


def hint(code: str) -> Optional[str]:
    known = REGISTRY.get(code)
    return known.hint if known else None


def table() -> str:
    """The registry as a markdown table, as the README shows it."""
    rows = ["| code | meaning | what to do |", "|---|---|---|"]
    rows += [f"| `{d.code}` | {d.title} | {d.hint} |" for d in _ALL]
    return "\n".join(rows) + "\n"
