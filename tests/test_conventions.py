"""The command-line conventions users of Terraform, kubectl, gh and psql expect without reading a manual."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from dbtools import partitions, run_cli
from helpers import spec_data, write_spec

NOW = "2027-02-15T12:00:00Z"
COMMANDS = [["validate"], ["plan"], ["apply"], ["drift"], ["history"], ["schema"], ["help"], ["sql"], ["sql", "render"],
            ["dev"], ["dev", "status"], ["dev", "url"], ["dev", "psql"], ["dev", "stop"], ["dev", "reset"],
            ["exclusions"], ["import"], ["import", "pg-partman"]]


def test_version_names_partman_and_the_libpq_it_uses_and_exits_0(capsys):
    result = run_cli(capsys, "--version")
    assert result.code == 0
    assert re.fullmatch(r"partman \d+\.\d+\.\d+ \(PostgreSQL client libpq \d+\.\d+\)\n", result.out)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_dash_h_is_help_on_every_command_without_python_type_names(capsys, command):
    result = run_cli(capsys, *command, "-h")
    assert result.code == 0, result.err
    assert result.out.startswith("Usage: partman")
    for python_ism in ("<bool>", "<str>", "<int", "<float", "list[", "Path]", "{specs}", "\\\\i", "<path>"):
        assert python_ism not in result.out


def test_help_shows_the_help_of_the_named_command(capsys):
    assert run_cli(capsys, "help", "plan").out == run_cli(capsys, "plan", "--help").out
    assert run_cli(capsys, "help", "dev", "reset").out == run_cli(capsys, "dev", "reset", "-h").out
    assert run_cli(capsys, "help").out == run_cli(capsys, "--help").out


def test_help_of_an_unknown_command_exits_64(capsys):
    result = run_cli(capsys, "help", "nosuch")
    assert result.code == 64
    assert result.err.startswith("error: No such command 'nosuch'")


def test_every_command_shows_examples_in_its_help(capsys):
    for command in (["validate"], ["plan"], ["apply"], ["drift"], ["history"], ["schema"], ["sql", "render"]):
        assert "Example" in run_cli(capsys, *command, "-h").out, command


def test_metavars_are_conventional(capsys):
    out = run_cli(capsys, "plan", "-h").out
    assert "Usage: partman plan [OPTIONS] SPEC..." in out
    for metavar in ("--format [text|json|markdown]", "--lock-timeout-ms MS", "--lock-budget SECONDS", "--env ENV",
                    "--now TIMESTAMP", "--table TABLE"):
        assert metavar in out


def test_global_options_work_after_the_command(capsys, workdir, db_url):
    write_spec(workdir / "specs", spec_data())
    verbose = run_cli(capsys, "plan", "specs", "--env", "test", "--database-url", db_url, "--now", NOW, "--verbose")
    assert verbose.code == 0, verbose.err
    assert "connecting to" in verbose.err
    quiet = run_cli(capsys, "apply", "specs", "-q", "--env", "test", "--database-url", db_url, "--now", NOW,
                    "--auto-approve", "--no-color")
    assert (quiet.code, quiet.out) == (0, "")


def test_without_a_project_file_a_single_database_needs_no_env(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(environments={"prod": {"premake": "12 months"}}))
    validated = run_cli(capsys, "validate", "specs")
    assert validated.out == "1 spec valid for default, prod.\n"
    result = run_cli(capsys, "apply", "specs", "--database-url", db_url, "--now", NOW, "--auto-approve")
    assert result.code == 0, result.err
    assert "partman plan for env default" in result.out
    assert len(partitions(conn, "bookings")) == 4  # the base spec's 3 months, not prod's 12
    named = run_cli(capsys, "plan", "specs", "--env", "default", "--database-url", db_url, "--now", NOW)
    assert named.code == 0 and "No changes." in named.out


def test_a_project_of_one_environment_needs_no_env(capsys, workdir, db_url, monkeypatch):
    (workdir / "partman.yaml").write_text("environments:\n  staging: {database_url_env: STAGING_URL}\n")
    monkeypatch.setenv("STAGING_URL", db_url)
    write_spec(workdir / "specs", spec_data(environments={"staging": {}}))
    result = run_cli(capsys, "plan", "specs", "--now", NOW)
    assert result.code == 0, result.err
    assert "partman plan for env staging" in result.out


def test_a_project_of_several_environments_without_env_exits_64_naming_them(capsys, workdir):
    (workdir / "partman.yaml").write_text("environments:\n  dev: {database: embedded}\n  prod: {}\n")
    write_spec(workdir / "specs", spec_data(environments={"dev": {}, "prod": {}}))
    result = run_cli(capsys, "plan", "specs")
    assert result.code == 64
    assert result.err == "error: which environment? pass --env (known: dev, prod; or set PARTMAN_ENV)\n"


def _project(tmp_path, db_url, monkeypatch):
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    (project / "partman.yaml").write_text("environments:\n  prod: {database_url_env: PROD_URL}\n")
    monkeypatch.setenv("PROD_URL", db_url)
    for var in [v for v in os.environ if v.startswith("PG")]:
        monkeypatch.delenv(var)
    write_spec(project / "specs", spec_data(environments={"prod": {}}))
    return project


def test_a_saved_plan_applies_from_another_directory_and_says_which_database(capsys, tmp_path, db_url, monkeypatch, conn):
    project = _project(tmp_path, db_url, monkeypatch)
    monkeypatch.chdir(project)
    assert run_cli(capsys, "plan", "specs", "--env", "prod", "--out", "plan.json").code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run_cli(capsys, "apply", str(project / "plan.json"))
    assert result.code == 0, result.err
    database = conn.execute("SELECT current_database()").fetchone()[0]
    assert "Applying the saved plan" in result.err and f"database {database} on" in result.err
    assert partitions(conn, "bookings")


def test_a_saved_plan_finds_its_project_through_dash_c_when_moved_away(capsys, tmp_path, db_url, monkeypatch, conn):
    project = _project(tmp_path, db_url, monkeypatch)
    monkeypatch.chdir(project)
    assert run_cli(capsys, "plan", "specs", "--env", "prod", "--out", str(tmp_path / "plan.json")).code == 0
    (tmp_path / "plan.json").rename(tmp_path / "moved.json")
    (tmp_path / "away").mkdir()
    (tmp_path / "moved.json").rename(tmp_path / "away" / "moved.json")
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, "apply", "-C", str(project), "away/moved.json")
    assert result.code == 0, result.err
    assert partitions(conn, "bookings")


@pytest.mark.parametrize("option", [["--now", NOW], ["--table", "bookings"]], ids=["now", "table"])
def test_now_or_table_with_a_saved_plan_exits_64(capsys, tmp_path, db_url, monkeypatch, conn, option):
    project = _project(tmp_path, db_url, monkeypatch)
    monkeypatch.chdir(project)
    assert run_cli(capsys, "plan", "specs", "--env", "prod", "--out", "plan.json").code == 0
    result = run_cli(capsys, "apply", "plan.json", *option)
    assert result.code == 64
    assert result.err.startswith(f"error: {option[0]} cannot be given with a saved plan")
    assert conn.execute("SELECT to_regclass('public.bookings')").fetchone()[0] is None


def test_apply_counts_in_the_singular_when_there_is_one(capsys, workdir, db_url):
    write_spec(workdir / "specs", spec_data(premake="1 month"))
    assert run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW, "--auto-approve").code == 0
    result = run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", "2027-03-15T12:00:00Z",
                     "--auto-approve", "--allow-clock-skew")
    assert "public.bookings: applied 1 action\n" in result.out
    assert "in 1 table." in result.out


def test_apply_json_reports_every_table_and_the_exit_code(capsys, workdir, db_url):
    write_spec(workdir / "specs", spec_data())
    result = run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW,
                     "--auto-approve", "--format", "json")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert (body["format_version"], body["exit_code"]) == (1, 0)
    assert [(t["table"], t["status"], len(t["actions"])) for t in body["tables"]] == [("public.bookings", "applied", 4)]


def test_an_error_plan_does_not_say_no_changes_above_it(capsys, workdir, db_url):
    write_spec(workdir / "specs", spec_data(table="public.nosuch_parent", columns=None, primary_key=None))
    result = run_cli(capsys, "plan", "specs", "--env", "test", "--database-url", db_url, "--now", NOW)
    assert result.code == 1
    assert "No changes." not in result.out


def _complete(cwd, words: str) -> list[str]:
    env = {**os.environ, "_PARTMAN_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
    done = subprocess.run([sys.executable, "-c", "from partman.cli import main; main()"], cwd=cwd, env=env,
                          capture_output=True, text=True)
    return done.stdout.split()


def test_completion_offers_environments_formats_and_tables(workdir):
    (workdir / "partman.yaml").write_text("environments:\n  dev: {database: embedded}\n  prod: {}\n")
    write_spec(workdir / "specs", spec_data(environments={"dev": {}, "prod": {}}))
    write_spec(workdir / "specs", spec_data(table="app.events", environments={"dev": {}, "prod": {}}), name="events.yaml")
    assert _complete(workdir, "partman plan specs --env ") == ["dev", "prod"]
    assert _complete(workdir, "partman plan specs --format m") == ["markdown"]
    assert _complete(workdir, "partman plan specs --table ") == ["app.events", "public.bookings"]


def test_partman_alone_prints_its_help_and_exits_0(capsys):
    result = run_cli(capsys)
    assert result.code == 0
    assert result.out.startswith("Usage: partman [OPTIONS] COMMAND")


def test_an_unknown_env_is_refused_by_history_too_not_sent_to_pg_variables(capsys, workdir):
    (workdir / "partman.yaml").write_text("environments:\n  prod: {}\n")
    result = run_cli(capsys, "history", "--env", "prodd")
    assert (result.code, result.err) == (1, "error: unknown environment 'prodd' (known: prod)\n")


def test_apply_json_without_auto_approve_exits_64_before_connecting(capsys, workdir):
    write_spec(workdir / "specs", spec_data())
    result = run_cli(capsys, "apply", "specs", "--env", "test", "--format", "json", "--database-url", "postgresql://x@127.0.0.1:1/x")
    assert result.code == 64
    assert "--auto-approve" in result.err


def test_a_missing_plan_file_is_named(capsys, workdir):
    result = run_cli(capsys, "apply", "nosuch.json")
    assert (result.code, result.err) == (1, "error: nosuch.json: no such plan file (made with partman plan --out)\n")


def test_the_project_is_found_from_a_subdirectory(capsys, workdir, monkeypatch):
    (workdir / "partman.yaml").write_text("environments:\n  dev: {database: embedded}\n")
    (workdir / "specs").mkdir()
    monkeypatch.chdir(workdir / "specs")
    result = run_cli(capsys, "dev", "status")
    assert result.code == 1
    assert str(workdir / ".partman" / "pgdata") in result.out or "../.partman/pgdata" in result.out


def test_arguments_after_dev_psql_are_left_for_psql():
    from partman.options import take_globals

    assert take_globals(["dev", "psql", "-v", "ON_ERROR_STOP=1", "-q"]) == ["dev", "psql", "-v", "ON_ERROR_STOP=1", "-q"]
    assert take_globals(["-v", "plan", "specs", "-q"]) == ["plan", "specs"]
