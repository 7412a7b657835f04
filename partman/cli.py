"""The command line: typer wiring only. Options are declared once here; what each command does is in _commands().py,
the session (project, environment, connection, clock) in session.py, and printing in console.py."""

from __future__ import annotations

from dataclasses import replace

import copy
import os
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from typer.core import TyperArgument

from . import process
from .console import OUT
from .options import (Env, LockBudget, LockTimeout, Now, Project, Schema, Specs, Tables, Url, choice, choices,
                      complete_env, options, project_file, show_version, take_globals)

# typer labels arguments with Python types (`<list[Path]>`) and braces (`{specs}...`); a command line shows the
# conventional metavar only: `SPEC...`.
TyperArgument.display_type_rich = lambda _self, **_: None  # type: ignore[method-assign]
TyperArgument._usage_display_name = lambda self: self.metavar or self.name.upper()  # type: ignore[method-assign]
_metavar = TyperArgument.make_metavar
TyperArgument.make_metavar = lambda self, ctx, **kw: self.metavar or _metavar(self, ctx, **kw)  # type: ignore[method-assign]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

def _commands():
    """The command bodies, imported when a command runs: `partman --help` never loads psycopg or the specs."""
    from . import commands

    return commands


app = typer.Typer(
    add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
    context_settings=CONTEXT, help="Keep PostgreSQL range-partitioned tables in the shape their specs declare.",
)


