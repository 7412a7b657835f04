"""Every detach, drop and re-attach in a plan shows a row figure, on PostgreSQL 15 and 18: the planner's estimate
where the partition has statistics, else an exact count that stops at a cap, else why it could not be counted
(locked by another session for the whole ladder, or not readable by the connected role); and the figure is
carried, not checked: a saved plan keeps it, and rows that arrive after the plan never make it stale."""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager

import psycopg
from hypothesis import given
from hypothesis import strategies as st

from dbtools import run_cli
from helpers import BOOKINGS, spec_data, utc, write_spec

from partman import render
from partman.catalog import ROW_COUNT_CAP
from partman.model import Bounds, TableRef
from partman.plan import Action, ActionKind, Plan, Reason, RowCount, TablePlan
from partman.planner import NOT_COUNTED_LOCKED, with_row_counts

NOW = "2027-02-15T12:00:00Z"
BUDGET = ("--lock-timeout-ms", "50", "--lock-budget", "0.5")
NOVEMBER = "public.bookings_2026_11"


def cli(capsys, db_url, command, *extra, now=NOW):
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", db_url, "--now", now, *extra)


def retiring_november(capsys, workdir, db_url, conn, rows: int, **spec) -> None:
    """A monthly table laid out from November 2026 with `rows` rows in November, never analyzed (autovacuum
    kept off it, so reltuples stays -1), and a spec whose retention retires November, and only it, at NOW."""
    write_spec(workdir / "specs", spec_data(premake="3 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve", now="2026-11-10T00:00:00Z").code == 0
    conn.execute("ALTER TABLE bookings_2026_11 SET (autovacuum_enabled = false)")
    conn.execute("INSERT INTO bookings (start_time) SELECT '2026-11-15Z' FROM generate_series(1, %s)", (rows,))
    write_spec(workdir / "specs", spec_data(premake="3 months", retention="2 months", **spec))


def detach_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"  - detach   {NOVEMBER}"))


@contextmanager
def held(db_url: str, relation: str):
    with psycopg.connect(db_url) as other:
        other.execute(f"LOCK TABLE {relation} IN ACCESS EXCLUSIVE MODE")
        yield
        other.rollback()


def test_a_never_analyzed_partition_due_for_detach_shows_its_exact_row_count(capsys, workdir, db_url, conn):
    retiring_november(capsys, workdir, db_url, conn, 12)
    result = cli(capsys, db_url, "plan")
    assert result.code == 0, result.err
    assert detach_line(result.out).endswith("retention  (12 rows)")


def test_an_empty_never_analyzed_partition_shows_zero_rows_empty(capsys, workdir, db_url, conn):
    retiring_november(capsys, workdir, db_url, conn, 0)
    assert detach_line(cli(capsys, db_url, "plan").out).endswith("(0 rows (empty))")


def test_an_analyzed_partition_shows_the_planners_estimate(capsys, workdir, db_url, conn):
    retiring_november(capsys, workdir, db_url, conn, 12)
    conn.execute("ANALYZE bookings_2026_11")
    assert detach_line(cli(capsys, db_url, "plan").out).endswith("(~12 rows)")


def test_a_partition_past_the_cap_shows_at_least_the_cap(capsys, workdir, db_url, conn):
    retiring_november(capsys, workdir, db_url, conn, ROW_COUNT_CAP + 1)
    assert detach_line(cli(capsys, db_url, "plan").out).endswith(f"(≥ {ROW_COUNT_CAP:,} rows)")


def test_a_partition_of_exactly_the_cap_shows_its_exact_count(capsys, workdir, db_url, conn):
    retiring_november(capsys, workdir, db_url, conn, ROW_COUNT_CAP)
    assert detach_line(cli(capsys, db_url, "plan").out).endswith(f"({ROW_COUNT_CAP:,} rows)")


def test_a_partition_locked_for_the_whole_ladder_says_its_rows_were_not_counted(capsys, workdir, db_url, conn):
    retiring_november(capsys, workdir, db_url, conn, 12)
    with held(db_url, "bookings_2026_11"):
        result = cli(capsys, db_url, "plan", *BUDGET)
    assert result.code == 0, result.err
    assert detach_line(result.out).endswith(f"(rows not counted: {NOT_COUNTED_LOCKED})")


def test_a_partition_the_role_may_not_read_says_its_rows_were_not_counted_and_still_plans(capsys, workdir, db_url, conn):
    retiring_november(capsys, workdir, db_url, conn, 12)
    role = f"counter_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} LOGIN")
    for (relation,) in conn.execute("SELECT 'bookings' UNION ALL SELECT inhrelid::regclass::text FROM pg_inherits"
                                    " WHERE inhparent = 'bookings'::regclass").fetchall():
        conn.execute(f"ALTER TABLE {relation} OWNER TO {role}")
    conn.execute(f"GRANT SELECT ON partition_log, partition_config TO {role}")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    conn.execute(f"REVOKE SELECT ON bookings_2026_11 FROM {role}")  # even its owner may be refused a read
    url = psycopg.conninfo.make_conninfo(db_url, user=role)
    result = run_cli(capsys, "plan", "specs", "--env", "test", "--database-url", url, "--now", NOW)
    assert result.code == 0, result.err
    assert detach_line(result.out).endswith("(rows not counted: no SELECT privilege on it)")


