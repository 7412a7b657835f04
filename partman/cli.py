"""The command line: a thin typer app. The only module that prints, reads the clock, or maps errors to exit codes."""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, List, Optional

import typer

from .errors import CatalogError, PartmanError, SpecError, UsageError

EXIT_USAGE = 64  # EX_USAGE: click's default of 2 would read as "changes pending"


@dataclass
class Output:
    """How much to say and whether in colour; set once by the global options."""

    quiet: bool = False
    verbose: bool = False
    color: bool = True

    def info(self, message: str) -> None:
        if not self.quiet:
            typer.echo(message)

    def debug(self, message: str) -> None:
        if self.verbose:
            typer.echo(message, err=True)

    def warn(self, message: str) -> None:
        typer.echo(message, err=True)

    @property
    def terminal(self) -> bool:
        return sys.stdout.isatty()


OUT = Output()

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Keep PostgreSQL range-partitioned tables in the shape their specs declare.",
)


@app.callback()
def _global(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and what was asked for."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Say what is being done, on stderr."),
    no_color: bool = typer.Option(False, "--no-color", help="No colour (also: the NO_COLOR variable)."),
) -> None:
    OUT.quiet, OUT.verbose = quiet, verbose and not quiet
    OUT.color = not no_color and not os.environ.get("NO_COLOR")


SpecsArg = typer.Argument(..., help="Spec files or directories of them.", show_default=False)
EnvOpt = typer.Option(..., "--env", "-e", envvar="PARTMAN_ENV", help="Environment whose overrides and database to use.")
ProjectOpt = typer.Option(None, "--project", help="Project file (default: partman.yaml here or above the specs).")
UrlOpt = typer.Option(
    None, "--database-url", help="Connection string; wins over PARTMAN_DATABASE_URL and the project file.", show_default=False
)
NowOpt = typer.Option(None, "--now", help="Pin the clock (ISO 8601 with offset); default: the database's now().")
SchemaOpt = typer.Option(None, "--state-schema", help="Schema of partition_log, partition_audit_log, partition_config.")
TableOpt = typer.Option(None, "--table", "-t", help="Only this table (name or schema.name); repeatable.")
# PostgreSQL's lock_timeout is an int of milliseconds; a step above a minute would defeat the ladder's purpose.
LockTimeoutOpt = typer.Option(100, "--lock-timeout-ms", min=1, max=60_000,
                              help="How long any one lock request may wait (writers can queue behind it), in ms.")
LockBudgetOpt = typer.Option(30.0, "--lock-budget", min=0.0, max=86_400.0,
                             help="Seconds of retries, with pauses between them, before a lock is given up (exit 4).")


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


@app.command()
def plan(
    specs: List[Path] = SpecsArg,
    env: str = EnvOpt,
    output: str = typer.Option("text", "--format", help="text | json | markdown"),
    out: Optional[Path] = typer.Option(None, "--out", help="Save the plan for `partman apply FILE` (JSON)."),
    detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode", help="Exit 2 when changes are pending."),
    timestamps: bool = typer.Option(False, "--timestamps", help="Markdown: say when the plan was made."),
    tables: Optional[List[str]] = TableOpt,
    now: Optional[str] = NowOpt,
    project_file: Optional[Path] = ProjectOpt,
    database_url: Optional[str] = UrlOpt,
    state_schema: Optional[str] = SchemaOpt,
    lock_timeout_ms: int = LockTimeoutOpt,
    lock_budget_s: float = LockBudgetOpt,
) -> None:
    """Show what apply would do, without changing anything."""
    from . import planfile, render
    from .lock import Ladder

    if output not in ("text", "json", "markdown"):
        raise typer.BadParameter("must be text, json or markdown", param_hint="--format")
    ladder = Ladder(step_ms=lock_timeout_ms, budget_s=lock_budget_s)
    session = _Session.open(specs, env, project_file, database_url, now, state_schema, tables, ladder)
    the_plan = session.plan()
    if output == "json":
        _emit(render.as_json(the_plan), color=False)
    elif output == "markdown":
        _emit(render.markdown(the_plan, timestamps=timestamps), color=False)
    else:
        _emit(render.text(the_plan), color=True)
    if out is not None:
        planfile.write(planfile.new(the_plan, session.specs, planfile.target_of(session.conn, env)), out)
        OUT.warn(f"Saved the plan to {out}; apply exactly it with: partman apply {out}")
    _table_errors(the_plan)
    if the_plan.errors:
        raise typer.Exit(1)
    if detailed_exitcode and the_plan.changes:
        raise typer.Exit(2)


