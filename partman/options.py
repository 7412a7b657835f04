"""The command line's shared options, declared once: their metavars, help, completion and defaults, how they
become a session's Options, and the global options that may stand anywhere on the line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, List, Optional

import typer

from .console import OUT, lock_waits
from .errors import UsageError

if TYPE_CHECKING:
    from .session import Options


def complete_env(incomplete: str) -> list[str]:
    from . import completion

    return completion.envs(incomplete)


def complete_table(ctx: typer.Context, incomplete: str) -> list[str]:
    from . import completion

    return completion.tables(ctx.params.get("specs") or [], incomplete)


def choices(*values: str):
    return lambda incomplete: [v for v in values if v.startswith(incomplete)]


Specs = Annotated[List[Path], typer.Argument(metavar="SPEC...", help="Spec files or directories of them.", show_default=False)]
Env = Annotated[Optional[str], typer.Option(
    "--env", "-e", envvar="PARTMAN_ENV", metavar="ENV", autocompletion=complete_env,
    help="Environment of partman.yaml to use (default: its only one; without a project file, the base spec).")]
Project = Annotated[Optional[Path], typer.Option(
    "--project", "-C", metavar="DIR|FILE", help="The project: partman.yaml or its directory (default: here or above the specs).")]
Url = Annotated[Optional[str], typer.Option(
    "--database-url", metavar="URL", show_default=False, help="Connection string; wins over PARTMAN_DATABASE_URL and the project file.")]
Now = Annotated[Optional[str], typer.Option(
    "--now", metavar="TIMESTAMP", help="Pin the clock (ISO 8601 with offset); default: the database's now().")]
Schema = Annotated[Optional[str], typer.Option(
    "--state-schema", metavar="SCHEMA", help="Schema of partition_log, partition_audit_log, partition_config.")]
Tables = Annotated[Optional[List[str]], typer.Option(
    "--table", "-t", metavar="TABLE", autocompletion=complete_table, help="Only this table (name or schema.name); repeatable.")]
# PostgreSQL's lock_timeout is an int of milliseconds; a step above a minute would defeat the ladder's purpose.
LockTimeout = Annotated[int, typer.Option(
    "--lock-timeout-ms", min=1, max=60_000, metavar="MS", help="How long any one lock request may wait (writers can queue behind it).")]
LockBudget = Annotated[float, typer.Option(
    "--lock-budget", min=0.0, max=86_400.0, metavar="SECONDS", help="Retries, with pauses between them, before a lock is given up (exit 4).")]


def project_file(given: Optional[Path]) -> Optional[Path]:
    """-C takes the project's directory or its file."""
    return given / "partman.yaml" if given is not None and given.is_dir() else given


def options(paths, env, project, url, schema, now=None, tables=None, step=100, budget=30.0) -> "Options":
    from .lock import Ladder
    from .session import Options  # noqa: F811 - imported when used: --help loads neither psycopg nor the specs

    return Options(paths=list(paths), env=env, project_file=project_file(project), database_url=url, state_schema=schema, now=now,
                   tables=list(tables or []), ladder=Ladder(step_ms=step, budget_s=budget, on_wait=lock_waits()))


def choice(value: str, option: str, *allowed: str) -> None:
    if value not in allowed:
        raise UsageError(f"{option} {value!r} is not one of {', '.join(allowed)}")


_GLOBAL = {"--quiet": "quiet", "-q": "quiet", "--verbose": "verbose", "-v": "verbose", "--no-color": "no_color"}


def take_globals(argv: List[str]) -> List[str]:
    """Take the global options out of argv wherever they are (up to a `--`), as git and kubectl allow."""
    flags = {"quiet": False, "verbose": False, "no_color": False}
    rest: List[str] = []
    for n, arg in enumerate(argv):
        if arg == "--" or rest[-2:] == ["dev", "psql"]:  # what follows is psql's (psql -v NAME=VALUE)
            rest.extend(argv[n:])
            break
        if arg in _GLOBAL:
            flags[_GLOBAL[arg]] = True
        else:
            rest.append(arg)
    OUT.configure(**flags)
    return rest


def show_version(value: bool) -> None:
    """--version: partman's and the libpq it links, as psql --version names its own."""
    if value:
        from psycopg import pq

        from . import __version__

        libpq = pq.version()
        typer.echo(f"partman {__version__} (PostgreSQL client libpq {libpq // 10000}.{libpq % 10000})")
        raise typer.Exit(0)
