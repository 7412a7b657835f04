"""Every report partman prints: plans as text (Terraform-like +/- lines and a summary), JSON and markdown, the
outcome of an apply as JSON, and drift as text, JSON, markdown and Prometheus metrics; sorted and deterministic."""

from __future__ import annotations

import json
from typing import Optional

from .console import plural
from .encoded import shown
from .model import Bounds, iso
from .plan import REVIEWED, Action, ActionKind, Plan, Reason, TablePlan

_SIGN = {ActionKind.CREATE: "+", ActionKind.DETACH: "-", ActionKind.DROP: "-", ActionKind.REATTACH: "+", ActionKind.ADOPT: "~", ActionKind.CONVERT: "~",
         ActionKind.CONFORM: "~"}


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    parents = sum(1 for t in plan.tables if t.create_parent)
    configs = sum(1 for t in plan.tables if t.config is not None)
    if not plan.changes:
        return "No changes."
    tables = f", {plural(parents, 'table')} to create" if parents else ""
    config = f", {plural(configs, 'config')} to update" if configs else ""
    adopt = f", {counts['adopt']} to adopt" if counts["adopt"] else ""
    adopt += f", {counts['convert']} to convert" if counts["convert"] else ""
    adopt += f", {counts['conform']} to conform" if counts["conform"] else ""
    return f"Plan: {counts['create']} to create, {counts['detach']} to detach, {counts['drop']} to drop{adopt}{tables}{config}."


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
    if errors:
        # Never "No changes." above a failure: the exit code is 1, and the first word should say why.
        others = "" if errors == len(plan.tables) else (" " + summary_line(plan) if plan.changes else " No changes to the others.")
        lines.append(f"Errors in {plural(errors, 'table')}, not planned (see x error above).{others}")
    else:
        lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def _table_lines(t: TablePlan) -> list[str]:
    lines = [f"{t.table}  ({t.source})"]
    for error in t.errors:
        lines.append(f"  x error    {error}")
    if t.create_parent:
        lines.append(f"  + create table {t.table}")
    if t.id_mark:
        lines.append(f"  = ids      {t.id_mark}")
    for a in t.actions:
        if a.kind is ActionKind.CREATE:
            rows = f"  (moves {a.default_rows:,} rows from the default partition)" if a.default_rows else ""
        elif a.kind is ActionKind.ADOPT:
            rows = "  (recorded in partition_log; no DDL)"
        elif a.kind is ActionKind.CONVERT:
            finishing = t.conversion is not None and t.conversion.cutover is None
            lines.append(f"  ~ convert  {t.table}: finish the conversion an earlier run began" if finishing else
                         f"  ~ convert  {t.table} into a partitioned table, without copying a row ({_rows(a)})")
            lines.extend(_steps(t))
            continue
        elif a.kind is ActionKind.CONFORM:
            lines.append(f"  ~ conform  {a.partition}  {a.changed}")
            continue
        else:
            rows = f"  ({'; '.join([_rows(a)] + [c.text() for c in a.cascade])})"
        lines.append(f"  {_SIGN[a.kind]} {a.kind.value:<8} {a.partition}  {_range(a.bounds, t)}  {a.reason.value}{rows}")
    if t.busy:
        lines.append("  ! busy     locked by another session: planned with what is known (see PM208 below)")
    if t.config is not None:
        settings = _settings(t.config)
        lines.append(f"  ~ config   partition_config: {settings}")
    if t.analyze:
        lines.append(f"  ~ analyze  ANALYZE {t.table} ({t.analyze})")
    if t.refused and t.changes:
        lines.append(f"  ! refused  apply will refuse this table: {t.refused}")
    for n in t.kept:
        lines.append(f"  ~ kept     {n.partition}  {_range(n.bounds, t)}  {n.code} {n.why}")
    for n in t.unmanaged:
        lines.append(f"  ! unmanaged {n.partition}  {_range(n.bounds, t)}  {n.code} {n.why}")
    for n in t.warnings:
        lines.append(f"  ! warning  {n.partition}  {n.code} {n.why}")
    if not (t.errors or t.changes or t.kept or t.unmanaged or t.warnings):
        lines.append("  in shape")
    return lines


def _steps(t: TablePlan) -> list[str]:
    """A conversion's steps, each with what it locks and how long it may wait."""
    steps = t.conversion.steps if t.conversion else ()
    return [f"      {n}/{len(steps)} {s.kind.value:<11} {s.what}\n            locks: {s.lock}" for n, s in enumerate(steps, 1)]