@app.command()
def apply(
    specs: List[Path] = typer.Argument(..., help="Spec files or directories, or one plan file saved by plan --out."),
    env: Optional[str] = typer.Option(None, "--env", "-e", envvar="PARTMAN_ENV", help="Environment (a plan file names its own)."),
    auto_approve: bool = typer.Option(False, "--auto-approve", help="Apply without asking (never implies permission to drop in a protected environment)."),
    tables: Optional[List[str]] = TableOpt,
    now: Optional[str] = NowOpt,
    project_file: Optional[Path] = ProjectOpt,
    database_url: Optional[str] = UrlOpt,
    state_schema: Optional[str] = SchemaOpt,
    lock_timeout_ms: int = LockTimeoutOpt,
    lock_budget_s: float = LockBudgetOpt,
    move_default_rows: bool = typer.Option(
        False, "--move-default-rows", help="Move rows from the default partition into new partitions covering them."
    ),
    allow_clock_skew: bool = typer.Option(
        False, "--allow-clock-skew", envvar="PARTMAN_ALLOW_CLOCK_SKEW",
        help="Apply with --now more than one interval away from the database's clock.",
    ),
) -> None:
    """Plan, confirm and apply; or apply exactly a saved plan. Per table: under its advisory lock, short lock timeouts."""
    from . import render
    from .lock import Ladder

    ladder = Ladder(step_ms=lock_timeout_ms, budget_s=lock_budget_s)
    if len(specs) == 1 and specs[0].suffix == ".json" and specs[0].is_file():
        _apply_saved(specs[0], env, project_file, database_url, state_schema, ladder, move_default_rows, allow_clock_skew)
        return
    if env is None:
        raise typer.BadParameter("is required with spec files", param_hint="--env")
    session = _Session.open(specs, env, project_file, database_url, now, state_schema, tables, ladder)
    if session.pinned and not allow_clock_skew:
        _refuse_skew(session.specs, session.now, session.database_now)
    the_plan = session.plan(digests=True)
    if not OUT.quiet:
        _emit(render.text(the_plan), color=True)
    _table_errors(the_plan)
    withheld = 0
    if session.protected and the_plan.destructive:
        withheld = the_plan.destructive
        the_plan = the_plan.without_destructive()
        OUT.warn(
            f"error: {env} is protected: {withheld} detach/drop actions withheld (and the creates that need them);"
            f" apply them from a reviewed plan: partman plan {' '.join(map(str, specs))} --env {env} --out plan.json,"
            " then partman apply plan.json"
        )
    if not the_plan.changes:
        raise typer.Exit(1 if the_plan.errors or withheld else 0)
    if not auto_approve:
        if not sys.stdin.isatty():
            raise PartmanError("no terminal to confirm on: review the plan above and pass --auto-approve to apply it")
        answer = typer.prompt(f"Apply these changes to {env}? Only 'yes' is accepted", default="", show_default=False)
        if answer.strip() != "yes":
            OUT.info("Apply cancelled; nothing changed.")
            raise typer.Exit(1)
    code = _run_apply(session, the_plan, str(uuid.uuid4()), ladder, exact=False, move_default_rows=move_default_rows)
    raise typer.Exit(code or (1 if withheld else 0))


def _apply_saved(path: Path, env: Optional[str], project_file, database_url, state_schema, ladder, move_default_rows,
                 allow_clock_skew: bool = False) -> None:
    """Apply exactly what was reviewed: same target, same specs, same state, or nothing at all."""
    from . import planfile, render

    saved = planfile.read(path)
    if env is not None and env != saved.plan.env:
        raise SpecError(f"{path} was made for env {saved.plan.env}, not {env}")
    session = _Session.connect(list(saved.specs), saved.plan.env, project_file, database_url, state_schema, [path])
    session.ladder = ladder
    if saved.plan.pinned and not allow_clock_skew:
        _refuse_skew(list(saved.specs), saved.plan.now, session.conn.execute("SELECT now()").fetchone()[0])
    here = planfile.target_of(session.conn, saved.plan.env)
    if (here.database, here.host, here.port) != (saved.target.database, saved.target.host, saved.target.port):
        raise SpecError(f"{path} was made for {saved.target.describe()}; this connection is to {here.describe()}; nothing changed")
    if not OUT.quiet:
        _emit(render.text(saved.plan), color=True)
    if not saved.plan.changes:
        raise typer.Exit(1 if saved.plan.errors else 0)
    raise typer.Exit(_run_apply(session, saved.plan, saved.plan_id, ladder, exact=True, move_default_rows=move_default_rows))


