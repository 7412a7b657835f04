"""The command line: a thin typer app. The only module that prints, reads the clock, or maps errors to exit codes."""

from __future__ import annotations

import os
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, List, Optional

import typer

from .errors import CatalogError, PartmanError, SpecError

EXIT_USAGE = 64  # EX_USAGE: click's default of 2 would read as "changes pending"

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Keep PostgreSQL range-partitioned tables in the shape their specs declare.",
)

SpecsArg = typer.Argument(..., help="Spec files or directories of them.", show_default=False)
EnvOpt = typer.Option(..., "--env", "-e", envvar="PARTMAN_ENV", help="Environment whose overrides and database to use.")
ProjectOpt = typer.Option(None, "--project", help="Project file (default: partman.yaml here or above the specs).")
UrlOpt = typer.Option(
    None, "--database-url", help="Connection string; wins over PARTMAN_DATABASE_URL and the project file.", show_default=False
)
NowOpt = typer.Option(None, "--now", help="Pin the clock (ISO 8601 with offset); default: the database's now().")
SchemaOpt = typer.Option(None, "--state-schema", help="Schema of partition_log and partition_audit_log.")


@app.command()
def validate(
    specs: List[Path] = SpecsArg,
    env: Optional[str] = typer.Option(None, "--env", "-e", envvar="PARTMAN_ENV", help="Check one environment only."),
    project_file: Optional[Path] = ProjectOpt,
) -> None:
    """Check spec files against the schema and each other, for every environment; touches no database."""
    from . import project as projects
    from .spec import load_specs

    project = projects.load_project(project_file or projects.find(specs))
    envs = [env] if env else (project.env_names or _mentioned_envs(specs) or ["default"])
    count = 0
    for name in envs:
        known = project.env_names if project.env_names is not None else ([name] + _mentioned_envs(specs))
        count = len(load_specs(specs, name, known))
    typer.echo(f"{count} spec{'s' if count != 1 else ''} valid for {', '.join(envs)}.")


sql_app = typer.Typer(no_args_is_help=True, help="The SQL face: the Flyway-style migration sql/V1__create_or_manage_partitions.sql.")
app.add_typer(sql_app, name="sql")


@sql_app.command("render")
def sql_render(
    settings: List[str] = typer.Option(
        [], "--set", help="placeholder=value, e.g. --set partitioning.prefix=amenity_booking (repeatable)."
    ),
) -> None:
    """Print the migration with its placeholders filled by Flyway's rules, ready for psql or \\i."""
    from .migration import render as render_migration

    values = {}
    for item in settings:
        key, eq, value = item.partition("=")
        if not eq:
            raise SpecError(f"--set {item!r} is not placeholder=value")
        values[key.strip()] = value.strip()
    sys.stdout.write(render_migration(values))


@app.command()
def schema() -> None:
    """Print the spec JSON Schema, for editors (yaml-language-server) and other validators."""
    from importlib import resources

    sys.stdout.write(resources.files("partman").joinpath("schema/partman.schema.json").read_text())


@app.command()
def plan(
    specs: List[Path] = SpecsArg,
    env: str = EnvOpt,
    output: str = typer.Option("text", "--format", help="text | json"),
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode", help="Exit 2 when changes are pending."),
    now: Optional[str] = NowOpt,
    project_file: Optional[Path] = ProjectOpt,
    database_url: Optional[str] = UrlOpt,
    state_schema: Optional[str] = SchemaOpt,
) -> None:
    """Show what apply would do, without changing anything."""
    from . import render

    if output not in ("text", "json"):
        raise typer.BadParameter("must be text or json", param_hint="--format")
    session = _Session.open(specs, env, project_file, database_url, now, state_schema)
    the_plan = session.plan()
    _emit(render.as_json(the_plan) if output == "json" else render.text(the_plan), color=output == "text")
    if the_plan.errors:
        raise typer.Exit(1)
    if detailed_exitcode and the_plan.changes:
        raise typer.Exit(2)


