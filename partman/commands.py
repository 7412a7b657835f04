"""What each command does once its options are parsed: the bodies behind cli.py's typer wiring. Each takes a
session's Options and the command's own choices, prints through the console, and returns the exit code."""

from __future__ import annotations

import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, Sequence

from .console import OUT, cut, emit, plural, progress
from .errors import Exit, PartmanError, SpecError, UsageError
from .spec import DEFAULT_ENV
from .session import Options, Session, env_of, load_project, mentioned_envs, refuse_skew


def validate(paths: Sequence[Path], env: Optional[str], project_file: Optional[Path]) -> int:
    from .spec import load_specs

    project = load_project(Options(paths=paths, project_file=project_file))
    envs = [env_of(project, env)] if env else (project.env_names or [DEFAULT_ENV, *mentioned_envs(paths)])
    count = 0
    for name in envs:
        count = len(load_specs(paths, name, project.env_names))
    OUT.info(f"{plural(count, 'spec')} valid for {', '.join(envs)}.")
    return Exit.OK


def plan(options: Options, fmt: str, out: Optional[Path], detailed_exitcode: bool, timestamps: bool) -> int:
    from . import render

    session = Session.open(options)
    session.on_standby("this plan was read from it (replicated state); apply runs on the primary")
    the_plan = session.plan()
    emit(render.render(the_plan, fmt, timestamps=timestamps), color=fmt == "text")
    if out is not None:
        from . import planfile

        planfile.write(planfile.new(the_plan, session.specs, session.target()), out, session.project.path)
        OUT.warn(f"Saved the plan to {out}; apply exactly it with: partman apply {out}")
    table_errors(the_plan)
    if the_plan.errors:
        return Exit.ERROR
    return Exit.CHANGES if detailed_exitcode and the_plan.changes else Exit.OK


def apply(options: Options, auto_approve: bool, move_default_rows: bool, allow_clock_skew: bool, fmt: str) -> int:
    """Plan, confirm and apply. A protected environment withholds detaches and drops: the prompt shows what
    will run, and the withheld actions are named with the way to apply them (a reviewed plan)."""
    from . import render

    if fmt == "json" and not auto_approve:
        raise UsageError("apply --format json needs --auto-approve: no plan is shown to confirm (review it with plan)")
    session = Session.open(options)
    if session.on_standby(STANDBY_APPLY):
        return Exit.OK
    if session.pinned and not allow_clock_skew:
        refuse_skew(session.specs, session.now, session.database_now)
    the_plan = session.plan(digests=True)
    table_errors(the_plan)
    withheld = the_plan.destructive if session.protected else 0
    if withheld:
        the_plan = the_plan.without_destructive()
    if fmt == "text" and not OUT.quiet:
        emit(render.text(the_plan), color=True)
    if withheld:
        spec_args = " ".join(map(str, options.paths))
        OUT.warn(f"error: {session.env} is protected: {plural(withheld, 'detach/drop/convert action')} withheld (and the creates"
                 f" that need them); apply them from a reviewed plan: partman plan {spec_args} --env {session.env}"
                 " --out plan.json, then partman apply plan.json [PM305]")
    failed = Exit.ERROR if the_plan.errors or withheld else Exit.OK
    if not the_plan.changes:
        return _finish(fmt, the_plan, [], failed, withheld)
    target = session.target().describe()
    if not auto_approve:
        _confirm(f"Apply these changes to {target}?")
    OUT.debug(f"applying to {target}")
    outcomes = _run(session, the_plan, str(uuid.uuid4()), exact=False, move_default_rows=move_default_rows, fmt=fmt)
    return _finish(fmt, the_plan, outcomes, failed, withheld)


# What apply says on a standby: the same cron job runs on every node, and only the primary's run changes anything.
STANDBY_APPLY = "nothing to apply here, nothing changed; the primary's partman keeps the tables in shape (exit 0)"