def _run_apply(session: "_Session", the_plan: Any, plan_id: str, ladder: Any, *, exact: bool, move_default_rows: bool) -> int:
    from .apply import apply_plan, exit_code
    from .audit import Context

    ctx = Context(schema=session.state_schema, env=the_plan.env, plan_id=plan_id, now=the_plan.now)
    todo = [t for t in the_plan.tables if t.changes or t.errors]
    with _progress(len(todo)) as advance:
        outcomes = apply_plan(
            session.conn, the_plan, session.specs, ctx=ctx, ladder=ladder, exact=exact,
            protected=session.protected and not exact, move_default_rows=move_default_rows,
            on_table=lambda o: advance(_report(o)),
        )
    OUT.info(_apply_summary(outcomes))
    return exit_code(outcomes)


def _apply_summary(outcomes: list) -> str:
    """What was done, counted in every table: a table that failed after some actions counts them too."""
    from .apply import Status

    done = {kind: sum(a.kind.value == kind for o in outcomes for a in o.actions)
            for kind in ("create", "detach", "drop", "reattach")}
    changed = sum(1 for o in outcomes if o.actions)
    failed = sum(1 for o in outcomes if o.status not in (Status.APPLIED, Status.UNCHANGED))
    counts = f"{done['create']} created, {done['detach']} detached, {done['drop']} dropped"
    if done["reattach"]:
        counts += f", {done['reattach']} re-attached"
    where = f"in {changed} table{'s' if changed != 1 else ''}"
    if failed:
        return f"Apply incomplete: {counts} {where}; {failed} table{'s' if failed != 1 else ''} failed (see above)."
    return f"Apply complete: {counts} {where}."


def _table_errors(the_plan: Any) -> None:
    """Tables that could not be planned, on stderr too: the exit code says 1, and stderr says why."""
    for t in the_plan.tables:
        for error in t.errors:
            OUT.warn(f"error: {_cut(error, 400)}")


# How far apart a pinned clock and the database's may be, per interval: about one interval.
_SKEW = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92, "yearly": 366}


def _refuse_skew(specs: list, pinned: datetime, database_now: datetime) -> None:
    """--now is for reproducible plans and tests; applying a clock far from the database's would retire or
    create partitions for another time. More than one interval of the finest spec away is refused."""
    from datetime import timedelta

    if not specs:
        return
    finest = min(specs, key=lambda s: _SKEW[s.interval.value])
    limit = timedelta(days=_SKEW[finest.interval.value])
    if abs(pinned - database_now) > limit:
        raise UsageError(
            f"--now {pinned.isoformat()} is more than one interval ({finest.interval.value}, {finest.table}) away from"
            f" the database's clock ({database_now.isoformat()}); pass --allow-clock-skew to apply it anyway"
        )


