"""What partman prints: how much (the global options), in colour or not, a progress bar on a terminal, and the
small helpers that keep every message one readable line (cut values, plurals)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import typer


@dataclass
class Output:
    """How much to say and whether in colour; set once by the global options."""

    quiet: bool = False
    verbose: bool = False
    color: bool = True

    def configure(self, *, quiet: bool, verbose: bool, no_color: bool) -> None:
        self.quiet, self.verbose = quiet, verbose and not quiet
        self.color = not no_color and not os.environ.get("NO_COLOR")

    def reset(self) -> None:
        self.quiet, self.verbose, self.color = False, False, True

    def info(self, message: str) -> None:
        if not self.quiet:
            typer.echo(message)

    def debug(self, message: str) -> None:
        if self.verbose:
            typer.echo(message, err=True)

    def warn(self, message: str) -> None:
        typer.echo(message, err=True)

    def error(self, message: str) -> None:
        for line in message.splitlines() or [""]:
            typer.echo(f"error: {line}", err=True)

    @property
    def terminal(self) -> bool:
        return sys.stdout.isatty()


OUT = Output()

_STYLES = {"+": "green", "-": "red", "~": "yellow", "!": "magenta", "x": "bold red"}


def emit(body: str, *, color: bool) -> None:
    """A rendered plan or report on stdout; coloured by each line's marker only on a terminal that wants it."""
    if not (color and OUT.color and OUT.terminal):
        sys.stdout.write(body)
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    for line in body.rstrip("\n").split("\n"):
        marker = line.strip()[:1]
        console.print(Text(line, style=_STYLES.get(marker, "")) if line.startswith("  ") else Text(line, style="bold"))


def cut(text: str, limit: int = 60) -> str:
    """A value echoed in a message, cut so a huge input cannot flood the terminal."""
    return text if len(text) <= limit else text[:limit] + "…"


def plural(count: int, word: str, many: Optional[str] = None) -> str:
    """'1 action', '2 actions', '1 partition missing'."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


# Below this many actions an apply is quick enough that its per-table lines are all the progress one needs.
PROGRESS_FROM = 50


class progress:
    """A progress bar over the actions of an apply, on a terminal and only for a long one; nothing otherwise."""

    def __init__(self, total: int):
        self.total, self.bar, self.task = total, None, None

    def __enter__(self) -> Callable[[str, int], None]:
        if OUT.terminal and not OUT.quiet and self.total > PROGRESS_FROM:
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task("applying", total=self.total)
            return self._advance
        return lambda _name, _steps: None

    def _advance(self, name: str, steps: int) -> None:
        self.bar.update(self.task, advance=steps, description=name)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def lock_waits():
    """The ladder's announcer: the first wait for a lock on a table is said once, naming who holds it."""
    said: set[str] = set()

    def announce(what: str, holder: Optional[str]) -> None:
        table = what.split(":", 1)[0]
        if table in said:
            return
        said.add(table)
        OUT.warn(f"waiting: {table}: a lock is held by {holder or 'another session'}; retrying with pauses between attempts")

    return announce
