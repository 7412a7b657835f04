"""What an operator sees while apply runs: progress per committed action, a lock wait said once with its holder,
and Ctrl-C as one line and 130."""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg

import faults
from dbtools import partitions, run_cli
from helpers import spec_data, write_spec
from partman.apply import apply_plan
from partman.audit import Context
from partman.observe import observe
from partman.spec import load_specs

NOW = "2027-02-15T12:00:00Z"
APPLY = ["apply", "specs", "--env", "test", "--now", NOW, "--auto-approve"]


def test_ctrl_c_during_apply_exits_130_with_one_line_and_the_next_apply_finishes(tmp_path, db_url, conn):
    write_spec(tmp_path / "specs", spec_data(premake="24 months"))
    with faults.Paused(APPLY, cwd=tmp_path, database_url=db_url, match="ATTACH PARTITION", nth=3) as paused:  # inside the first batch
        assert paused.boundary.kind == "statement"
        paused.proc.send_signal(signal.SIGINT)
    run = paused.run
    assert run.code == 130, run.out + run.err
    assert run.err.splitlines()[-1].startswith("error: interrupted:")
    assert "Traceback" not in run.err
    # The batch in flight (the parent and its first partitions) was rolled back: untouched.
    assert conn.execute("SELECT to_regclass('public.bookings')").fetchone()[0] is None
    finished = faults.run_partman(APPLY, cwd=tmp_path, database_url=db_url)
    assert finished.code == 0, finished.err
    assert len(partitions(conn, "bookings")) == 25


def test_a_lock_wait_is_said_once_naming_the_session_that_holds_it(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(premake="1 month"))
    assert run_cli(capsys, *APPLY, "--database-url", db_url).code == 0
    write_spec(workdir / "specs", spec_data(premake="3 months"))
    holder = psycopg.connect(db_url, autocommit=False, application_name="long-report")
    holder.execute("LOCK TABLE bookings IN ACCESS EXCLUSIVE MODE")
    pid = holder.info.backend_pid
    release = threading.Timer(2.5, holder.rollback)
    release.start()
    try:
        result = run_cli(capsys, *APPLY, "--database-url", db_url, "--lock-budget", "20")
    finally:
        release.join()
        holder.close()
    assert result.code == 0, result.err
    waits = [line for line in result.err.splitlines() if line.startswith("waiting:")]
    assert len(waits) == 1, result.err
    assert f"pid {pid} (long-report, idle in transaction for" in waits[0]
    assert waits[0].startswith("waiting: public.bookings")


def test_a_short_lock_wait_goes_unsaid(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(premake="1 month"))
    assert run_cli(capsys, *APPLY, "--database-url", db_url).code == 0
    write_spec(workdir / "specs", spec_data(premake="3 months"))
    holder = psycopg.connect(db_url, autocommit=False)
    holder.execute("LOCK TABLE bookings IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(0.2, holder.rollback)
    release.start()
    started = time.monotonic()
    try:
        result = run_cli(capsys, *APPLY, "--database-url", db_url)
    finally:
        release.join()
        holder.close()
    assert result.code == 0, result.err
    assert time.monotonic() - started < 10
    assert "waiting:" not in result.err


def test_a_long_apply_reports_each_committed_action_to_its_progress(db_url, conn):
    with tempfile.TemporaryDirectory() as tmp:
        write_spec(Path(tmp), spec_data(premake="60 months"))
        specs = load_specs([Path(tmp)], "test")
    now = datetime(2027, 2, 15, 12, tzinfo=timezone.utc)
    _, the_plan = observe(conn, specs, now=now, env="test", digests=True)
    told: list[tuple[str, int]] = []
    outcomes = apply_plan(conn, the_plan, specs, ctx=Context(schema="public", env="test", plan_id="p", now=now),
                          on_done=lambda table, steps: told.append((str(table), steps)))
    assert sum(steps for _, steps in told) == len(outcomes[0].actions) == 61
    assert {table for table, _ in told} == {"public.bookings"}
