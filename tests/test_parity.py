"""Parity: the Python planner (partman apply) and the migration's PL/pgSQL (manage_partitions) given the same
table, rows, settings and clock end with the same partition bounds, rows, and retention state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pytest

from dbtools import count, ranges, run_cli
from helpers import spec_data, write_spec

from partman.planner import desired_config
from partman.spec import load_specs

from test_sql_face import migrate


@dataclass(frozen=True)
class Scenario:
    before: str  # interval the table was laid out with at `start`
    after: str  # interval (and settings) both faces then apply at `now`
    start: str
    now: str
    rows: tuple[str, ...] = ()
    premake: Optional[str] = None
    retention: Optional[str] = None
    grace: str = "7 days"
    tz: str = "UTC"
    extra: dict = field(default_factory=dict)


SCENARIOS = {
    "monthly to quarterly, rows now and ahead": Scenario(
        "monthly", "quarterly", "2027-02-10T00:00Z", "2027-02-15T12:00Z", ("2027-02-20T00:00Z", "2027-05-10T00:00Z")),
    "quarterly to monthly, a populated future quarter": Scenario(
        "quarterly", "monthly", "2027-02-10T00:00Z", "2027-02-15T12:00Z", ("2027-08-01T00:00Z",)),
    "monthly to yearly, rows next year": Scenario(
        "monthly", "yearly", "2027-02-10T00:00Z", "2027-03-01T00:00Z", ("2028-06-15T00:00Z",)),
    "yearly to monthly, months later": Scenario("yearly", "monthly", "2027-02-10T00:00Z", "2027-07-04T08:00Z"),
    "quarterly to yearly with retention and no grace": Scenario(
        "quarterly", "yearly", "2026-01-10T00:00Z", "2027-11-20T00:00Z", ("2026-02-01T00:00Z",), retention="12 months",
        grace="0 days"),
    "monthly kept, time moves on, retention with grace": Scenario(
        "monthly", "monthly", "2027-01-05T00:00Z", "2027-06-05T00:00Z", ("2027-01-06T00:00Z", "2027-03-03T00:00Z"),
        retention="3 months"),
    "Berlin quarters to months": Scenario(
        "quarterly", "monthly", "2027-02-10T00:00Z", "2027-03-31T22:30Z", ("2027-04-01T00:30+02:00",), tz="Europe/Berlin"),
    "premake of 6 months, monthly to quarterly": Scenario(
        "monthly", "quarterly", "2027-05-10T00:00Z", "2027-05-20T00:00Z", ("2027-09-09T00:00Z",), premake="6 months"),
    "rows in the past stay where they are": Scenario(
        "monthly", "quarterly", "2026-11-10T00:00Z", "2027-02-01T00:00Z", ("2026-11-11T00:00Z", "2026-12-30T00:00Z")),
    "now exactly on a boundary": Scenario("quarterly", "monthly", "2027-01-01T00:00Z", "2027-04-01T00:00Z"),
}


def _spec(table: str, interval: str, sc: Scenario, *, final: bool) -> dict:
    data = spec_data(table=table, interval=interval, timezone=sc.tz)
    data.pop("premake")
    if final:
        data["retention_grace"] = sc.grace
        if sc.premake:
            data["premake"] = sc.premake
        if sc.retention:
            data["retention"] = sc.retention
    return data


def _retention_state(conn, table: str) -> list:
    return conn.execute(
        "SELECT range_start, range_end, detached_at IS NOT NULL, dropped_at IS NOT NULL FROM partition_log"
        " WHERE parent_name = %s ORDER BY range_start, range_end, dropped_at IS NOT NULL", (table,)
    ).fetchall()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_both_faces_end_with_the_same_partitions(name, server, db_url, conn, tmp_path, monkeypatch, capsys):
    sc = SCENARIOS[name]
    monkeypatch.chdir(tmp_path)
    migrate(server, db_url)  # installs the SQL functions
    for table in ("t_py", "t_sql"):
        write_spec(tmp_path / table, _spec(table, sc.before, sc, final=False))
        result = run_cli(capsys, "apply", table, "--env", "test", "--database-url", db_url, "--now", sc.start, "--auto-approve")
        assert result.code == 0, result.err
        for at in sc.rows:
            conn.execute(f"INSERT INTO {table} (start_time) VALUES (%s)", (at,))

    write_spec(tmp_path / "t_py", _spec("t_py", sc.after, sc, final=True))
    result = run_cli(capsys, "apply", "t_py", "--env", "test", "--database-url", db_url, "--now", sc.now, "--auto-approve")
    assert result.code == 0, result.err

    write_spec(tmp_path / "t_sql", _spec("t_sql", sc.after, sc, final=True))
    wanted = desired_config(load_specs([tmp_path / "t_sql"], "test")[0]).to_dict()
    conn.execute(
        "UPDATE partition_config SET interval_months = %s, premake = %s::interval, retention = %s::interval,"
        " retention_grace = %s::interval, timezone = %s WHERE parent_name = 't_sql'",
        (wanted["interval_months"], wanted["premake"], wanted["retention"], wanted["retention_grace"], wanted["timezone"]),
    )
    conn.execute("SELECT manage_partitions('public.t_sql', %s)", (sc.now,))

    assert ranges(conn, "t_sql") == ranges(conn, "t_py")
    assert count(conn, "t_sql") == count(conn, "t_py")
    if sc.retention is None:
        assert count(conn, "t_py") == len(sc.rows)  # no row lost; with retention, detached rows leave the parent
    assert _retention_state(conn, "t_sql") == _retention_state(conn, "t_py")
    # and each face finds the other's result in shape
    again = run_cli(capsys, "plan", "t_sql", "--env", "test", "--database-url", db_url, "--now", sc.now, "--detailed-exitcode")
    assert again.code == 0, again.out
