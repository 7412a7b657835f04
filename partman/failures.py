"""Database and system errors that reach the command line outside a table's own handler, each as one line
that says what happened and what to do; psycopg's multi-line texts and Python's tracebacks never reach users."""

from __future__ import annotations

import psycopg

_MEANING = [
    (psycopg.errors.QueryCanceled, "a statement was cancelled (statement_timeout, or cancelled by an administrator)"),
    (psycopg.errors.ReadOnlySqlTransaction, "the database is read-only (a standby, or default_transaction_read_only)"),
    (psycopg.errors.InsufficientPrivilege, "permission denied"),
    (psycopg.errors.LockNotAvailable, "a lock was not obtained in time"),
    (psycopg.errors.AdminShutdown, "the server terminated partman's connection"),
    (psycopg.OperationalError, "lost the connection to the server"),
]


def describe(exc: BaseException) -> str:
    """One line for any error; the server's first line and hint where it has them."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
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
