"""Faults on purpose, on PostgreSQL 15 and 18: an apply killed (SIGKILL of the client) or cut off (its backend
terminated) at every boundary of a plan with creates, detaches, drops, an interval change and default-row
moves, then rerun once; and a deterministic pause that lets another session write at an exact point.

The scenario (two tables, one apply at NOW after a quarterly layout made at BEFORE):
- public.bookings, no default partition: quarterly -> monthly, retention 3 months with a 7-day grace. The plan
  detaches 2026 Q3 (retention, DETACH … CONCURRENTLY, its row stays in the detached table), drops the empty
  future 2027 Q2 (interval change: intent, concurrent detach, the future-data check, DROP) and creates 2027-04
  (after the drop that frees its range).
- public.events, with a default partition and move_default_rows: quarterly -> monthly, retention 3 months with
  grace 0 days. The plan detaches and drops 2026 Q3 at once (plain DETACH: a parent with a default cannot detach
  concurrently) and creates 2027-04, moving two rows out of the default partition; a row in 2030 stays there.
Rows sit in past, current, detached and default partitions; none sits where the plan drops."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import psycopg
import pytest

import faults
from helpers import spec_data, write_spec

BEFORE = "2026-07-15T00:00:00Z"
NOW = "2027-02-15T12:00:00Z"
TABLES = ("public.bookings", "public.events")

ROWS = {  # note -> (table inserted through, start_time)
    "bookings-2026q3-detached": ("bookings", "2026-08-01 10:00Z"),
    "bookings-2026q4-past": ("bookings", "2026-12-01 10:00Z"),
    "bookings-2027q1-current": ("bookings", "2027-02-10 10:00Z"),
    "events-2026q4-past": ("events", "2026-11-11 10:00Z"),
    "events-2027q1-current": ("events", "2027-02-03 10:00Z"),
    "events-default-2027-04-moves-a": ("events", "2027-04-05 10:00Z"),
    "events-default-2027-04-moves-b": ("events", "2027-04-20 10:00Z"),
    "events-default-2030-stays": ("events", "2030-01-01 10:00Z"),
}


def write_phase(specs: Path, phase: str) -> None:
    if phase == "before":
        write_spec(specs, spec_data("public.bookings", interval="quarterly", premake="9 months"), "bookings.yaml")
        write_spec(specs, spec_data("public.events", interval="quarterly", premake="6 months"), "events.yaml")
    else:
        write_spec(specs, spec_data("public.bookings", interval="monthly", premake="2 months", retention="3 months",
                                    retention_grace="7 days"), "bookings.yaml")
        write_spec(specs, spec_data("public.events", interval="monthly", premake="2 months", retention="3 months",
                                    retention_grace="0 days", move_default_rows=True), "events.yaml")


def apply_args(now: str = NOW) -> list[str]:
    # One connection: its statements are the boundaries, numbered the same in every run. Each table's statements are
    # the same on a connection of its own (tests/test_parallel.py interrupts a parallel run as a whole).
    return ["apply", "specs", "--env", "test", "--now", now, "--auto-approve", "--allow-clock-skew", "--parallelism", "1"]


def plan_args(now: str = NOW) -> list[str]:
    return ["plan", "specs", "--env", "test", "--now", now, "--detailed-exitcode"]


def admin(server):
    return psycopg.connect(server.admin_url, autocommit=True)


def copy_of(server, template: str, name: str) -> str:
    with admin(server) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return server.url_for(name)


def drop(server, name: str) -> None:
    with admin(server) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def state(url: str) -> dict:
    """What a run leaves: each table's partitions (name and bound), the standalone tables partman detached,
    every row by where it lives, and the pending intents."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SET TimeZone = 'UTC'")
        layout = c.execute(
            """SELECT p.relname, c.relname, pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
                WHERE p.relname IN ('bookings', 'events') ORDER BY 1, 3"""
        ).fetchall()
        leaves = [r[0] for r in c.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
            " AND (relname LIKE 'bookings%' OR relname LIKE 'events%') ORDER BY 1"
        ).fetchall()]
        rows: dict[str, list[str]] = {}
        for leaf in leaves:
            for (note,) in c.execute(f'SELECT note FROM public."{leaf}"').fetchall():
                rows.setdefault(note, []).append(leaf)
        attached = {r[1] for r in layout}
        pending = c.execute(
            "SELECT partition_name, pending_action FROM partition_log WHERE pending_action IS NOT NULL ORDER BY 1"
        ).fetchall()
    return {
        "layout": layout,
        "standalone": sorted(set(leaves) - attached),
        "rows": {k: sorted(v) for k, v in sorted(rows.items())},
        "pending": pending,
    }


