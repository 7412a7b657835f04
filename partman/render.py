"""Plans as text (Terraform-like +/- lines and a summary), and JSON; sorted and deterministic."""

from __future__ import annotations

import json

from .model import Bounds, iso
from .plan import Action, ActionKind, Plan, Reason, TablePlan

_SIGN = {ActionKind.CREATE: "+", ActionKind.DETACH: "-", ActionKind.DROP: "-"}


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    parents = sum(1 for t in plan.tables if t.create_parent)
    configs = sum(1 for t in plan.tables if t.config is not None)
    if not plan.changes:
        return "No changes."
    tables = f", {parents} table{'s' if parents != 1 else ''} to create" if parents else ""
    config = f", {configs} config{'s' if configs != 1 else ''} to update" if configs else ""
    return f"Plan: {counts['create']} to create, {counts['detach']} to detach, {counts['drop']} to drop{tables}{config}."


def text(plan: Plan) -> str:
    lines = [f"partman plan for env {plan.env} at {iso(plan.now)}", ""]
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
        rows = "" if a.kind is ActionKind.CREATE else f"  ({_rows(a)})"
        lines.append(f"  {_SIGN[a.kind]} {a.kind.value:<8} {a.partition}  {_range(a.bounds)}  {a.reason.value}{rows}")
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
    if a.reason is Reason.INTERVAL_CHANGE:
        return "empty: checked with EXISTS"
    return "rows unknown" if a.rows_estimate is None else f"~{a.rows_estimate:,} rows"


def as_json(plan: Plan) -> str:
    return json.dumps(plan.to_dict(), indent=2, sort_keys=False) + "\n"