@app.command()
def apply(
    specs: List[Path] = SpecsArg,
    env: str = EnvOpt,
    auto_approve: bool = typer.Option(False, "--auto-approve", help="Apply without asking."),
    now: Optional[str] = NowOpt,
    project_file: Optional[Path] = ProjectOpt,
    database_url: Optional[str] = UrlOpt,
    state_schema: Optional[str] = SchemaOpt,
    lock_timeout_ms: int = typer.Option(100, "--lock-timeout-ms", min=1, help="lock_timeout of the first attempt."),
    lock_budget_s: float = typer.Option(30.0, "--lock-budget", min=0.0, help="Seconds of retries before giving up (exit 4)."),
) -> None:
    """Plan, confirm, and apply: per table one transaction under its advisory lock, with short lock timeouts."""
    from . import render
    from .apply import Status, apply_plan, exit_code
    from .audit import Context
    from .lock import Ladder

    session = _Session.open(specs, env, project_file, database_url, now, state_schema)
    the_plan = session.plan()
    _emit(render.text(the_plan), color=True)
    if not the_plan.changes:
        raise typer.Exit(1 if the_plan.errors else 0)
    if not auto_approve:
        if not sys.stdin.isatty():
            raise PartmanError("no terminal to confirm on: review the plan above and pass --auto-approve to apply it")
        answer = typer.prompt(f"Apply these changes to {env}? Only 'yes' is accepted", default="", show_default=False)
        if answer.strip() != "yes":
            typer.echo("Apply cancelled; nothing changed.")
            raise typer.Exit(1)
    ctx = Context(schema=session.state_schema, env=env, plan_id=str(uuid.uuid4()), now=the_plan.now)
    outcomes = apply_plan(
        session.conn,
        the_plan,
        session.specs,
        ctx=ctx,
        ladder=Ladder(first_ms=lock_timeout_ms, budget_s=lock_budget_s),
        on_table=_report,
    )
    applied = [o for o in outcomes if o.status is Status.APPLIED]
    done = {kind: sum(a.kind.value == kind for o in applied for a in o.actions) for kind in ("create", "detach", "drop")}
    typer.echo(
        f"Apply complete: {done['create']} created, {done['detach']} detached, {done['drop']} dropped"
        f" in {len(applied)} table{'s' if len(applied) != 1 else ''}."
    )
    raise typer.Exit(exit_code(outcomes))


def _report(outcome: Any) -> None:
    from .apply import Status

    if outcome.status is Status.APPLIED:
        typer.echo(f"{outcome.table}: applied {len(outcome.actions)} actions")
    elif outcome.status is Status.UNCHANGED:
        if outcome.message:
            typer.echo(f"{outcome.table}: {outcome.message}")
    else:
        typer.echo(f"error: {outcome.message}", err=True)


class _Session:
    """Specs, project and an open connection for one command."""

    def __init__(self, specs, project, conn, now, state_schema):
        self.specs, self.project, self.conn, self.now, self.state_schema = specs, project, conn, now, state_schema

    @classmethod
    def open(cls, paths, env, project_file, database_url, now, state_schema) -> "_Session":
        from . import project as projects
        from .spec import load_specs

        project = projects.load_project(project_file or projects.find(paths))
        specs = load_specs(paths, env, project.env_names)
        pinned = _parse_now(now) if now else None
        url = projects.database_url(project, env, database_url)
        if url is None:
            from . import embedded

            url = embedded.url(project.root)
        conn = _connect(url)
        clock = pinned or conn.execute("SELECT now()").fetchone()[0]
        return cls(specs, project, conn, clock, state_schema or project.state_schema)

    def plan(self):
        from . import catalog, planner

        snap = catalog.snapshot(self.conn, self.specs, now=self.now, state_schema=self.state_schema)
        return planner.plan(self.specs, snap, now=self.now, env=self.specs[0].env if self.specs else "")


def _connect(url: str):
    import psycopg

    from .redact import redact

    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="partman")
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or ["connection failed"])[-1]
        raise CatalogError(f"cannot connect to {redact(url)}: {redact_text(reason, url)}") from None


def redact_text(text: str, url: str) -> str:
    from .redact import password_of

    secret = password_of(url)
    return text.replace(secret, "***") if secret else text


def _parse_now(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise SpecError(f"--now {text!r} is not an ISO 8601 timestamp (e.g. 2027-01-01T00:00:00Z)") from None
    if value.tzinfo is None:
        raise SpecError(f"--now {text!r} needs an offset (e.g. 2027-01-01T00:00:00Z)")
    return value


def _mentioned_envs(paths: List[Path]) -> list[str]:
    from .spec import spec_files
    from .yamldoc import load

    names: set[str] = set()
    for file in spec_files(paths):
        try:
            data = load(file).data
        except SpecError:
            continue
        if isinstance(data, dict) and isinstance(data.get("environments"), dict):
            names.update(data["environments"])
    return sorted(names)


def _emit(body: str, *, color: bool) -> None:
    if color and sys.stdout.isatty() and not os.environ.get("NO_COLOR"):
        from rich.console import Console
        from rich.text import Text

        console = Console(highlight=False)
        styles = {"+": "green", "-": "red", "~": "yellow", "!": "magenta", "x": "bold red"}
        for line in body.rstrip("\n").split("\n"):
            marker = line.strip()[:1]
            console.print(Text(line, style=styles.get(marker, "")) if line.startswith("  ") else Text(line, style="bold"))
    else:
        sys.stdout.write(body)


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: one line on stderr and a documented exit code for every user error; no tracebacks."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="partman", standalone_mode=False)
    except PartmanError as exc:
        for line in exc.message.splitlines():
            typer.echo(f"error: {line}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted; nothing changed.", err=True)
        sys.exit(1)
    except typer.TyperException as exc:  # click's usage errors
        exc.show()
        sys.exit(EXIT_USAGE if getattr(exc, "exit_code", 2) == 2 else exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