@app.command()
def drift(
    specs: List[Path] = SpecsArg,
    env: str = EnvOpt,
    output: str = typer.Option("text", "--format", help="text | json | markdown | prometheus"),
    prometheus_file: Optional[Path] = typer.Option(
        None, "--prometheus-file", help="Also write Prometheus metrics here, atomically (node_exporter textfile collector)."
    ),
    min_runway: Optional[str] = typer.Option(None, "--min-runway", help="e.g. '30 days'; default: half the premake."),
    tables: Optional[List[str]] = TableOpt,
    now: Optional[str] = NowOpt,
    project_file: Optional[Path] = ProjectOpt,
    database_url: Optional[str] = UrlOpt,
    state_schema: Optional[str] = SchemaOpt,
    lock_timeout_ms: int = LockTimeoutOpt,
    lock_budget_s: float = LockBudgetOpt,
) -> None:
    """Report drift between specs and database: exit 0 in sync, 2 drift found, 1 error."""
    from . import catalog, drift as drifts
    from .intervals import Span
    from .lock import Ladder

    if output not in ("text", "json", "markdown", "prometheus"):
        raise typer.BadParameter("must be text, json, markdown or prometheus", param_hint="--format")
    try:
        floor = Span.parse(min_runway) if min_runway else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--min-runway") from None
    ladder = Ladder(step_ms=lock_timeout_ms, budget_s=lock_budget_s)
    session = _Session.open(specs, env, project_file, database_url, now, state_schema, tables, ladder)
    snap, the_plan = session.observe()
    rows, locked = catalog.default_row_counts(session.conn, snap.tables.values(), ladder)
    report = drifts.report(session.specs, snap, the_plan, now=session.now, default_rows=rows, min_runway=floor,
                           locked_defaults=frozenset(locked))
    run_at = datetime.now(timezone.utc)
    metrics = drifts.prometheus(report, run_at=run_at)
    body = {"text": drifts.text, "json": drifts.as_json, "markdown": drifts.markdown}.get(output)
    _emit(metrics if body is None else body(report), color=False)
    if prometheus_file is not None:
        _write_atomically(prometheus_file, metrics)
    _table_errors(the_plan)
    raise typer.Exit(0 if report.in_sync else 2)


sql_app = typer.Typer(no_args_is_help=True, help="The SQL face: the Flyway-style migration sql/V1__create_or_manage_partitions.sql.")
app.add_typer(sql_app, name="sql")


@sql_app.command("render")
def sql_render(
    settings: List[str] = typer.Option(
        [], "--set", help="placeholder=value, e.g. --set partitioning.prefix=amenity_booking (repeatable)."
    ),
) -> None:
    """Print the migration with its placeholders filled by Flyway's rules, ready for psql or \\\\i."""
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


def _report(outcome: Any) -> str:
    from .apply import Status

    if outcome.status is Status.APPLIED:
        OUT.info(f"{outcome.table}: applied {len(outcome.actions)} actions")
    elif outcome.status is Status.UNCHANGED:
        if outcome.message:
            OUT.info(f"{outcome.table}: {outcome.message}")
    else:
        OUT.warn(f"error: {outcome.message}")
    return str(outcome.table)


class _progress:
    """A progress bar over tables on a terminal; nothing extra otherwise (the per-table lines are the log)."""

    def __init__(self, total: int):
        self.total, self.bar = total, None

    def __enter__(self):
        if OUT.terminal and not OUT.quiet and self.total > 1:
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            task = self.bar.add_task("applying", total=self.total)
            return lambda name: self.bar.update(task, advance=1, description=name)
        return lambda name: None

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


class _Session:
    """Specs, project, an open connection and the clock for one command."""

    def __init__(self, specs, project, conn, now, state_schema, protected, ladder=None):
        self.specs, self.project, self.conn, self.now = specs, project, conn, now
        self.state_schema, self.protected = state_schema, protected
        self.ladder = ladder
        self.database_now: Optional[datetime] = None
        self.pinned = False

    @classmethod
    def open(cls, paths, env, project_file, database_url, now, state_schema, tables=None, ladder=None) -> "_Session":
        from . import project as projects
        from .spec import load_specs

        pinned = _parse_now(now) if now else None
        project = projects.load_project(project_file or projects.find(paths))
        specs = _only(load_specs(paths, env, project.env_names), tables)
        session = cls.connect(specs, env, project_file, database_url, state_schema, paths, project=project)
        session.ladder = ladder
        session.database_now = session.conn.execute("SELECT now()").fetchone()[0]
        session.now, session.pinned = (pinned, True) if pinned else (session.database_now, False)
        return session

    @classmethod
    def connect(cls, specs, env, project_file, database_url, state_schema, paths, project=None) -> "_Session":
        from . import project as projects
        from .redact import redact

        project = project or projects.load_project(project_file or projects.find(paths))
        url = projects.database_url(project, env, database_url)
        if url is None:
            from . import embedded

            url = embedded.url(project.root)
        OUT.debug(f"connecting to {redact(url)} for env {env}")
        conn = _connect(url)
        settings = project.environments.get(env)
        schema = _state_schema(state_schema or project.state_schema)
        return cls(specs, project, conn, None, schema, bool(settings and settings.protected))

    def observe(self, digests: bool = False):
        """The snapshot and the plan, read under the ladder; the plan says whether the clock was pinned."""
        from dataclasses import replace

        from .observe import observe

        snap, the_plan = observe(self.conn, self.specs, now=self.now, env=self.specs[0].env if self.specs else "",
                                 state_schema=self.state_schema, ladder=self.ladder, digests=digests)
        OUT.debug(f"read {sum(len(t.partitions) for t in snap.tables.values())} partitions of {len(snap.tables)} tables")
        return snap, replace(the_plan, pinned=self.pinned, database_now=self.database_now if self.pinned else None)

    def plan(self, digests: bool = False):
        """digests=True for a plan that apply will carry out: it checks them under each table's lock."""
        return self.observe(digests)[1]


