"""Golden plans: the text and JSON a reviewer reads, byte for byte. PARTMAN_UPDATE_GOLDEN=1 rewrites them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import Layout, spec, utc

from partman import render
from partman.planner import plan

GOLDEN = Path(__file__).parent / "golden"
NOW = utc(2027, 2, 15, 12)


def interval_change_with_retention():
    """Monthly to quarterly: rows in February (current) and May (future), an expired January 2026, a stranger."""
    layout = Layout()
    layout.add(utc(2026, 1, 1), utc(2026, 2, 1), rows=True, name="bookings_2026_01")
    for m in range(2, 9):
        layout.add(utc(2027, m, 1), utc(2027, m + 1, 1), rows=m in (2, 5), name=f"bookings_2027_{m:02d}")
    layout.add(utc(2027, 11, 1), utc(2027, 12, 1), managed=False, name="manual_2027_11")
    return plan([spec("quarterly", premake="12 months", retention="12 months")], layout.snapshot(), now=NOW, env="prod")


CASES = {"interval_change_with_retention": interval_change_with_retention}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("fmt, suffix", [(render.text, "txt"), (render.as_json, "json"), (render.markdown, "md")])
def test_rendered_plan_matches_the_golden_file(case, fmt, suffix):
    body = fmt(CASES[case]())
    path = GOLDEN / case / f"plan.{suffix}"
    if os.environ.get("PARTMAN_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    assert body == path.read_text()


def test_an_empty_plan_says_no_changes():
    layout = Layout()
    for m in range(2, 6):
        layout.add(utc(2027, m, 1), utc(2027, m + 1, 1))
    s = spec("monthly", premake="2 months")
    text = render.text(plan([s], layout.snapshot(configured_for=s), now=NOW, env="prod"))
    assert text.endswith("  in shape\n\nNo changes.\n")
