"""Every partman command in examples/ parses with the real CLI: the examples cannot drift from the tool."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
import yaml

from partman.cli import app

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def commands_in(text: str) -> list[list[str]]:
    """The partman invocations in a shell snippet: split on pipes and separators, redirections dropped."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        for part in re.split(r"\|\||&&|[|;]", line):
            words = shlex.split(part, comments=True)
            if words[:1] == ["partman"]:
                words = words[1:]
                cut = next((i for i, w in enumerate(words) if w.startswith((">", "<", "2>"))), len(words))
                found.append(words[:cut])
    return found


def workflow_commands() -> list[tuple[str, list[str]]]:
    out = []
    for path in sorted(EXAMPLES.rglob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for job in doc["jobs"].values():
            for step in job["steps"]:
                out += [(f"{path.name}: {step.get('name', step['run'])}", c) for c in commands_in(step.get("run", ""))]
    for path in sorted(EXAMPLES.rglob("*.cron")):
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                out += [(path.name, c) for c in commands_in(" ".join(line.split()[6:]))]
    return out


COMMANDS = workflow_commands()


def parse(args: list[str]) -> str:
    """Parse like the real CLI does, without running anything; returns the subcommand's name."""
    group = typer.main.get_command(app)
    ctx = group.make_context("partman", list(args), resilient_parsing=False)
    rest = _rest(ctx)
    names = []
    command = group
    while hasattr(command, "resolve_command") and rest:
        name, command, rest = command.resolve_command(ctx, rest)
        names.append(name)
        ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=False)
        rest = _rest(ctx)
    return " ".join(names)


def _rest(ctx) -> list[str]:
    # click names the subcommand's words protected_args; typer's bundled click keeps them as _protected_args
    protected = getattr(ctx, "protected_args", None) or getattr(ctx, "_protected_args", [])
    return [*protected, *ctx.args]


def test_the_examples_use_partman_for_all_three_jobs():
    used = {parse(c) for _, c in COMMANDS}
    assert {"plan", "apply", "drift", "validate"} <= used
    assert len(COMMANDS) >= 6


@pytest.mark.parametrize("where, args", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_partman_command_in_the_examples_parses(where, args):
    parse(args)


def test_a_wrong_option_would_be_caught():
    with pytest.raises(typer.TyperException):
        parse(["plan", "specs/", "--env", "prod", "--fromat", "markdown"])