def apply_saved(path: Path, options: Options, move_default_rows: bool, allow_clock_skew: bool, fmt: str) -> int:
    """Apply exactly what was reviewed: same target, same specs, same state, or nothing at all. The project is
    the one the plan file records (relative to it), so this works from any directory."""
    from dataclasses import replace

    from . import planfile, render

    if not path.is_file():
        raise SpecError(f"{path}: no such plan file (made with partman plan --out)")
    saved = planfile.read(path)
    if options.now or options.tables:
        given = "--now" if options.now else "--table"
        raise UsageError(f"{given} cannot be given with a saved plan ({path}): it was planned with its own clock and tables")
    if options.env is not None and options.env != saved.plan.env:
        raise SpecError(f"{path} was made for env {saved.plan.env}, not {options.env}")
    options = replace(options, paths=[path], project_file=options.project_file or planfile.locate_project(path, saved))
    project = load_project(options)
    session = Session.connect(options, project, saved.plan.env, list(saved.specs))
    session.standby = session.conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    if session.on_standby(STANDBY_APPLY):
        return Exit.OK
    if saved.plan.pinned and not allow_clock_skew:
        refuse_skew(list(saved.specs), saved.plan.now, session.conn.execute("SELECT now()").fetchone()[0])
    here = session.target()
    if (here.database, here.host, here.port) != (saved.target.database, saved.target.host, saved.target.port):
        raise SpecError(f"{path} was made for {saved.target.describe()}; this connection is to {here.describe()};"
                        " nothing changed")
    if fmt == "text" and not OUT.quiet:
        emit(render.text(saved.plan), color=True)
    if not saved.plan.changes:
        return _finish(fmt, saved.plan, [], Exit.ERROR if saved.plan.errors else Exit.OK)
    OUT.warn(f"Applying the saved plan {saved.plan_id[:8]} to {here.describe()}.")
    outcomes = _run(session, saved.plan, saved.plan_id, exact=True, move_default_rows=move_default_rows, fmt=fmt)
    return _finish(fmt, saved.plan, outcomes, Exit.OK)


def _confirm(question: str) -> None:
    import typer

    if not sys.stdin.isatty():
        raise PartmanError("no terminal to confirm on: review the plan above and pass --auto-approve to apply it")
    answer = typer.prompt(f"{question} Only 'yes' is accepted", default="", show_default=False, err=True)
    if answer.strip() != "yes":
        raise PartmanError("apply cancelled; nothing changed")


def _run(session: Session, the_plan: Any, plan_id: str, *, exact: bool, move_default_rows: bool, fmt: str) -> list:
    from .apply import apply_plan
    from .audit import Context

    ctx = Context(schema=session.state_schema, env=the_plan.env, plan_id=plan_id, now=the_plan.now)
    total = sum(len(t.actions) for t in the_plan.tables)
    with progress(total) as advance:
        def on_table(outcome: Any) -> None:
            if fmt == "text":  # json says it all at the end, on stdout alone
                report(outcome)

        return apply_plan(session.conn, the_plan, session.specs, ctx=ctx, ladder=session.ladder, exact=exact,
                          protected=session.protected and not exact, move_default_rows=move_default_rows,
                          on_table=on_table, on_done=lambda table, steps: advance(str(table), steps),
                          connect=session.another, parallelism=session.options.parallelism)


def _finish(fmt: str, the_plan: Any, outcomes: list, floor: int, withheld: int = 0) -> int:
    """The summary (text) or the outcome of every table (json), and the exit code of the run."""
    from .apply import exit_code

    code = exit_code(outcomes) or floor
    if fmt == "json":
        from . import render

        emit(render.outcomes_json(the_plan, outcomes, code, withheld), color=False)
    elif outcomes:
        OUT.info(summary(outcomes))
    return code


def report(outcome: Any) -> None:
    """One line per table as it finishes: what it did, or why not."""
    from .apply import Status

    if outcome.status is Status.APPLIED:
        said = f"; {outcome.message}" if outcome.message else ""
        OUT.info(f"{outcome.table}: applied {plural(len(outcome.actions), 'action')}{said}")
    elif outcome.status is Status.UNCHANGED:
        if outcome.message:
            OUT.info(f"{outcome.table}: {outcome.message}")
    else:
        OUT.error(f"{outcome.message} [{outcome.code}]")


