"""Helpers for tests against a real server: run the CLI in-process, read partitions back from the catalog."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from partman.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys, *args: str) -> Result:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    return Result(exited.value.code or 0, captured.out, captured.err)


def partitions(conn, table: str) -> list[tuple[str, str]]:
    """(name, bound expression) of each partition, read in UTC, ordered by bounds."""
    with conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        rows = conn.execute(
            """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = %s::regclass ORDER BY pg_get_expr(c.relpartbound, c.oid)""",
            (table,),
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def ranges(conn, table: str) -> list[tuple[str, str]]:
    """(from, to) literal texts of each range partition, ordered (the default partition has none)."""
    out = []
    for _, expr in partitions(conn, table):
        if expr == "DEFAULT":
            continue
        inner = expr.removeprefix("FOR VALUES FROM (").removesuffix(")")
        start, end = inner.split(") TO (")
        out.append((start.strip("'"), end.strip("'")))
    return out


def assert_contiguous(rs: list[tuple[str, str]]) -> None:
    for (_, end), (start, _) in zip(rs, rs[1:]):
        assert end == start, f"gap or overlap between {end} and {start}"


def count(conn, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