def _settings(config) -> str:
    """partition_config's row as key=value; a setting that does not apply (no month count for a daily table)
    is left out rather than shown as None."""
    return ", ".join(f"{k}={v}" for k, v in config.to_dict().items() if v is not None)


def _range(b: Bounds, t: Optional[TablePlan] = None) -> str:
    return shown(b, t.key_type, t.key_encoding) if t is not None else shown(b)


def _rows(a: Action) -> str:
    """The row figure of an action: the planner's estimate where statistics exist, else the exact count
    observe took (up to a cap), else why there is none."""
    if a.reason is Reason.INTERVAL_CHANGE and a.rows_estimate == 0:
        return "empty: checked with EXISTS"
    if a.rows_estimate is not None:
        return f"~{a.rows_estimate:,} rows"
    counted = a.rows_counted
    if counted is None:
        return "rows not counted"  # a plan made without a database to count in
    if counted.rows is None:
        return f"rows not counted: {counted.why_not}"
    if counted.capped:
        return f"≥ {counted.rows:,} rows"
    if counted.rows == 0:
        return "0 rows (empty)"
    return f"{counted.rows:,} row{'s' if counted.rows != 1 else ''}"


def as_json(plan: Plan) -> str:
    return json.dumps(plan.to_dict(), indent=2, sort_keys=False) + "\n"


MARKER = "<!-- partman-plan:{env} -->"


def markdown(plan: Plan, *, timestamps: bool = False) -> str:
    """For a pull-request comment: summary first, what needs a reviewer's eye in a table, everything else
    folded. A hidden marker lets CI update one comment in place; the body holds no timestamp unless asked,
    so an unchanged plan yields an identical comment."""
    lines = [MARKER.format(env=plan.env), f"### partman plan: `{plan.env}`", ""]
    failed = sum(1 for t in plan.tables if t.errors)
    if plan.changes:
        lines.append(f"**{summary_line(plan).rstrip('.')} ({plan.env})**")
    elif failed:
        lines.append(f"**Errors in {plural(failed, 'table')} ({plan.env}); nothing else to change.**")
    else:
        lines.append(f"**No changes ({plan.env}).**")
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
        for t in plan.tables for a in t.actions if a.kind in REVIEWED
    ] + [("kept", t.table, n.partition, n.bounds, f"{n.code} {n.why}", "") for t in plan.tables for n in t.kept]
    if attention:
        lines += ["", "| | partition | range | why | rows |", "|---|---|---|---|---|"]
        for kind, _, partition, bounds, why, rows in attention:
            lines.append(f"| {kind} | `{partition}` | {_md_range(bounds)} | {_md(why)} | {rows} |")
    notes = [(t.table, n) for t in plan.tables for n in t.unmanaged + t.warnings]
    if notes:
        lines += ["", *[f"- :warning: `{n.partition}` {n.code} {_md(n.why)}" for _, n in notes]]
    marks = [t for t in plan.tables if t.id_mark]
    if marks:  # what an id table's plan rests on (widths.py), as the text plan shows it
        lines += ["", *[f"- `{t.table}` ids {_md(t.id_mark)}" for t in marks]]
    count = sum(len(t.actions) + t.create_parent + (t.config is not None) for t in plan.tables)
    if count:
        lines += ["", f"<details><summary>All {count} changes</summary>", "", "```diff"]
        for t in plan.tables:
            if t.create_parent:
                lines.append(f"+ create table {t.table}")
            for a in t.actions:
                if a.kind is ActionKind.CONFORM:
                    lines.append(f"~ conform {a.partition}  {a.changed}")
                    continue
                lines.append(f"{_SIGN[a.kind]} {a.kind.value:<7} {a.partition}  {_range(a.bounds)}  {a.reason.value}")
                if a.kind is ActionKind.CONVERT:
                    lines.extend(_steps(t))
            if t.config is not None:
                lines.append(f"! config  {t.table}  " + _settings(t.config))
        lines += ["```", "", "</details>"]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_range(b: Bounds) -> str:
    return f"{iso(b.start) or 'MINVALUE'} → {iso(b.end) or 'MAXVALUE'}"


def render(plan: Plan, fmt: str, *, timestamps: bool = False) -> str:
    """The plan in the format --format names."""
    if fmt == "json":
        return as_json(plan)
    if fmt == "markdown":
        return markdown(plan, timestamps=timestamps)
    return text(plan)


