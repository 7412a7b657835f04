"""partman in the pipeline, end to end on real PostgreSQL: saved plans, protected environments, drift."""

from __future__ import annotations

import json

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dbtools import partitions, run_cli
from helpers import spec_data, write_spec

NOW = "2027-02-15T12:00:00Z"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(capsys, *args):
    return run_cli(capsys, *args)


def apply(capsys, db_url, *extra, now=NOW, specs="specs", env="test"):
    return cli(capsys, "apply", specs, "--env", env, "--database-url", db_url, "--now", now, "--auto-approve", *extra)


def plan_to_file(capsys, db_url, path, *extra, now=NOW, specs="specs", env="test"):
    return cli(capsys, "plan", specs, "--env", env, "--database-url", db_url, "--now", now, "--out", str(path), *extra)


def audit(conn):
    return conn.execute("SELECT action, partition_name, reason, plan_id FROM partition_audit_log WHERE action <> 'config' ORDER BY id").fetchall()


# Saved plans

def test_a_saved_plan_applied_unchanged_does_exactly_its_actions(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="quarterly", premake="9 months"))
    assert apply(capsys, db_url).code == 0
    conn.execute("INSERT INTO bookings (start_time) VALUES ('2027-05-05Z')")
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="9 months"))
    made = plan_to_file(capsys, db_url, workdir / "plan.json")
    assert made.code == 0, made.err
    saved = json.loads((workdir / "plan.json").read_text())
    planned = [(a["action"], a["partition"].split(".", 1)[1], a["reason"]) for t in saved["plan"]["tables"] for a in t["actions"]]
    before = len(audit(conn))

    result = cli(capsys, "apply", "plan.json", "--database-url", db_url)
    assert result.code == 0, result.err
    done = [(a, p, r) for a, p, r, _ in audit(conn)[before:]]
    assert sorted(done) == sorted(planned)
    assert {pid for *_, pid in audit(conn)[before:]} == {saved["plan_id"]}
    assert cli(capsys, "plan", "specs", "--env", "test", "--database-url", db_url, "--now", NOW, "--detailed-exitcode").code == 0


def test_a_saved_plan_is_refused_after_a_manual_create_naming_it(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="1 month"))
    assert apply(capsys, db_url).code == 0
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="6 months"))
    assert plan_to_file(capsys, db_url, workdir / "plan.json").code == 0
    conn.execute("CREATE TABLE bookings_2027_07 PARTITION OF bookings FOR VALUES FROM ('2027-07-01Z') TO ('2027-08-01Z')")
    before = (partitions(conn, "bookings"), audit(conn))
    result = cli(capsys, "apply", "plan.json", "--database-url", db_url)
    assert result.code == 1
    assert "public.bookings_2027_07 was created since the plan was made" in result.err
    assert "run plan again" in result.err
    assert (partitions(conn, "bookings"), audit(conn)) == before


def test_a_saved_plan_is_refused_after_a_manual_drop_naming_it(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months"))
    assert apply(capsys, db_url).code == 0
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="6 months"))
    assert plan_to_file(capsys, db_url, workdir / "plan.json").code == 0
    conn.execute("DROP TABLE bookings_2027_03")
    before = partitions(conn, "bookings")
    result = cli(capsys, "apply", "plan.json", "--database-url", db_url)
    assert result.code == 1
    assert "public.bookings_2027_03 was dropped or detached since the plan was made" in result.err
    assert partitions(conn, "bookings") == before


def test_a_saved_plan_is_refused_when_a_drop_candidate_gained_rows(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="quarterly", premake="6 months"))
    assert apply(capsys, db_url).code == 0
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="6 months"))
    assert plan_to_file(capsys, db_url, workdir / "plan.json").code == 0
    conn.execute("INSERT INTO bookings (start_time) VALUES ('2027-05-05Z')")
    result = cli(capsys, "apply", "plan.json", "--database-url", db_url)
    assert result.code == 1
    assert "public.bookings_2027_q2 now holds rows; it did not when the plan was made" in result.err


