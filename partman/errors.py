"""The one error hierarchy and every exit code partman returns: each error carries the data its one-line message
needs and its exit code, and the precedence of codes when tables of one run end differently is decided here."""

from __future__ import annotations

from enum import IntEnum
from typing import Iterable


class Exit(IntEnum):
    """The documented exit codes (README: Exit codes)."""

    OK = 0
    ERROR = 1  # an error, a stale plan, an apply declined, destructive actions withheld
    CHANGES = 2  # plan --detailed-exitcode: changes pending; drift: drift found
    BLOCKED = 3  # the future-data check kept a table unchanged
    LOCK_BUSY = 4  # a lock was not obtained within the ladder; safe to retry
    USAGE = 64  # EX_USAGE: a command line partman refuses (click's default of 2 would read as "changes pending")
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


class PartmanError(Exception):
    """A user-facing error: printed as one line, never with a traceback."""

    exit_code = Exit.ERROR
    severity = 0  # the worst of a run's outcomes decides its exit code; lower is worse
    code = "PM304"  # its diagnostic (diagnostics.py), shown where a table's apply ends short

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SpecError(PartmanError):
    """A spec or project file is malformed; the message names file:line."""


class CatalogError(PartmanError):
    """The database cannot be reached or does not hold what the spec names."""


class StalePlan(PartmanError):
    """The database moved since the plan was computed; nothing was changed."""

    severity = 1
    code = "PM302"


class Blocked(PartmanError):
    """A partition about to be dropped holds rows (the future-data check); that table was left unchanged."""

    exit_code = Exit.BLOCKED
    severity = 2
    code = "PM301"


class LockBusy(PartmanError):
    """A lock was not obtained within the lock_timeout ladder; safe to retry later."""

    exit_code = Exit.LOCK_BUSY
    severity = 3
    code = "PM303"


class UsageError(PartmanError):
    """The command line asks for something partman refuses (EX_USAGE); nothing was changed."""

    exit_code = Exit.USAGE


def worst(failures: Iterable[type[PartmanError]]) -> int:
    """The exit code of a run whose tables failed with these: an error outranks a stale plan, which outranks
    a blocked table, which outranks a busy lock (the one a retry may fix by itself)."""
    kinds = sorted(failures, key=lambda kind: kind.severity)
    return int(kinds[0].exit_code) if kinds else int(Exit.OK)