def _state_schema(name: str) -> str:
    """The state schema as given (an identifier, quoted when SQL is composed); never a system schema."""
    if not name or "\x00" in name or len(name.encode()) > 63:
        raise typer.BadParameter(f"{_cut(name)!r} is not a schema name (1 to 63 bytes, no NUL)", param_hint="--state-schema")
    if name in ("pg_catalog", "information_schema", "pg_toast") or name.startswith("pg_temp"):
        raise typer.BadParameter(f"{name} is a system schema; partman's state tables cannot live there",
                                 param_hint="--state-schema")
    return name


def _cut(text: str, limit: int = 60) -> str:
    """A value echoed in a message, cut so a huge input cannot flood the terminal."""
    return text if len(text) <= limit else text[:limit] + "…"


def _only(specs: list, tables: Optional[List[str]]) -> list:
    """The specs named by --table; an unknown name is an error that lists the known ones."""
    if not tables:
        return specs
    from .model import TableRef

    known = {s.table: s for s in specs}
    chosen = []
    for name in tables:
        ref = TableRef.parse(name)
        if ref not in known:
            raise SpecError(f"unknown table '{name}' (known: {', '.join(sorted(map(str, known)))})")
        chosen.append(known[ref])
    return chosen


def _connect(url: str):
    import psycopg

    from .redact import connection_failure, parse_failure

    unparsable = parse_failure(url)
    if unparsable:
        raise CatalogError(unparsable)
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="partman")
    except psycopg.Error as exc:
        raise CatalogError(connection_failure(url, exc)) from None


def _parse_now(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--now {_cut(text)!r} is not an ISO 8601 timestamp (e.g. 2027-01-01T00:00:00Z)") from None
    if value.tzinfo is None:
        raise UsageError(f"--now {_cut(text)!r} needs an offset (e.g. 2027-01-01T00:00:00Z)")
    # Far enough from year 1 and 9999 that every window, premake and retention stays on the calendar.
    if not 1900 <= value.year <= 9000:
        raise UsageError(f"--now {_cut(text)!r} is outside the years 1900 to 9000")
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


def _write_atomically(path: Path, body: str) -> None:
    from .files import write_atomically

    write_atomically(path, body, mode=0o644)  # the textfile collector runs as another user


def _emit(body: str, *, color: bool) -> None:
    if color and OUT.color and OUT.terminal:
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
    import logging

    # psycopg logs "error ignored terminating <Pipeline …>" when a failed pipeline is closed; the failure
    # itself is what partman reports.
    logging.getLogger("psycopg").addHandler(logging.NullHandler())
    logging.getLogger("psycopg").propagate = False
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
    except typer.TyperException as exc:  # click's usage errors: one line, like every other error
        where = getattr(getattr(exc, "ctx", None), "command_path", "partman")
        message = " ".join(exc.format_message().split())
        typer.echo(f"error: {_cut(message, 300)} (see '{where} --help')", err=True)
        sys.exit(EXIT_USAGE if getattr(exc, "exit_code", 2) == 2 else exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # a database error outside a table's own handler, or a defect: one line, no traceback
        from .failures import describe

        typer.echo(f"error: {describe(exc)}", err=True)
        if os.environ.get("PARTMAN_DEBUG"):
            import traceback

            traceback.print_exc()
        sys.exit(1)
    finally:
        OUT.quiet, OUT.verbose, OUT.color = False, False, True  # in-process callers (tests) start afresh
    sys.exit(code if isinstance(code, int) else 0)