def outcomes_json(plan: Plan, outcomes: list, code: int, withheld: int = 0) -> str:
    """apply --format json: the plan that was applied and how each table ended, for a deploy pipeline."""
    body = {
        "format_version": 1,
        "env": plan.env,
        "exit_code": int(code),
        "withheld": {"actions": withheld, "code": "PM305"} if withheld else None,
        "tables": [
            {"table": str(o.table), "status": o.status.value, "message": o.message, "code": o.code or None,
             "actions": [a.to_dict() for a in o.actions]}
            for o in outcomes
        ],
        "plan": plan.to_dict(),
    }
    return json.dumps(body, indent=2) + "\n"


def drift(report, fmt: str) -> str:
    """A drift report as text, json or markdown."""
    return {"json": drift_json, "markdown": drift_markdown}.get(fmt, drift_text)(report)


def drift_text(r) -> str:
    from .drift import days as drift_days  # here: a plan never loads drift.py

    lines = [f"partman drift for env {r.env} at {iso(r.now)}", ""]
    for t in r.tables:
        runway = ("forever" if t.runway_ids == float("inf") else f"{t.runway_ids:,} ids" if t.runway_ids is not None
                  else "n/a" if t.runway_seconds is None else drift_days(t.runway_seconds))
        lines.append(f"{t.table}  ({'in sync' if t.in_sync else 'DRIFT'}; runway {runway})")
        for f in t.findings:
            where = f" {f.partition}" if f.partition else ""
            lines.append(f"  ! {f.kind.value}{where}: {f.detail}")
    drifted = sum(not t.in_sync for t in r.tables)
    lines += ["", "No drift." if not drifted else f"Drift in {drifted} of {plural(len(r.tables), 'table')}."]
    return "\n".join(lines) + "\n"


def drift_markdown(r) -> str:
    lines = [f"<!-- partman-drift:{r.env} -->", f"### partman drift: `{r.env}`", ""]
    lines.append("**No drift.**" if r.in_sync else f"**Drift in {plural(sum(not t.in_sync for t in r.tables), 'table')}.**")
    rows = [(t, f) for t in r.tables for f in t.findings]
    if rows:
        lines += ["", "| table | kind | partition | detail |", "|---|---|---|---|"]
        lines += [f"| `{t.table}` | {f.kind.value} | {f'`{f.partition}`' if f.partition else ''} | {f.detail} |" for t, f in rows]
    return "\n".join(lines) + "\n"


def drift_prometheus(r, *, run_at) -> str:
    """The text exposition format for node_exporter's textfile collector: one series per table and
    environment, zeros for tables in sync."""
    from .drift import Kind as DriftKind

    out: list[str] = []

    def family(name: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            rendered = ",".join(f'{k}="{_metric_escape(v)}"' for k, v in sorted(labels.items()))
            out.append(f"{name}{{{rendered}}} {_metric_number(value)}")

    def each(value) -> list[tuple[dict[str, str], float]]:
        return [({"env": t.env, "table": t.table}, value(t)) for t in r.tables]

    timed = [t for t in r.tables if t.min_runway_ids is None]
    family("partman_runway_seconds", "Seconds from now to the end of the partitions that cover now without a gap.",
           [({"env": t.env, "table": t.table}, t.runway_seconds if t.runway_seconds is not None else 0) for t in timed])
    counted = [t for t in r.tables if t.min_runway_ids is not None]
    if counted:  # id tables (width): their runway is in ids, from the table's mark
        family("partman_runway_ids", "Ids from the table's mark to the end of the partitions that cover it without a gap.",
               [({"env": t.env, "table": t.table}, t.runway_ids) for t in counted if t.runway_ids is not None])
    family("partman_missing_partitions", "Partitions missing inside the premake horizon.", each(lambda t: t.missing))
    family("partman_unmanaged_partitions", "Partitions not recorded in partition_log.", each(lambda t: t.unmanaged))
    family("partman_default_rows", "Rows in the default partition.", each(lambda t: t.default_rows))
    family(
        "partman_drift",
        "1 when the table shows this kind of drift.",
        [({"env": t.env, "table": t.table, "kind": k.value}, float(any(f.kind is k for f in t.findings)))
         for t in r.tables for k in DriftKind],
    )
    family("partman_last_run_timestamp_seconds", "When partman drift last ran.",
           [({"env": r.env}, run_at.timestamp())])
    return "\n".join(out) + "\n"


def _metric_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _metric_number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if value != int(value) else str(int(value))


def drift_json(r) -> str:
    return json.dumps(r.to_dict(), indent=2) + "\n"
