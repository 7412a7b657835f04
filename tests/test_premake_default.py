"""The premake a spec gets when it gives none, by interval: daily 30 days, weekly 12 weeks, the month-based
intervals through the end of next calendar year (the original requirement's rule, and the SQL face's); and
partition_config records the premake in effect, in the form the SQL face reads."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dbtools import run_cli
from helpers import Layout, spec, spec_data, utc, write_spec

from partman.intervals import Interval, Span
from partman.plan import ActionKind
from partman.planner import desired_config, plan
from partman.snapshot import Snapshot
from partman.spec import DEFAULT_PREMAKE, load_specs

NOW = utc(2027, 2, 15, 12)  # a Monday


def loaded(tmp_path, **overrides):
    """A spec read from YAML, without a premake unless overrides give one."""
    data = spec_data(**overrides)
    if "premake" not in overrides:
        data.pop("premake")
    write_spec(tmp_path, data)
    return load_specs([tmp_path], "test")[0]


def creates(s, layout: Layout = None):
    snap = layout.snapshot() if layout else Snapshot(tables={})
    return [a for a in plan([s], snap, now=NOW, env="test").tables[0].actions if a.kind is ActionKind.CREATE]


def test_a_daily_spec_without_premake_plans_thirty_days_ahead(tmp_path):
    made = creates(loaded(tmp_path, interval="daily"))
    assert made[0].bounds.start == utc(2027, 2, 15)
    assert made[-1].bounds.end == utc(2027, 3, 18), "the day holding now + 30 days, made whole"
    assert len(made) == 31


def test_a_weekly_spec_without_premake_plans_twelve_weeks_ahead(tmp_path):
    made = creates(loaded(tmp_path, interval="weekly"))
    assert made[0].bounds.start == utc(2027, 2, 15)
    assert made[-1].bounds.end == utc(2027, 5, 17), "the week holding now + 12 weeks, made whole"
    assert len(made) == 13


@pytest.mark.parametrize("interval", ["monthly", "quarterly", "yearly"])
def test_a_month_based_spec_without_premake_plans_through_the_end_of_next_year(tmp_path, interval):
    made = creates(loaded(tmp_path, interval=interval))
    assert made[-1].bounds.end == utc(2029, 1, 1)


def test_an_explicit_premake_wins_over_the_default(tmp_path):
    assert creates(loaded(tmp_path, interval="daily", premake="3 days"))[-1].bounds.end == utc(2027, 2, 19)


def test_an_environment_that_overrides_only_the_interval_gets_that_intervals_default(tmp_path):
    s = loaded(tmp_path, interval="monthly", environments={"test": {"interval": "daily"}})
    assert (s.interval, s.premake) == (Interval.DAILY, Span(30, "days"))


def test_every_interval_has_a_default_and_only_the_finest_have_a_span():
    assert set(DEFAULT_PREMAKE) == set(Interval)
    assert {i for i, text in DEFAULT_PREMAKE.items() if text} == {Interval.DAILY, Interval.WEEKLY}


def test_partition_config_records_the_daily_default_premake_in_effect(tmp_path):
    config = desired_config(loaded(tmp_path, interval="daily")).to_dict()
    assert (config["interval_months"], config["premake"]) == (None, "30 days")


def test_partition_config_records_the_weekly_default_premake_in_days(tmp_path):
    assert desired_config(loaded(tmp_path, interval="weekly")).to_dict()["premake"] == "84 days"


def test_partition_config_records_null_for_a_monthly_default_as_the_sql_face_reads_it(tmp_path):
    config = desired_config(loaded(tmp_path, interval="monthly")).to_dict()
    assert (config["interval_months"], config["premake"]) == (1, None)


def test_the_shorter_default_never_drops_daily_partitions_made_further_ahead():
    layout = Layout()
    day = utc(2027, 2, 15)
    for _ in range(400):  # laid out through the end of next year, as the old default did
        layout.add(day, day + timedelta(days=1))
        day += timedelta(days=1)
    s = spec("daily", premake=DEFAULT_PREMAKE[Interval.DAILY])
    assert plan([s], layout.snapshot(), now=NOW, env="test").tables[0].actions == ()


# --- Against a real server. ---


def test_a_daily_table_without_premake_is_applied_thirty_days_ahead_and_records_it(capsys, workdir, db_url, conn):
    data = spec_data(interval="daily")
    data.pop("premake")
    write_spec(workdir / "specs", data)
    args = ("specs", "--env", "test", "--database-url", db_url, "--now", NOW.isoformat())
    result = run_cli(capsys, "apply", *args, "--auto-approve")
    assert result.code == 0, result.err
    assert conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'bookings'::regclass").fetchone() == (31,)
    assert conn.execute("SELECT interval_months, premake::text FROM partition_config").fetchone() == (None, "30 days")
    assert run_cli(capsys, "plan", *args, "--detailed-exitcode").code == 0


def test_drift_finds_a_daily_table_without_premake_in_sync_after_apply(capsys, workdir, db_url, conn):
    data = spec_data(interval="daily")
    data.pop("premake")
    write_spec(workdir / "specs", data)
    args = ("specs", "--env", "test", "--database-url", db_url, "--now", NOW.isoformat())
    assert run_cli(capsys, "apply", *args, "--auto-approve").code == 0
    result = run_cli(capsys, "drift", *args)
    assert result.code == 0, result.out