@pytest.fixture(scope="session")
def scenario(server, tmp_path_factory):
    """The prepared database (a template: nothing stays connected to it), the project directory, the
    boundaries of the apply and what an unfaulted apply leaves."""
    work = tmp_path_factory.mktemp(f"faults-{server.label}")
    name = f"fault_scn_{uuid.uuid4().hex[:8]}"
    with admin(server) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = server.url_for(name)
    write_phase(work / "specs", "before")
    first = faults.run_partman(apply_args(BEFORE), cwd=work, database_url=url)
    assert first.code == 0, first.err
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE public.events_default PARTITION OF public.events DEFAULT")
        for note, (table, at) in ROWS.items():
            c.execute(f"INSERT INTO public.{table} (start_time, note) VALUES (%s, %s)", (at, note))
    write_phase(work / "specs", "after")

    ref_name = f"{name}_ref"
    ref_url = copy_of(server, name, ref_name)
    counted, boundaries = faults.count_boundaries(apply_args(), cwd=work, database_url=ref_url)
    assert counted.code == 0, counted.err
    converged = faults.run_partman(plan_args(), cwd=work, database_url=ref_url)
    assert converged.code == 0, converged.out + converged.err
    reference = state(ref_url)
    drop(server, ref_name)
    assert sorted(reference["rows"]) == sorted(ROWS), "the unfaulted apply itself lost rows"
    yield name, work, boundaries, reference, counted
    drop(server, name)


def test_the_fault_grammar():
    assert faults.parse("kill:37") == faults._Plan("kill", k=37)
    assert faults.parse("terminate:match=DETACH PARTITION:2") == faults._Plan("terminate", match=("DETACH PARTITION",), nth=2)
    assert faults.parse("pause:match=COMMITTED&&ATTACH PARTITION:/tmp/x/p") == faults._Plan(
        "pause", match=("COMMITTED", "ATTACH PARTITION"), nth=1, path="/tmp/x/p")
    assert faults.parse("kill:match='2027-04-01 00:00:00+00:00'::timestamptz") == faults._Plan(
        "kill", match=("'2027-04-01 00:00:00+00:00'::timestamptz",))
    assert faults.parse("count:/tmp/b.tsv") == faults._Plan("count", path="/tmp/b.tsv")
    assert faults.spec("terminate", match="DETACH PARTITION", nth=2) == "terminate:match=DETACH PARTITION:2"
    for bad in ("explode:3", "kill:", "kill:x", "pause:3", "kill:match=:1"):
        with pytest.raises(ValueError):
            faults.parse(bad)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def problems_of_stderr(label: str, err: str) -> list[str]:
    found = []
    if "Traceback" in err:
        found.append(f"{label}: traceback on stderr")
    lines = error_lines(err)
    if len(lines) > len(TABLES):
        found.append(f"{label}: {len(lines)} stderr lines for {len(TABLES)} tables")
    return found


