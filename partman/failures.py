"""Database and system errors that reach the command line outside a table's own handler, each as one line
that says what happened and what to do; psycopg's multi-line texts and Python's tracebacks never reach users."""

from __future__ import annotations

from typing import Optional

import psycopg

_MEANING = [
    (psycopg.errors.QueryCanceled, "a statement was cancelled (statement_timeout, or cancelled by an administrator)"),
    (psycopg.errors.ReadOnlySqlTransaction, "the database is read-only (a standby, or default_transaction_read_only)"),
    (psycopg.errors.InsufficientPrivilege, "permission denied"),
    (psycopg.errors.LockNotAvailable, "a lock was not obtained in time"),
    (psycopg.errors.AdminShutdown, "the server terminated partman's connection"),
    (psycopg.OperationalError, "lost the connection to the server"),
]


def read_failure(exc: psycopg.Error, table: str, timeout_ms: int, lock_ms: int, hint: str = "") -> Optional[Exception]:
    """The one-line error of a read of table that waited too long: its lock (LockBusy, safe to retry) or its
    statement_timeout (with hint, what would make it shorter); None for any other failure."""
    from .errors import CatalogError, LockBusy

    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return LockBusy(f"{table}: lock not granted within {lock_ms} ms (another session holds it exclusively);"
                        " safe to retry")
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return CatalogError(f"reading {table} took longer than {timeout_ms} ms (statement_timeout){hint}")
    return None


def first_line(exc: BaseException) -> str:
    """An exception's first line (psycopg's texts run to several), or its type when it says nothing."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def describe(exc: BaseException) -> str:
    """One line for any error; the server's first line and hint where it has them."""
    first = first_line(exc)
    if isinstance(exc, psycopg.Error):
        for kind, meaning in _MEANING:
            if isinstance(exc, kind):
                return f"{meaning}: {first}"
        return f"the database refused: {first}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}"
    if isinstance(exc, ValueError) and "NUL" in str(exc):
        return "a value contains a NUL byte, which PostgreSQL cannot store"
    return f"internal error ({type(exc).__name__}: {first}); rerun with PARTMAN_DEBUG=1 and report it"


def exit_for(exc: BaseException, *, debug: bool = False) -> int:
    """The one place an exception becomes what the user sees: its line on stderr and its documented exit code."""
    import typer

    from .console import OUT, cut
    from .errors import Exit, PartmanError

    if isinstance(exc, PartmanError):
        OUT.error(exc.message)
        return int(exc.exit_code)
    if isinstance(exc, typer.Abort):  # end of input at a prompt
        OUT.warn("Aborted; nothing changed.")
        return int(Exit.ERROR)
    if type(exc).__name__ == "NoArgsIsHelpError":  # `partman`, `partman dev`: the help, as asked
        typer.echo(exc.ctx.get_help())
        return int(Exit.OK)
    if isinstance(exc, typer.TyperException):  # click's usage errors: one line, like every other error
        where = getattr(getattr(exc, "ctx", None), "command_path", "partman")
        OUT.error(f"{cut(' '.join(exc.format_message().split()), 300)} (see '{where} --help')")
        return int(Exit.USAGE) if getattr(exc, "exit_code", 2) == 2 else exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        OUT.error("interrupted: the statement in flight was rolled back, and every partition is done or untouched"
                  " (an interrupted detach is finished by the next apply)")
        return int(Exit.INTERRUPTED)
    OUT.error(describe(exc))  # a database error outside a table's own handler, or a defect: no traceback
    if debug:
        import traceback

        traceback.print_exception(exc)
    return int(Exit.ERROR)
