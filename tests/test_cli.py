"""The command line: exit codes, one-line errors naming file:line or the object, and nothing changed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dbtools import run_cli
from helpers import spec_data, write_spec

NOW = "2027-02-15T12:00:00Z"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tables(conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchall()]


def test_malformed_yaml_exits_1_naming_file_and_line_and_touches_nothing(capsys, workdir, db_url, conn):
    path = workdir / "specs" / "bad.yaml"
    path.parent.mkdir()
    path.write_text("table: bookings\npartition_key: start_time\ninterval: monthly\n  premake: 3 months\n")
    result = run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--auto-approve")
    assert result.code == 1
    assert result.err.startswith("error: specs/bad.yaml:4: invalid YAML")
    assert len(result.err.splitlines()) == 1
    assert tables(conn) == []


def test_an_unknown_key_exits_1_naming_its_line(capsys, workdir, db_url, conn):
    data = spec_data()
    data["premake_ahead"] = "3 months"
    write_spec(workdir / "specs", data)
    result = run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--auto-approve")
    assert result.code == 1
    assert result.err.strip().endswith("unknown key 'premake_ahead'")
    assert result.err.startswith("error: specs/bookings.yaml:")
    assert tables(conn) == []


def test_an_unknown_environment_exits_1_listing_the_known_ones(capsys, workdir, db_url):
    write_spec(workdir / "specs", spec_data(environments={"dev": {}, "prod": {}}))
    result = run_cli(capsys, "plan", "specs", "--env", "qa", "--database-url", db_url)
    assert (result.code, result.err) == (1, "error: unknown environment 'qa' (known: default, dev, prod)\n")


def test_an_environment_missing_from_the_project_file_is_unknown(capsys, workdir):
    (workdir / "partman.yaml").write_text("environments:\n  dev: {database: embedded}\n")
    write_spec(workdir / "specs", spec_data(environments={"dev": {}}))
    result = run_cli(capsys, "plan", "specs", "--env", "test")
    assert (result.code, result.err) == (1, "error: unknown environment 'test' (known: dev)\n")


def test_an_unreachable_database_exits_1_without_the_password(capsys, workdir):
    write_spec(workdir / "specs", spec_data())
    url = "postgresql://alice:s3cret-pw@127.0.0.1:1/bookings?connect_timeout=3"
    result = run_cli(capsys, "plan", "specs", "--env", "test", "--database-url", url)
    assert result.code == 1
    assert result.err.startswith("error: cannot connect to host=127.0.0.1 port=1 dbname=bookings user=alice:")
    assert len(result.err.splitlines()) == 1
    assert "s3cret-pw" not in result.err + result.out


def test_a_missing_environment_variable_for_the_database_is_named(capsys, workdir, monkeypatch):
    monkeypatch.delenv("PROD_DATABASE_URL", raising=False)
    monkeypatch.delenv("PARTMAN_DATABASE_URL", raising=False)
    (workdir / "partman.yaml").write_text("environments:\n  prod: {database_url_env: PROD_DATABASE_URL}\n")
    write_spec(workdir / "specs", spec_data(environments={"prod": {}}))
    result = run_cli(capsys, "plan", "specs", "--env", "prod")
    assert result.code == 1
    assert result.err.startswith("error: environment 'prod': $PROD_DATABASE_URL is not set")


def test_a_missing_parent_without_columns_is_an_error_naming_the_table(capsys, workdir, db_url, conn):
    data = spec_data()
    del data["columns"], data["primary_key"]
    write_spec(workdir / "specs", data)
    result = run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW, "--auto-approve")
    assert result.code == 1
    assert "public.bookings does not exist and its spec (specs/bookings.yaml:1) declares no columns" in result.out + result.err
    assert tables(conn) == []


def test_usage_errors_exit_64_not_2(capsys, workdir):
    result = run_cli(capsys, "plan", "--no-such-option")
    assert result.code == 64


def test_plan_with_detailed_exitcode_exits_2_when_changes_are_pending(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data())
    result = run_cli(capsys, "plan", "specs", "--env", "test", "--database-url", db_url, "--now", NOW, "--detailed-exitcode")
    assert result.code == 2
    assert result.out.rstrip().endswith("Plan: 4 to create, 0 to detach, 0 to drop, 1 table to create, 1 config to update.")
    assert tables(conn) == []


def test_plan_json_has_the_documented_shape(capsys, workdir, db_url):
    write_spec(workdir / "specs", spec_data())
    result = run_cli(capsys, "plan", "specs", "--env", "test", "--database-url", db_url, "--now", NOW, "--format", "json")
    doc = json.loads(result.out)
    assert doc["format_version"] == 1 and doc["env"] == "test" and doc["now"] == "2027-02-15T12:00:00+00:00"
    assert doc["summary"] == {"create": 4, "detach": 0, "drop": 0, "reattach": 0, "adopt": 0, "convert": 0, "conform": 0}
    assert doc["clock"] == {"pinned": True, "database_now": doc["clock"]["database_now"]}
    first = doc["tables"][0]["actions"][0]
    assert first == {
        "action": "create",
        "partition": "public.bookings_2027_02",
        "from": "2027-02-01T00:00:00+00:00",
        "to": "2027-03-01T00:00:00+00:00",
        "reason": "premake",
        "rows_estimate": None,
    }
    assert {"kept", "unmanaged"} <= set(doc["tables"][0])


def test_apply_without_a_terminal_or_auto_approve_refuses(capsys, workdir, db_url, conn, monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    write_spec(workdir / "specs", spec_data())
    result = run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW)
    assert result.code == 1
    assert "pass --auto-approve" in result.err
    assert tables(conn) == []


def test_a_user_error_prints_no_traceback(workdir, db_url):
    write_spec(workdir / "specs", spec_data(interval="hourly"))
    proc = subprocess.run(
        [sys.executable, "-m", "partman", "plan", "specs", "--env", "test", "--database-url", db_url],
        capture_output=True, text=True, cwd=workdir,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: specs/bookings.yaml:3: interval: 'hourly' is not one of")


def test_libpq_pg_variables_name_the_server_when_nothing_else_does(capsys, workdir, db_url, monkeypatch):
    from psycopg.conninfo import conninfo_to_dict

    monkeypatch.delenv("PARTMAN_DATABASE_URL", raising=False)
    parts = conninfo_to_dict(db_url)
    for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("dbname", "PGDATABASE")):
        monkeypatch.setenv(var, str(parts[key]))
    write_spec(workdir / "specs", spec_data())
    result = run_cli(capsys, "plan", "specs", "--env", "test", "--now", NOW)
    assert result.code == 0, result.err
    assert "Plan: 4 to create" in result.out


def test_validate_checks_every_environment_without_a_database(capsys, workdir):
    write_spec(workdir / "specs", spec_data(environments={"dev": {}, "prod": {"interval": "quarterly"}}))
    result = run_cli(capsys, "validate", "specs")
    assert (result.code, result.out) == (0, "1 spec valid for default, dev, prod.\n")
    write_spec(workdir / "specs", spec_data(environments={"dev": {}, "prod": {"retention": "forever"}}))
    result = run_cli(capsys, "validate", "specs")
    assert result.code == 1 and "environments.prod.retention" in result.err


def test_the_schema_command_prints_the_shipped_schema(capsys):
    result = run_cli(capsys, "schema")
    assert result.code == 0
    assert json.loads(result.out)["title"] == "partman table spec"


def test_a_command_runs_with_only_itself_built_and_an_unknown_one_still_lists_them_all(capsys):
    from partman import cli

    assert [c.callback.__name__ for c in cli._only_the_command(["-q", "plan", "specs"]).registered_commands] == ["plan"]
    assert [g.name for g in cli._only_the_command(["dev", "status"]).registered_groups] == ["dev"]
    assert cli._only_the_command(["--help"]) is cli.app
    assert cli._only_the_command(["pla", "specs"]) is cli.app
    result = run_cli(capsys, "pla", "specs")
    assert result.code == 64 and "Did you mean 'plan'?" in result.err