def test_a_saved_plan_is_refused_on_another_database(capsys, workdir, db_url, server, conn):
    write_spec(workdir / "specs", spec_data())
    assert plan_to_file(capsys, db_url, workdir / "plan.json").code == 0
    other = "t_other_" + db_url.rsplit("=", 1)[-1][-6:]
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{other}"')
    try:
        result = cli(capsys, "apply", "plan.json", "--database-url", server.url_for(other))
        assert result.code == 1
        assert "was made for database t_" in result.err and f"this connection is to database {other}" in result.err
    finally:
        with psycopg.connect(server.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{other}" WITH (FORCE)')


def test_a_plan_file_whose_spec_was_edited_is_refused(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data())
    assert plan_to_file(capsys, db_url, workdir / "plan.json").code == 0
    data = json.loads((workdir / "plan.json").read_text())
    data["specs"][0]["interval"] = "daily"
    (workdir / "plan.json").write_text(json.dumps(data))
    result = cli(capsys, "apply", "plan.json", "--database-url", db_url)
    assert result.code == 1 and "was altered after the plan was made" in result.err


def test_a_saved_plan_applies_once(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data())
    assert plan_to_file(capsys, db_url, workdir / "plan.json").code == 0
    assert cli(capsys, "apply", "plan.json", "--database-url", db_url).code == 0
    again = cli(capsys, "apply", "plan.json", "--database-url", db_url)
    assert again.code == 1 and "was created since the plan was made" in again.err


# Protected environments

def test_a_protected_environment_creates_but_refuses_ad_hoc_drops(capsys, workdir, db_url, conn):
    (workdir / "partman.yaml").write_text("environments:\n  prod: {protected: true}\n")
    write_spec(workdir / "specs", spec_data(interval="quarterly", premake="6 months", environments={"prod": {}}))
    assert apply(capsys, db_url, env="prod").code == 0
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="9 months", retention="1 month",
                                            retention_grace="0 days", environments={"prod": {}}))
    before = dict(partitions(conn, "bookings"))
    result = apply(capsys, db_url, env="prod", now="2027-05-15T00:00:00Z")
    assert result.code == 1
    assert "prod is protected" in result.err and "--out plan.json" in result.err
    after = dict(partitions(conn, "bookings"))
    assert set(before) <= set(after), "nothing was detached or dropped"
    assert "bookings_2027_10" in after, "creates that need no drop went ahead"
    assert "bookings_2027_q3" in after and "bookings_2027_07" not in after

    assert plan_to_file(capsys, db_url, workdir / "plan.json", now="2027-05-15T00:00:00Z", env="prod").code == 0
    reviewed = cli(capsys, "apply", "plan.json", "--database-url", db_url)
    assert reviewed.code == 0, reviewed.err
    after = dict(partitions(conn, "bookings"))
    assert "bookings_2027_q3" not in after and "bookings_2027_07" in after
    assert "bookings_2027_q1" not in after  # expired (retention 1 month) and dropped with no grace


# Markdown

def test_markdown_plans_are_identical_for_an_unchanged_plan(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="3 months"))
    args = ("plan", "specs", "--env", "test", "--database-url", db_url, "--format", "markdown")
    first, second = cli(capsys, *args), cli(capsys, *args)
    assert first.out == second.out
    assert first.out.startswith("<!-- partman-plan:test -->\n")
    assert "**Plan: 4 to create, 0 to detach, 0 to drop, 1 table to create, 1 config to update (test)**" in first.out
    assert "<details><summary>All 6 changes</summary>" in first.out


# Drift

def drift(capsys, db_url, *extra, now=NOW):
    return cli(capsys, "drift", "specs", "--env", "test", "--database-url", db_url, "--now", now, *extra)


def kinds(result) -> set[str]:
    return {(f["kind"], (f["partition"] or "").split(".")[-1]) for t in json.loads(result.out)["tables"] for f in t["findings"]}


def test_drift_reports_runway_missing_gaps_expired_and_grace_and_clears_after_apply(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months", retention="6 weeks", retention_grace="3 days"))
    assert apply(capsys, db_url, now="2026-12-10T00:00:00Z").code == 0
    assert apply(capsys, db_url, now="2027-03-05T00:00:00Z").code == 0  # cutoff 2027-01-22: detaches December
    conn.execute("ALTER TABLE bookings DETACH PARTITION bookings_2027_04")
    conn.execute("DROP TABLE bookings_2027_04")  # a hole inside the horizon
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="6 months", retention="6 weeks", retention_grace="3 days"))
    result = drift(capsys, db_url, "--format", "json", now="2027-03-20T00:00:00Z")  # cutoff 2027-02-06
    assert result.code == 2
    found = kinds(result)
    assert ("runway", "") in found
    assert ("missing", "bookings_2027_04") in found and ("gap", "") in found  # each missing partition is named
    assert ("expired", "bookings_2027_01") in found
    assert ("grace_elapsed", "bookings_2026_12") in found
    assert ("pending_changes", "") in found
    assert apply(capsys, db_url, now="2027-03-20T00:00:00Z").code == 0
    clean = drift(capsys, db_url, now="2027-03-20T00:00:00Z")
    assert clean.code == 0, clean.out
    assert clean.out.rstrip().endswith("No drift.")