@app.callback()
def _global(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and what was asked for."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Say what is being done, on stderr."),
    no_color: bool = typer.Option(False, "--no-color", help="No colour (also: the NO_COLOR variable)."),
    _version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Global options work before or after the command."""
    if quiet or verbose or no_color:
        OUT.configure(quiet=quiet or OUT.quiet, verbose=verbose or OUT.verbose, no_color=no_color or not OUT.color)


@app.command()
def validate(specs: Specs, env: Annotated[Optional[str], typer.Option("--env", "-e", envvar="PARTMAN_ENV", metavar="ENV",
             help="Check one environment only (default: every one).", autocompletion=complete_env)] = None,
             project: Project = None) -> None:
    """Check spec files against the schema and each other, for every environment; touches no database.

    \b
    Examples:
      partman validate specs/
      partman validate specs/ --env prod
    """
    raise typer.Exit(_commands().validate(specs, env, project_file(project)))


@app.command()
def plan(
    specs: Specs, env: Env = None,
    fmt: Annotated[str, typer.Option("--format", metavar="[text|json|markdown]", autocompletion=choices("text", "json", "markdown"),
                                     help="How to print the plan.")] = "text",
    out: Annotated[Optional[Path], typer.Option("--out", metavar="FILE", help="Save the plan for `partman apply FILE`.")] = None,
    detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode", help="Exit 2 when changes are pending.")] = False,
    timestamps: Annotated[bool, typer.Option("--timestamps", help="Markdown: say when the plan was made.")] = False,
    tables: Tables = None, now: Now = None, project: Project = None, database_url: Url = None, state_schema: Schema = None,
    lock_timeout_ms: LockTimeout = 100, lock_budget: LockBudget = 30.0,
) -> None:
    """Show what apply would do, without changing anything.

    \b
    Examples:
      partman plan specs/
      partman plan specs/ --env prod --format markdown > plan.md
      partman plan specs/ --env prod --out plan.json     # then: partman apply plan.json
    """
    choice(fmt, "--format", "text", "json", "markdown")
    told = options(specs, env, project, database_url, state_schema, now, tables, lock_timeout_ms, lock_budget)
    raise typer.Exit(_commands().plan(told, fmt, out, detailed_exitcode, timestamps))


@app.command()
def apply(
    specs: Annotated[List[Path], typer.Argument(metavar="SPEC...|PLAN.json", show_default=False,
                                                help="Spec files or directories, or one plan file saved by plan --out.")],
    env: Env = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Apply without asking (never permission to drop in a protected environment).")] = False,
    fmt: Annotated[str, typer.Option("--format", metavar="[text|json]", autocompletion=choices("text", "json"),
                                     help="json: the outcome of every table, for a pipeline.")] = "text",
    tables: Tables = None, now: Now = None, project: Project = None, database_url: Url = None, state_schema: Schema = None,
    lock_timeout_ms: LockTimeout = 100, lock_budget: LockBudget = 30.0,
    move_default_rows: Annotated[bool, typer.Option("--move-default-rows", help="Move rows from the default partition into new partitions covering them.")] = False,
    allow_clock_skew: Annotated[bool, typer.Option("--allow-clock-skew", envvar="PARTMAN_ALLOW_CLOCK_SKEW",
                                                   help="Apply with --now more than one interval from the database's clock.")] = False,
    parallelism: Annotated[Optional[int], typer.Option("--parallelism", "-j", metavar="N", min=1,
                                                       help="Tables applied at once, each on a connection of its own"
                                                            " (at most a tenth of max_connections). Default 4, or this"
                                                            " machine's cores if fewer when the server runs on it.")] = None,
) -> None:
    """Plan, confirm and apply; or apply exactly a saved plan. Per table: under its advisory lock, short lock timeouts.

    \b
    Examples:
      partman apply specs/ --env dev --auto-approve
      partman apply plan.json                            # exactly the reviewed plan, or nothing
      partman apply -C deploy/ plan.json --format json
    """
    choice(fmt, "--format", "text", "json")
    told = replace(options(specs, env, project, database_url, state_schema, now, tables, lock_timeout_ms, lock_budget),
                   parallelism=parallelism)
    if len(specs) == 1 and specs[0].suffix == ".json":
        raise typer.Exit(_commands().apply_saved(specs[0], told, move_default_rows, allow_clock_skew, fmt))
    raise typer.Exit(_commands().apply(told, auto_approve, move_default_rows, allow_clock_skew, fmt))


@app.command()
def drift(
    specs: Specs, env: Env = None,
    fmt: Annotated[str, typer.Option("--format", metavar="[text|json|markdown|prometheus]",
                                     autocompletion=choices("text", "json", "markdown", "prometheus"), help="How to report.")] = "text",
    prometheus_file: Annotated[Optional[Path], typer.Option("--prometheus-file", metavar="FILE",
                                                            help="Also write Prometheus metrics here, atomically (node_exporter textfile collector).")] = None,
    min_runway: Annotated[Optional[str], typer.Option("--min-runway", metavar="SPAN", help="e.g. '30 days'; default: half the premake.")] = None,
    tables: Tables = None, now: Now = None, project: Project = None, database_url: Url = None, state_schema: Schema = None,
    lock_timeout_ms: LockTimeout = 100, lock_budget: LockBudget = 30.0,
) -> None:
    """Report drift between specs and database: exit 0 in sync, 2 drift found, 1 error.

    \b
    Examples:
      partman drift specs/ --env prod
      partman drift specs/ --env prod --prometheus-file /var/lib/node_exporter/partman.prom
    """
    choice(fmt, "--format", "text", "json", "markdown", "prometheus")
    told = options(specs, env, project, database_url, state_schema, now, tables, lock_timeout_ms, lock_budget)
    raise typer.Exit(_commands().drift(told, fmt, prometheus_file, min_runway))


@app.command()
def history(
    env: Env = None, tables: Tables = None,
    since: Annotated[Optional[str], typer.Option("--since", metavar="AGE|DATE", help="Only newer actions: 30d, 12h, 2w, or an ISO date.")] = None,
    actions: Annotated[Optional[List[str]], typer.Option("--action", metavar="ACTION", autocompletion=choices(
        "create_table", "create", "detach", "drop", "reattach", "adopt", "convert", "config"), help="Only this action; repeatable.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, max=1_000_000_000, metavar="N", help="At most N actions.")] = None,
    fmt: Annotated[str, typer.Option("--format", metavar="[text|json]", autocompletion=choices("text", "json"), help="How to print.")] = "text",
    project: Project = None, database_url: Url = None, state_schema: Schema = None,
) -> None:
    """What partman did, newest first, from partition_audit_log (read-only rights are enough).

    \b
    Examples:
      partman history --since 30d
      partman history --env prod --table public.events --action drop --format json
    """
    choice(fmt, "--format", "text", "json")
    told = options([], env, project, database_url, state_schema, tables=tables)
    raise typer.Exit(_commands().history(told, fmt, since, actions or [], limit))


@app.command()
def exclusions(
    specs: Specs, env: Env = None,
    fmt: Annotated[str, typer.Option("--format", metavar="[regex|atlas|pg_dump|json]",
                                     autocompletion=choices("regex", "atlas", "pg_dump", "json"), help="Which tool's syntax.")] = "regex",
    tables: Tables = None, project: Project = None, database_url: Url = None, state_schema: Schema = None,
) -> None:
    """Print the partitions partman manages, and patterns for the ones it will make, for schema tools to leave alone.

    \b
    Examples:
      partman exclusions specs/ --env prod                    # one anchored regex per line
      partman exclusions specs/ --env prod --format atlas     # exclude = [...] for atlas.hcl
      partman exclusions specs/ --env prod --format pg_dump | xargs pg_dump --schema-only -d "$DATABASE_URL" -f schema.sql
    """
    choice(fmt, "--format", "regex", "atlas", "pg_dump", "json")
    told = options(specs, env, project, database_url, state_schema, tables=tables)
    raise typer.Exit(_commands().exclusions(told, fmt))


sql_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, context_settings=CONTEXT,
                      help="The SQL face: the Flyway-style migration sql/V1__create_or_manage_partitions.sql.")
app.add_typer(sql_app, name="sql")


@sql_app.command("render")
def sql_render(settings: Annotated[List[str], typer.Option("--set", metavar="NAME=VALUE",
               help="A placeholder's value, e.g. partitioning.prefix=amenity_booking; repeatable.")] = []) -> None:  # noqa: B006
    """Print the migration with its placeholders filled by Flyway's rules, ready for psql (or its \\i).

    \b
    Example:
      partman sql render --set partitioning.prefix=amenity_booking | psql "$DATABASE_URL"
    """
    raise typer.Exit(_commands().sql_render(settings))


@app.command()
def schema() -> None:
    """Print the spec JSON Schema, for editors (yaml-language-server) and other validators.

    \b
    Example:
      partman schema > partman.schema.json
    """
    raise typer.Exit(_commands().schema())


import_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, context_settings=CONTEXT,
                         help="Write specs from another tool's configuration, for partman to take its tables over.")
app.add_typer(import_app, name="import")


@import_app.command("pg-partman")
def import_pg_partman(
    out: Annotated[Path, typer.Option("--out", metavar="DIR", show_default=False,
                                      help="Directory for the specs, one <schema>.<table>.yaml per set (made if missing).")],
    schema: Annotated[str, typer.Option("--schema", metavar="SCHEMA", help="Schema pg_partman is installed in (its part_config).")] = "partman",
    force: Annotated[bool, typer.Option("--force", help="Overwrite spec files that exist.")] = False,
    env: Env = None, project: Project = None, database_url: Url = None,
) -> None:
    """Write a spec for each time-based set in pg_partman's part_config (4.x or 5.x), with adopt: existing;
    sets partman cannot express are named on stderr, one line each. Reads only; changes nothing.

    \b
    Examples:
      partman import pg-partman --out specs/ --database-url "$DATABASE_URL"
      partman import pg-partman --schema partman --out specs/ --env prod
      partman plan specs/ --env prod                     # then: ~ adopt lines, nothing to create or drop
    """
    told = options([], env, project, database_url, None)
    raise typer.Exit(_commands().import_pg_partman(told, schema, out, force))


dev_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, context_settings=CONTEXT,
                      help="The embedded dev database under .partman/ (environments with database: embedded).")
app.add_typer(dev_app, name="dev")


@dev_app.command("status")
def dev_status(project: Project = None) -> None:
    """Say whether the dev database runs, where, and its URL (exit 1 when it does not run)."""
    raise typer.Exit(_commands().dev_status(project_file(project)))


@dev_app.command("url")
def dev_url(project: Project = None) -> None:
    """Print the dev database's URL (starting it if needed): export PARTMAN_DATABASE_URL=$(partman dev url)."""
    raise typer.Exit(_commands().dev_url(project_file(project)))