def summary(outcomes: list) -> str:
    """What was done, counted in every table: a table that failed after some actions counts them too."""
    from .apply import Status

    done = {kind: sum(a.kind.value == kind for o in outcomes for a in o.actions)
            for kind in ("create", "detach", "drop", "reattach", "adopt", "convert", "conform")}
    changed = sum(1 for o in outcomes if o.actions)
    failed = sum(1 for o in outcomes if o.status not in (Status.APPLIED, Status.UNCHANGED))
    counts = f"{done['create']} created, {done['detach']} detached, {done['drop']} dropped"
    if done["reattach"]:
        counts += f", {done['reattach']} re-attached"
    if done["adopt"]:
        counts += f", {done['adopt']} adopted"
    if done["convert"]:
        counts += f", {done['convert']} converted"
    if done["conform"]:
        counts += f", {done['conform']} conformed"
    where = f"in {plural(changed, 'table')}"
    if failed:
        return f"Apply incomplete: {counts} {where}; {plural(failed, 'table')} failed (see above)."
    return f"Apply complete: {counts} {where}."


def table_errors(the_plan: Any) -> None:
    """Tables that could not be planned, on stderr too: the exit code says 1, and stderr says why."""
    for t in the_plan.tables:
        for error in t.errors:
            OUT.error(cut(error, 400))
        if t.refused and t.changes:
            OUT.warn(f"warning: {cut(t.refused, 400)}; apply will refuse this table")


def drift(options: Options, fmt: str, prometheus_file: Optional[Path], min_runway: Optional[str]) -> int:
    from . import catalog, drift as drifts, render
    from .intervals import Span

    try:
        floor = Span.parse(min_runway) if min_runway else None
    except ValueError as exc:
        raise UsageError(f"--min-runway: {exc}") from None
    session = Session.open(options)
    if session.on_standby("nothing to report here; the primary's drift reports (exit 0)"):
        return Exit.OK
    snap, the_plan = session.observe()
    rows, locked = catalog.default_row_counts(session.conn, snap.tables.values(), session.ladder)
    found = drifts.report(session.specs, snap, the_plan, now=session.now, default_rows=rows, min_runway=floor,
                          locked_defaults=frozenset(locked))
    metrics = render.drift_prometheus(found, run_at=datetime.now(timezone.utc))
    emit(metrics if fmt == "prometheus" else render.drift(found, fmt), color=False)
    if prometheus_file is not None:
        from .files import write_atomically

        write_atomically(prometheus_file, metrics, mode=0o644)  # the textfile collector runs as another user
    table_errors(the_plan)
    return Exit.OK if found.in_sync else Exit.CHANGES


def history(options: Options, fmt: str, since: Optional[str], actions: Sequence[str], limit: Optional[int]) -> int:
    from . import history as histories
    from .model import TableRef

    histories.check_actions(actions)  # a bad --action or --since is refused before any connection
    if since:
        histories.parse_since(since, datetime.now(timezone.utc))
    project = load_project(options)
    session = Session.connect(options, project, env_of(project, options.env), [])
    now = session.conn.execute("SELECT now()").fetchone()[0]
    filters = histories.Filters(tuple(TableRef.parse(t) for t in options.tables),
                                histories.parse_since(since, now) if since else None, tuple(actions), limit)
    entries = histories.read(session.conn, session.state_schema, tables=filters.tables, since=filters.since,
                             actions=filters.actions, limit=limit, lock_timeout_ms=session.ladder.wait_ms)
    emit(histories.as_json(entries) if fmt == "json" else histories.text(entries, filters), color=False)
    return Exit.OK


def sql_render(settings: Sequence[str]) -> int:
    from .migration import render as render_migration

    values = {}
    for item in settings:
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"--set {cut(item)!r} is not placeholder=value")
        values[key.strip()] = value.strip()
    sys.stdout.write(render_migration(values))
    return Exit.OK


def schema() -> int:
    from importlib import resources

    sys.stdout.write(resources.files("partman").joinpath("schema/partman.schema.json").read_text())
    return Exit.OK


def _dev_root(project_file: Optional[Path]) -> Path:
    """Where the dev database lives: beside the project file (found from here), else here."""
    from . import project as projects

    return projects.load_project(project_file or projects.find([])).root


