"""Every diagnostic code partman can print is in the registry, has a hint, and is listed in the README."""

from __future__ import annotations

import re
from pathlib import Path

from partman import diagnostics, errors
from partman.plan import Note
from partman.model import Bounds, TableRef

ROOT = Path(__file__).resolve().parent.parent


def _codes_in_the_package() -> set[str]:
    found = set()
    for path in (ROOT / "partman").glob("*.py"):
        if path.name != "diagnostics.py":
            found.update(re.findall(r'"(PM\d{3})"', path.read_text()))
    return found


def test_every_code_the_package_uses_is_registered_with_a_hint():
    used = _codes_in_the_package()
    assert used, "the package uses no codes: the scan is broken"
    assert used <= set(diagnostics.REGISTRY)
    assert all(d.hint for d in diagnostics.REGISTRY.values())


def test_every_error_that_ends_an_apply_short_has_its_own_code():
    kinds = [errors.PartmanError, errors.StalePlan, errors.Blocked, errors.LockBusy]
    assert len({k.code for k in kinds}) == len(kinds)
    assert all(k.code in diagnostics.REGISTRY for k in kinds)


def test_the_readme_lists_the_registry():
    assert diagnostics.table() in (ROOT / "README.md").read_text()


def test_a_note_carries_the_hint_of_its_code():
    note = Note("PM201", TableRef("public", "p"), Bounds(None, None), "not in partition_log; left alone")
    assert note.to_dict()["hint"] == diagnostics.hint("PM201")