def test_the_scenario_plan_has_every_kind_of_action(scenario):
    _, _, boundaries, reference, counted = scenario
    texts = [b.text for b in boundaries]
    assert any("DETACH PARTITION" in t and "CONCURRENTLY" in t for t in texts)  # bookings: retention, interval change
    assert any("DETACH PARTITION" in t and "CONCURRENTLY" not in t for t in texts)  # events: beside a default
    assert sum(t.startswith("DROP TABLE") for t in texts) == 2
    assert any(t.startswith("WITH moved AS (DELETE FROM") for t in texts)
    assert "Apply complete: 2 created, 2 detached, 2 dropped in 2 tables." in counted.out
    assert reference["rows"]["events-default-2027-04-moves-a"] == ["events_2027_04"]
    assert reference["rows"]["events-default-2030-stays"] == ["events_default"]
    assert reference["rows"]["bookings-2026q3-detached"] == ["bookings_2026_q3"]
    assert reference["standalone"] == ["bookings_2026_q3"]


# Every boundary for both modes, none taken as standing for another (slower: about 3x the kills).
EVERY = os.environ.get("PARTMAN_TEST_FAULTS_EVERY") == "1"


@pytest.mark.parametrize("mode", ["kill", "terminate"])
def test_an_apply_interrupted_at_any_boundary_converges_in_one_more_run(server, scenario, mode):
    template, work, boundaries, reference, _ = scenario
    groups = [(b, [b]) for b in boundaries] if EVERY else faults.distinct(boundaries, mode)
    assert sum(len(members) for _, members in groups) >= len(boundaries) - 1, "every boundary is covered"
    failures: list[str] = []
    times: list[tuple[float, int]] = []
    t0 = time.monotonic()
    with faults.Zygote() as zygote:
        for b, members in groups:
            name = f"{template}_{mode[0]}{b.k}"
            t1 = time.monotonic()
            url = copy_of(server, template, name)
            try:
                found = _one(zygote, b, mode, url, work, reference)
            finally:
                drop(server, name)
            times.append((time.monotonic() - t1, b.k))
            if found and len(members) > 1:
                found[0] += f"\n  (the same point as boundaries {members[0].k}..{members[-1].k} for {mode})"
            failures += found
    took = time.monotonic() - t0
    slowest = ", ".join(f"k={k} {t:.1f} s" for t, k in sorted(times, reverse=True)[:5])
    print(f"\n{server.label} {mode}: {len(groups)} runs for {len(boundaries)} boundaries in {took:.1f} s; slowest: {slowest}")
    assert not failures, (
        f"{len(failures)} of {len(groups)} faulted runs failed ({mode}, {server.label}, {len(boundaries)} boundaries):\n"
        + "\n\n".join(failures)
    )


def _one(zygote: faults.Zygote, b: faults.Boundary, mode: str, url: str, work: Path, reference: dict) -> list[str]:
    faulted = zygote.run(apply_args(), cwd=work, database_url=url, fault=faults.spec(mode, b.k))
    rerun = faults.run_in_process(apply_args(), cwd=work, database_url=url)
    after = faults.run_in_process(plan_args(), cwd=work, database_url=url)
    found: list[str] = []
    if faulted.hit is None:
        found.append("the fault never fired (the run's boundaries differ from the count run's)")
    elif faulted.hit["k"] != b.k or faulted.hit["text"] != b.text:
        found.append(f"the fault fired at #{faulted.hit['k']} {faulted.hit['text'][:120]}, not at the counted boundary")
    if mode == "kill" and not faulted.killed and faulted.hit is not None:
        found.append(f"faulted run: exit {faulted.code}, not killed")
    if mode == "terminate":
        if faulted.code not in (1, 3, 4):
            found.append(f"faulted run: exit {faulted.code}, not 1, 3 or 4")
        found += problems_of_stderr("faulted run", faulted.err)
    if rerun.code != 0:
        found.append(f"rerun: exit {rerun.code}")
    found += problems_of_stderr("rerun", rerun.err)
    if after.code != 0:
        found.append(f"plan after the rerun: exit {after.code} (not converged)")
    found += problems_of_stderr("plan after the rerun", after.err)
    now = state(url)
    lost = sorted(set(ROWS) - set(now["rows"]))
    doubled = sorted(n for n, where in now["rows"].items() if len(where) > 1)
    if lost:
        found.append(f"rows lost: {lost}")
    if doubled:
        found.append(f"rows duplicated: {doubled}")
    if not lost and not doubled and now["rows"] != reference["rows"]:
        moved = {n: (now['rows'][n], reference['rows'][n]) for n in ROWS if now["rows"].get(n) != reference["rows"].get(n)}
        found.append(f"rows are elsewhere than after an unfaulted apply (now, expected): {moved}")
    for key in ("layout", "standalone", "pending"):
        if now[key] != reference[key]:
            found.append(f"{key} differs from an unfaulted apply: {_diff(now[key], reference[key])}")
    if not found:
        return []
    return ["\n".join([
        f"k={b.k} [{b.kind}] {b.text[:300]}",
        *("  - " + f for f in found),
        f"  faulted: exit {faulted.code}; stderr: {_tail(faulted.err)}",
        f"  rerun:   exit {rerun.code}; stderr: {_tail(rerun.err)}",
        f"  plan:    exit {after.code}; {_changes(after.out)}",
    ])]


