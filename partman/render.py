"""Plans as text (Terraform-like +/- lines and a summary), and JSON; sorted and deterministic."""

from __future__ import annotations

import json

from .model import Bounds, iso
from .plan import DESTRUCTIVE, Action, ActionKind, Plan, Reason, TablePlan

_SIGN = {ActionKind.CREATE: "+", ActionKind.DETACH: "-", ActionKind.DROP: "-", ActionKind.REATTACH: "+"}


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    parents = sum(1 for t in plan.tables if t.create_parent)
    configs = sum(1 for t in plan.tables if t.config is not None)
    if not plan.changes:
        return "No changes."
    tables = f", {parents} table{'s' if parents != 1 else ''} to create" if parents else ""
    config = f", {configs} config{'s' if configs != 1 else ''} to update" if configs else ""
    return f"Plan: {counts['create']} to create, {counts['detach']} to detach, {counts['drop']} to drop{tables}{config}."


def clock_line(plan: Plan) -> str:
    """Says plainly when the clock was pinned: a pinned plan is for reproducing, not for running at noon."""
    if not plan.pinned:
        return ""
    told = f"; the database's clock says {iso(plan.database_now)}" if plan.database_now else ""
    return f"The clock is pinned by --now to {iso(plan.now)}{told}."


def text(plan: Plan) -> str:
    lines = [f"partman plan for env {plan.env} at {iso(plan.now)}" + (" (clock pinned by --now)" if plan.pinned else ""), ""]
    if plan.pinned:
        lines[1:1] = [clock_line(plan)]
    for t in plan.tables:
        lines.extend(_table_lines(t))
        lines.append("")
    errors = sum(1 for t in plan.tables if t.errors)
    lines.append(summary_line(plan))
    if errors:
        lines.append(f"Errors in {errors} table{'s' if errors != 1 else ''}; those tables were not planned.")
    return "\n".join(lines) + "\n"


def _table_lines(t: TablePlan) -> list[str]:
    lines = [f"{t.table}  ({t.source})"]
    for error in t.errors:
        lines.append(f"  x error    {error}")
    if t.create_parent:
        lines.append(f"  + create table {t.table}")
    for a in t.actions:
        if a.kind is ActionKind.CREATE:
            rows = f"  (moves {a.default_rows:,} rows from the default partition)" if a.default_rows else ""
        else:
            rows = f"  ({_rows(a)})"
        lines.append(f"  {_SIGN[a.kind]} {a.kind.value:<8} {a.partition}  {_range(a.bounds)}  {a.reason.value}{rows}")
    if t.busy:
        lines.append("  ! busy     locked by another session: planned with what is known (see PM208 below)")
    if t.config is not None:
        settings = ", ".join(f"{k}={v}" for k, v in t.config.to_dict().items())
        lines.append(f"  ~ config   partition_config: {settings}")
    for n in t.kept:
        lines.append(f"  ~ kept     {n.partition}  {_range(n.bounds)}  {n.code} {n.why}")
    for n in t.unmanaged:
        lines.append(f"  ! unmanaged {n.partition}  {_range(n.bounds)}  {n.code} {n.why}")
    for n in t.warnings:
        lines.append(f"  ! warning  {n.partition}  {n.code} {n.why}")
    if not (t.errors or t.changes or t.kept or t.unmanaged or t.warnings):
        lines.append("  in shape")
    return lines


def _range(b: Bounds) -> str:
    return f"[{iso(b.start) or 'MINVALUE'}, {iso(b.end) or 'MAXVALUE'})"


def _rows(a: Action) -> str:
    if a.reason is Reason.INTERVAL_CHANGE and a.rows_estimate == 0:
        return "empty: checked with EXISTS"
    return "rows unknown" if a.rows_estimate is None else f"~{a.rows_estimate:,} rows"


def as_json(plan: Plan) -> str:
    return json.dumps(plan.to_dict(), indent=2, sort_keys=False) + "\n"


MARKER = "<!-- partman-plan:{env} -->"


def markdown(plan: Plan, *, timestamps: bool = False) -> str:
    """For a pull-request comment: summary first, what needs a reviewer's eye in a table, everything else
    folded. A hidden marker lets CI update one comment in place; the body holds no timestamp unless asked,
    so an unchanged plan yields an identical comment."""
    lines = [MARKER.format(env=plan.env), f"### partman plan: `{plan.env}`", ""]
    lines.append(f"**{summary_line(plan).rstrip('.')} ({plan.env})**" if plan.changes else f"**No changes ({plan.env}).**")
    if plan.pinned:
        lines += ["", f":warning: {clock_line(plan)}"]
    elif timestamps:
        lines += ["", f"Planned at {iso(plan.now)}."]
    errors = [(t.table, e) for t in plan.tables for e in t.errors]
    if errors:
        lines += ["", "**Errors**: these tables were not planned:", ""]
        lines += [f"- `{table}`: {_md(error)}" for table, error in errors]
    attention = [
        (a.kind.value, t.table, a.partition, a.bounds, a.reason.value, _rows(a))
        for t in plan.tables for a in t.actions if a.kind in DESTRUCTIVE
    ] + [("kept", t.table, n.partition, n.bounds, f"{n.code} {n.why}", "") for t in plan.tables for n in t.kept]
    if attention:
        lines += ["", "| | partition | range | why | rows |", "|---|---|---|---|---|"]
        for kind, _, partition, bounds, why, rows in attention:
            lines.append(f"| {kind} | `{partition}` | {_md_range(bounds)} | {_md(why)} | {rows} |")
    notes = [(t.table, n) for t in plan.tables for n in t.unmanaged + t.warnings]
    if notes:
        lines += ["", *[f"- :warning: `{n.partition}` {n.code} {_md(n.why)}" for _, n in notes]]
    count = sum(len(t.actions) + t.create_parent + (t.config is not None) for t in plan.tables)
    if count:
        lines += ["", f"<details><summary>All {count} changes</summary>", "", "```diff"]
        for t in plan.tables:
            if t.create_parent:
                lines.append(f"+ create table {t.table}")
            for a in t.actions:
                lines.append(f"{_SIGN[a.kind]} {a.kind.value:<7} {a.partition}  {_range(a.bounds)}  {a.reason.value}")
            if t.config is not None:
                lines.append(f"! config  {t.table}  " + ", ".join(f"{k}={v}" for k, v in t.config.to_dict().items()))
        lines += ["```", "", "</details>"]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_range(b: Bounds) -> str:
    return f"{iso(b.start) or 'MINVALUE'} → {iso(b.end) or 'MAXVALUE'}"
