"""A conversion killed (SIGKILL of partman) or cut off (its backend terminated) at every statement boundary, on
PostgreSQL 15 and 18: the application always finds a table of that name, and one more run finishes the
conversion with every row, the view, the foreign keys and the identity as an unfaulted run leaves them."""

from __future__ import annotations

import uuid

import psycopg
import pytest

import faults
from helpers import write_spec
from test_convert import SCHEMA, spec
from test_faults import admin, copy_of, drop, problems_of_stderr

NOW = "2026-12-03T10:00:00+00:00"


def apply_args() -> list[str]:
    return ["apply", "specs", "--now", NOW, "--auto-approve", "--allow-clock-skew"]


def plan_args() -> list[str]:
    return ["plan", "specs", "--now", NOW, "--detailed-exitcode"]


def state(url: str) -> dict:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SET TimeZone = 'UTC'")
        return {
            "kind": c.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('public.events')").fetchone(),
            "rows": c.execute("SELECT count(*), md5(string_agg(id || '|' || at, ',' ORDER BY id)) FROM events").fetchone(),
            "partitions": c.execute("SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c"
                                    " ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass ORDER BY 1").fetchall(),
            "view": c.execute("SELECT count(*) FROM recent").fetchone(),
            "unproven": c.execute("SELECT conname FROM pg_constraint WHERE NOT convalidated AND conparentid = 0").fetchall(),
            "checks": c.execute("SELECT conname FROM pg_constraint WHERE conname LIKE '%partman_cutover%'").fetchall(),
            "log": c.execute("SELECT partition_name, range_start::text, range_end::text FROM partition_log"
                             " WHERE dropped_at IS NULL ORDER BY 1").fetchall(),
            "next_id": c.execute("SELECT nextval(pg_get_serial_sequence('events', 'id'))").fetchone(),
        }


@pytest.fixture(scope="session")
def conversion(server, tmp_path_factory):
    work = tmp_path_factory.mktemp(f"convert-faults-{server.label}")
    name = f"conv_{uuid.uuid4().hex[:8]}"
    app = f"app_{name}"
    with admin(server) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = server.url_for(name)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(SCHEMA.format(app=app))
    write_spec(work / "specs", spec(), "events.yaml")
    reference_db = f"{name}_ref"
    reference_url = copy_of(server, name, reference_db)
    counted, boundaries = faults.count_boundaries(apply_args(), cwd=work, database_url=reference_url)
    assert counted.code == 0, counted.err
    reference = state(reference_url)
    drop(server, reference_db)
    assert reference["kind"] == ("p",) and reference["unproven"] == [] and reference["checks"] == []
    yield name, work, boundaries, reference
    drop(server, name)
    with admin(server) as c:
        c.execute(f'DROP ROLE IF EXISTS "{app}"')


@pytest.mark.parametrize("mode", ["kill", "terminate"])
def test_a_conversion_interrupted_at_any_boundary_is_finished_by_the_next_run(server, conversion, mode):
    template, work, boundaries, reference = conversion
    failures = []
    with faults.Zygote() as zygote:
        for b, _ in faults.distinct(boundaries, mode):
            name = f"{template}_{mode[0]}{b.k}"
            url = copy_of(server, template, name)
            try:
                failures += _one(zygote, b, mode, url, work, reference)
            finally:
                drop(server, name)
    assert not failures, f"{len(failures)} faulted conversions went wrong ({mode}, {len(boundaries)} boundaries):\n" + "\n".join(failures)


def _one(zygote, b, mode, url, work, reference) -> list[str]:
    faulted = zygote.run(apply_args(), cwd=work, database_url=url, fault=faults.spec(mode, b.k))
    found = []
    if faulted.hit is None:
        found.append("the fault never fired")
    with psycopg.connect(url, autocommit=True) as c:
        if c.execute("SELECT to_regclass('public.events')").fetchone()[0] is None:
            found.append("after the faulted run there is no table named events")
    rerun = faults.run_in_process(apply_args(), cwd=work, database_url=url)
    after = faults.run_in_process(plan_args(), cwd=work, database_url=url)
    if rerun.code != 0:
        found.append(f"rerun: exit {rerun.code}: {rerun.err.strip()[-300:]}")
    if after.code != 0:
        found.append(f"plan after the rerun: exit {after.code}: {after.out.strip()[-300:]}")
    found += problems_of_stderr("faulted run", faulted.err) if mode == "terminate" else []
    found += problems_of_stderr("rerun", rerun.err)
    now = state(url)
    for key, value in reference.items():
        if now[key] != value:
            found.append(f"{key}: {now[key]!r}, not {value!r} as after an unfaulted run")
    return [f"k={b.k} [{b.kind}] {b.text[:200]}\n  - " + "\n  - ".join(found)] if found else []