def _diff(now: list, expected: list) -> str:
    def items(xs):
        return {tuple(x) if isinstance(x, (list, tuple)) else x for x in xs}

    return f"extra {sorted(items(now) - items(expected))}, missing {sorted(items(expected) - items(now))}"


def _tail(err: str, lines: int = 6) -> str:
    kept = error_lines(err)
    return " | ".join(kept[-lines:]) if kept else "(empty)"


def _changes(out: str) -> str:
    marks = [line.strip() for line in out.splitlines() if line.strip()[:1] in "+-~!x"]
    return "pending: " + " | ".join(marks[:8]) if marks else "no changes"


def test_a_row_written_during_a_pause_after_the_creates_commit_blocks_the_drop(server, db_url, tmp_path):
    """Paused just after the creates that need no drop have committed, another session writes into the
    partition the interval change is about to drop; released, apply must keep it (exit 3) and lose nothing."""
    specs = tmp_path / "specs"
    write_spec(specs, spec_data("public.bookings", interval="quarterly", premake="3 months"), "bookings.yaml")
    first = faults.run_in_process(apply_args(), cwd=tmp_path, database_url=db_url)
    assert first.code == 0, first.err
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("INSERT INTO bookings (start_time, note) VALUES ('2027-02-10Z', 'current')")
    write_spec(specs, spec_data("public.bookings", interval="monthly", premake="6 months"), "bookings.yaml")

    with faults.Paused(apply_args(), cwd=tmp_path, database_url=db_url, match="COMMITTED&&ATTACH PARTITION") as paused:
        assert "bookings_2027_07" in paused.boundary.text, paused.boundary.short()
        with psycopg.connect(db_url, autocommit=True) as c:
            made = c.execute("SELECT to_regclass('bookings_2027_07') IS NOT NULL, to_regclass('bookings_2027_q2') IS NOT NULL").fetchone()
            assert made == (True, True), "paused after the creates committed, before anything was dropped"
            c.execute("INSERT INTO bookings (start_time, note) VALUES ('2027-05-05Z', 'written during the pause')")
    run = paused.run
    assert run.code == 3, run.out + run.err
    assert "Traceback" not in run.err
    assert "bookings_2027_q2 holds rows" in run.err, run.err
    with psycopg.connect(db_url, autocommit=True) as c:
        rows = sorted(c.execute("SELECT note, tableoid::regclass::text FROM bookings").fetchall())
        attached = c.execute("SELECT relispartition FROM pg_class WHERE relname = 'bookings_2027_q2'").fetchone()
    assert rows == [("current", "bookings_2027_q1"), ("written during the pause", "bookings_2027_q2")]
    assert attached == (True,)