@dev_app.command("psql", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dev_psql(ctx: typer.Context, project: Project = None) -> None:
    """Open psql on the dev database (starting it if needed); arguments after -- go to psql."""
    raise typer.Exit(_commands().dev_psql(project_file(project), ctx.args))


@dev_app.command("stop")
def dev_stop(project: Project = None) -> None:
    """Stop the dev database (its data stays; the next command that needs it starts it again)."""
    raise typer.Exit(_commands().dev_stop(project_file(project)))


@dev_app.command("reset")
def dev_reset(project: Project = None, yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False) -> None:
    """Stop the dev database and delete its data (asks first)."""
    raise typer.Exit(_commands().dev_reset(project_file(project), yes))


@app.command("help")
def help_(command: Annotated[Optional[List[str]], typer.Argument(metavar="[COMMAND...]")] = None) -> None:
    """Show the help of partman or of one of its commands."""
    raise typer.Exit(_run([*(command or []), "--help"]))


def _run(argv: List[str]) -> int:
    command = typer.main.get_command(_only_the_command(argv))
    code = command.main(args=argv, prog_name="partman", standalone_mode=False)
    if code == 130:  # typer turns Ctrl-C into a silent exit 130; no command returns 130 itself
        raise KeyboardInterrupt
    return code if isinstance(code, int) else 0


def _only_the_command(argv: List[str]):
    """The app with only the command argv runs: typer builds a command from its signature, about 3 ms each, so
    building all of them cost a plan over many tables a twentieth of its time. The whole app where the command is
    unknown (click then lists them), where no command is named, and for shell completion, which walks them all."""
    name = next((arg for arg in argv if not arg.startswith("-")), None)
    if name is None or os.environ.get("_PARTMAN_COMPLETE"):
        return app
    commands = [c for c in app.registered_commands if (c.name or typer.main.get_command_name(c.callback.__name__)) == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        return app
    only = copy.copy(app)
    only.registered_commands, only.registered_groups = commands, groups
    return only


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: one line on stderr and a documented exit code for every user error; no tracebacks."""
    import logging

    # psycopg logs "error ignored terminating <Pipeline …>" when a failed pipeline is closed; the failure
    # itself is what partman reports.
    logging.getLogger("psycopg").addHandler(logging.NullHandler())
    logging.getLogger("psycopg").propagate = False
    program = argv is None  # else a caller in the same process (tests), whose interpreter is left as it is
    if program:
        process.for_one_command()
    try:
        code = _run(take_globals(list(sys.argv[1:] if argv is None else argv)))
    except BaseException as exc:  # every way out is a documented code and at most one line per error
        if isinstance(exc, SystemExit):
            raise
        from .failures import exit_for  # psycopg, only when there is something to describe

        code = exit_for(exc, debug=bool(os.environ.get("PARTMAN_DEBUG")))
    finally:
        OUT.reset()  # in-process callers (tests) start afresh
    if program:
        process.leave(code)
    sys.exit(code)