def test_the_markdown_review_table_shows_the_count_of_the_detach_and_of_its_drop(capsys, workdir, db_url, conn):
    retiring_november(capsys, workdir, db_url, conn, 3, retention_grace="0 days")
    out = cli(capsys, db_url, "plan", "--format", "markdown").out
    rows = [line for line in out.splitlines() if f"`{NOVEMBER}`" in line]
    assert [(r.split(" | ")[0], r.rstrip(" |").split(" | ")[-1]) for r in rows] == [("| detach", "3 rows"), ("| drop", "3 rows")]


def test_the_json_plan_carries_the_count_beside_the_missing_estimate(capsys, workdir, db_url, conn):
    retiring_november(capsys, workdir, db_url, conn, 1)
    doc = json.loads(cli(capsys, db_url, "plan", "--format", "json").out)
    detach = next(a for a in doc["tables"][0]["actions"] if a["action"] == "detach")
    assert (detach["rows_estimate"], detach["rows_counted"]) == (None, {"rows": 1, "capped": False})
    creates = [a for a in doc["tables"][0]["actions"] if a["action"] == "create"]
    assert creates and all("rows_counted" not in a for a in creates), "only what leaves or returns is counted"


def test_a_saved_plan_keeps_its_count_and_rows_arriving_after_it_do_not_make_it_stale(capsys, workdir, db_url, conn):
    from partman import planfile

    retiring_november(capsys, workdir, db_url, conn, 5)
    assert cli(capsys, db_url, "plan", "--out", "plan.json").code == 0
    saved = planfile.read(workdir / "plan.json")
    detach = next(a for a in saved.plan.tables[0].actions if a.kind is ActionKind.DETACH)
    assert detach.rows_counted == RowCount(5) and detach.rows == 5
    conn.execute("INSERT INTO bookings (start_time) SELECT '2026-11-20Z' FROM generate_series(1, 7)")
    result = run_cli(capsys, "apply", "plan.json", "--database-url", db_url)
    assert result.code == 0, result.err
    assert conn.execute("SELECT relispartition FROM pg_class WHERE relname = 'bookings_2026_11'").fetchone() == (False,)


# --- The figure itself, without a database. ---

CAP = 10


@given(st.integers(0, CAP + 1))
def test_a_count_up_to_the_cap_is_exact_and_one_past_it_is_at_least_the_cap(seen):
    counted = RowCount.of(seen, CAP)
    assert counted.capped is (seen > CAP)
    assert counted.rows == min(seen, CAP)


def _detach(**fields) -> Action:
    return Action(ActionKind.DETACH, TableRef("public", "bookings_2026_11"), Bounds(utc(2026, 11, 1), utc(2026, 12, 1)),
                  Reason.RETENTION, oid=7, **fields)


def _plan(*actions: Action) -> Plan:
    return Plan("prod", utc(2027, 2, 15), (TablePlan(BOOKINGS, "specs/bookings.yaml:1", None, "f", actions=actions),))


counts = st.one_of(
    st.builds(RowCount.of, st.integers(0, 10**9), st.integers(0, 10**6)),
    st.builds(RowCount, why_not=st.sampled_from([NOT_COUNTED_LOCKED, "no SELECT privilege on it"])),
)


@given(counts)
def test_a_count_survives_the_json_of_a_saved_plan(counted):
    action = _detach(rows_counted=counted)
    again = Action.from_dict(json.loads(json.dumps(action.to_dict(saved=True))), None)
    assert again.rows_counted == counted and again == action


@given(counts)
def test_a_count_is_no_part_of_an_actions_identity(counted):
    assert _detach(rows_counted=counted) == _detach()
    assert hash(_detach(rows_counted=counted)) == hash(_detach())


def test_an_action_with_an_estimate_is_never_given_a_count():
    estimated = _detach(rows_estimate=40)
    planned = with_row_counts(_plan(estimated), {7: 3}, cap=CAP)
    assert planned.tables[0].actions[0].rows_counted is None
    assert render.text(planned).count("(~40 rows)") == 1


def test_the_best_row_figure_is_the_estimate_then_the_count():
    assert _detach(rows_estimate=40, rows_counted=RowCount(3)).rows == 40
    assert _detach(rows_counted=RowCount(3)).rows == 3
    assert _detach(rows_counted=RowCount(why_not=NOT_COUNTED_LOCKED)).rows is None


def test_one_row_is_one_row():
    planned = with_row_counts(_plan(_detach()), {7: 1}, cap=CAP)
    assert "retention  (1 row)" in render.text(planned)


def test_a_plan_made_without_a_database_says_its_rows_were_not_counted():
    assert "retention  (rows not counted)" in render.text(_plan(_detach()))