def test_drift_reports_unmanaged_partitions_and_rows_in_the_default(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months"))
    assert apply(capsys, db_url).code == 0
    conn.execute("CREATE TABLE by_hand PARTITION OF bookings FOR VALUES FROM ('2030-01-01Z') TO ('2030-02-01Z')")
    conn.execute("CREATE TABLE bookings_default PARTITION OF bookings DEFAULT")
    conn.execute("INSERT INTO bookings (start_time) SELECT '2031-01-01Z'::timestamptz + g * interval '1 hour' FROM generate_series(1, 5) g")
    result = drift(capsys, db_url, "--format", "json")
    assert result.code == 2
    assert {("unmanaged", "by_hand"), ("default_rows", "bookings_default")} <= kinds(result)
    assert json.loads(result.out)["tables"][0]["default_rows"] == 5


def test_drift_reports_a_missing_parent_and_one_partitioned_otherwise(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(table="absent"), "absent.yaml")
    write_spec(workdir / "specs", spec_data(table="listy"), "listy.yaml")
    conn.execute("CREATE TABLE listy (id bigint, start_time timestamptz) PARTITION BY LIST (id)")
    result = drift(capsys, db_url, "--format", "json")
    assert result.code == 2
    details = {t["table"]: [f["detail"] for f in t["findings"] if f["kind"] == "parent"] for t in json.loads(result.out)["tables"]}
    assert details["public.absent"] == ["public.absent does not exist"]
    assert details["public.listy"] == ["public.listy is partitioned by list; partman manages tables partitioned by range"]


def test_drift_prometheus_output_parses_and_is_written_atomically(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(table="fine", interval="monthly", premake="2 months"), "fine.yaml")
    write_spec(workdir / "specs", spec_data(table="short", interval="monthly", premake="2 months"), "short.yaml")
    assert apply(capsys, db_url).code == 0
    write_spec(workdir / "specs", spec_data(table="short", interval="monthly", premake="8 months"), "short.yaml")
    result = drift(capsys, db_url, "--format", "prometheus", "--prometheus-file", str(workdir / "partman.prom"))
    assert result.code == 2
    assert (workdir / "partman.prom").read_text() == result.out
    families = {f.name: f for f in text_string_to_metric_families(result.out)}
    assert set(families) >= {"partman_runway_seconds", "partman_missing_partitions", "partman_unmanaged_partitions",
                             "partman_default_rows", "partman_drift", "partman_last_run_timestamp_seconds"}
    drift_of = {(s.labels["table"], s.labels["kind"]): s.value for s in families["partman_drift"].samples}
    assert drift_of[("public.fine", "runway")] == 0 and drift_of[("public.short", "runway")] == 1
    assert all(v == 0 for (table, _), v in drift_of.items() if table == "public.fine")
    runway = {s.labels["table"]: s.value for s in families["partman_runway_seconds"].samples}
    assert runway["public.fine"] == runway["public.short"] > 0
    assert all(s.labels["env"] == "test" for s in families["partman_missing_partitions"].samples)


# Conveniences

def test_an_unknown_table_is_an_error_listing_the_known_ones(capsys, workdir, db_url):
    write_spec(workdir / "specs", spec_data(table="a"), "a.yaml")
    write_spec(workdir / "specs", spec_data(table="b"), "b.yaml")
    result = cli(capsys, "plan", "specs", "--env", "test", "--database-url", db_url, "--table", "c")
    assert (result.code, result.err) == (1, "error: unknown table 'c' (known: public.a, public.b)\n")


def test_table_limits_a_run_to_the_named_tables(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(table="a"), "a.yaml")
    write_spec(workdir / "specs", spec_data(table="b"), "b.yaml")
    assert apply(capsys, db_url, "--table", "public.b").code == 0
    assert conn.execute("SELECT to_regclass('a'), to_regclass('b') IS NOT NULL").fetchone() == (None, True)


def test_no_output_or_plan_file_holds_the_password(capsys, workdir, db_url, conn):
    conn.execute("CREATE ROLE alice LOGIN SUPERUSER PASSWORD 'Sup3r-Secret-pw'")
    url = psycopg.conninfo.make_conninfo(db_url, user="alice", password="Sup3r-Secret-pw")
    write_spec(workdir / "specs", spec_data(interval="monthly", premake="2 months"))
    seen = []
    for args in (
        ("-v", "plan", "specs", "--env", "test", "--database-url", url, "--now", NOW, "--out", "plan.json"),
        ("plan", "specs", "--env", "test", "--database-url", url, "--format", "json"),
        ("-v", "apply", "plan.json", "--database-url", url),
        ("-v", "drift", "specs", "--env", "test", "--database-url", url, "--format", "prometheus"),
        ("-v", "plan", "specs", "--env", "test", "--database-url", url.replace("port=", "port=1")),
    ):
        result = cli(capsys, *args)
        seen += [result.out, result.err]
    seen.append((workdir / "plan.json").read_text())
    seen.append("\n".join(map(str, conn.execute("SELECT * FROM partition_audit_log").fetchall())))
    assert any("connecting to" in s and "user=alice" in s for s in seen), "verbose output names the target"
    assert not [s for s in seen if "Sup3r-Secret-pw" in s]


def test_verbose_and_quiet(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data())
    quiet = cli(capsys, "--quiet", "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW, "--auto-approve")
    assert quiet.code == 0 and quiet.out == ""
    loud = cli(capsys, "--verbose", "plan", "specs", "--env", "test", "--database-url", db_url, "--now", NOW)
    assert "read 4 partitions of 1 tables" in loud.err