def dev_status(project_file: Optional[Path]) -> int:
    from . import embedded

    root = _dev_root(project_file)
    state = embedded.status(root)
    where = embedded.shown(state.data)
    if state.running:
        OUT.info(f"running: {state.url} (PostgreSQL {state.version}, data in {where}, pid {state.pid})")
        return Exit.OK
    if state.exists:
        OUT.info(f"stopped (data in {where}); start it with: partman dev url")
    else:
        OUT.info(f"not created (no {where} here); partman plan/apply or partman dev url starts it")
    return Exit.ERROR


def dev_url(project_file: Optional[Path]) -> int:
    from . import embedded

    sys.stdout.write(embedded.url(_dev_root(project_file), on_start=OUT.warn) + "\n")
    return Exit.OK


def dev_psql(project_file: Optional[Path], extra: Sequence[str]) -> int:
    import os

    from . import embedded

    argv = embedded.psql_argv(_dev_root(project_file), list(extra), on_start=OUT.warn)
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return Exit.ERROR  # execvp does not return


def dev_stop(project_file: Optional[Path]) -> int:
    from . import embedded

    root = _dev_root(project_file)
    if embedded.stop(root):
        OUT.info(f"stopped the dev database ({embedded.shown(embedded.status(root).data)})")
    else:
        OUT.info("the dev database is not running")
    return Exit.OK


def dev_reset(project_file: Optional[Path], yes: bool) -> int:
    import typer

    from . import embedded

    root = _dev_root(project_file)
    where = embedded.shown(embedded.status(root).data)
    if not yes:
        if not sys.stdin.isatty():
            raise PartmanError("no terminal to confirm on: pass --yes to delete the dev database")
        answer = typer.prompt(f"Delete the dev database under {where} and all its data? Only 'yes' is accepted",
                              default="", show_default=False, err=True)
        if answer.strip() != "yes":
            raise PartmanError("reset cancelled; nothing changed")
    if embedded.reset(root):
        OUT.info(f"deleted the dev database ({where})")
    else:
        OUT.info(f"there is no dev database to delete ({where})")
    return Exit.OK


def import_pg_partman(options: Options, schema: str, out: Path, force: bool) -> int:
    """One spec per pg_partman set partman can express; a warning line for each other one. A file that exists
    is refused (unless force) before anything is written."""
    from . import pgpartman

    project = load_project(options)
    session = Session.connect(options, project, env_of(project, options.env), [])
    source = pgpartman.read(session.conn, schema, lock_timeout_ms=session.ladder.wait_ms)
    outcomes = pgpartman.convert(source, str(out))
    if not force:
        pgpartman.refuse_overwrite(outcomes, out)
    for skipped in (o for o in outcomes if isinstance(o, pgpartman.Skipped)):
        OUT.warn(f"warning: {skipped.table}: not imported: {skipped.reason}")
    for imported in (o for o in outcomes if isinstance(o, pgpartman.Imported)):
        for note in imported.notes:
            OUT.warn(f"warning: {imported.table}: imported, but {note}")
    written = pgpartman.write(outcomes, out)
    for path in written:
        OUT.info(f"wrote {path}")
    if not source.sets:
        OUT.warn(f"{schema}.part_config holds no partition sets; nothing written")
    elif written and not OUT.quiet:
        OUT.warn(f"Imported {len(written)} of {plural(len(source.sets), 'pg_partman set')}; next: partman plan {out}"
                 " (expect ~ adopt lines), then partman apply, then remove the sets from part_config")
    return Exit.OK


def exclusions(options: Options, fmt: str) -> int:
    from . import exclusions as excl

    session = Session.open(options)
    tables = [s.table for s in session.specs]
    managed = excl.read(session.conn, session.state_schema, tables, lock_timeout_ms=session.ladder.wait_ms)
    converting = frozenset(s.table for s in session.specs if s.convert)
    ids = frozenset(s.table for s in session.specs if s.width is not None)
    emit(excl.render(excl.build(tables, managed, converting, ids), fmt, session.env), color=False)
    return Exit.OK
