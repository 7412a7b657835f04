"""The one error hierarchy; each error carries the data its one-line message needs and its exit code."""

from __future__ import annotations


class PartmanError(Exception):
    """A user-facing error: printed as one line, never with a traceback."""

    exit_code = 1

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


class Blocked(PartmanError):
    """A partition about to be dropped holds rows (the future-data check); that table was left unchanged."""

    exit_code = 3


class LockBusy(PartmanError):
    """A lock was not obtained within the lock_timeout ladder; safe to retry later."""

    exit_code = 4


class UsageError(PartmanError):
    """The command line asks for something partman refuses (EX_USAGE); nothing was changed."""

    exit_code = 64
