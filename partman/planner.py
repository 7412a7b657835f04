"""The planner: a pure function of (specs, snapshot, now) returning a Plan. No I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from operator import attrgetter
from itertools import islice
from typing import Iterable, Optional

from .model import Bounds, KeyType, KeyValue, TableRef, iso
from .naming import Taken, partition_name
from .plan import BUSY, ROW_FIGURED, Action, ActionKind, Cascade, Observation, Note, Plan, Reason, RowCount, TablePlan
from .intervals import Interval, Span
from .snapshot import ConfigRow, Partition, Snapshot, Span3, TableState
from . import statistics
from .spec import TableSpec
from .encoded import encoding_problem
from .timeline import Grid, KeySpace, cutoff, space_for, window
from .widths import DEFAULT_PREMAKE, IdSpace, Reach, WidthGrid

KEPT_WITH_ROWS = "PM101"
UNMANAGED = "PM201"
UNMANAGED_EXPIRED = "PM202"
DETACHED_MISSING = "PM203"
DEFAULT_ROWS = "PM204"
UNREADABLE_BOUND = "PM205"
INTERRUPTED = "PM207"
# BUSY = "PM208" (plan.py): locked by another session for the whole ladder; planned conservatively
ZONE_IGNORED = "PM209"
DETACHED_OVERLAPPED = "PM210"
ADOPTED_EXPIRED = "PM211"
DEFAULT_NOT_ADOPTED = "PM212"
GAP = "PM213"
HISTORY_RETAINED = "PM216"
TYPE_ENDS = "PM217"
IDS_JUMPED = "PM218"
PAST_THE_SEQUENCE = "PM219"
SHARED_SEQUENCE = "PM220"
MAX_PARTITIONS_PER_PLAN = 5000


def plan(specs: Iterable[TableSpec], snapshot: Snapshot, *, now: datetime, env: str) -> Plan:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    taken = Taken(snapshot.taken_names)
    tables = tuple(
        plan_table(spec, snapshot.tables.get(spec.table, TableState(spec.table)), snapshot.has_rows, now, taken,
                   busy=snapshot.busy, survey=snapshot.surveys.get(spec.table),
                   unproven=snapshot.unproven.get(spec.table, ()))
        for spec in sorted(specs, key=lambda s: s.table)
    )
    return Plan(env=env, now=now, tables=tables)


def presence_needed(spec: TableSpec, state: TableState, now: datetime) -> list[Partition]:
    """The partitions whose row presence (EXISTS) the plan depends on: managed future partitions that do
    not fit the grid (an interval change may drop them) and the default partition."""
    laid = layout(spec, state)
    if laid is None:
        return []
    grid, _ = laid
    now_key = grid.space.key_of(now)
    managed, log_range = state.managed, grid.space.log_range
    # Replaceable: a future partition partman made that does not fit the grid (an interval change may replace it).
    needed = [p for p in state.partitions if p.bounds.start is not None and p.bounds.start > now_key
              and log_range(p.bounds) in managed and not grid.is_slot(p.bounds)]
    if state.default is not None:
        needed.append(state.default)
    return needed


def observed_state(spec: TableSpec, state: TableState, has_rows: dict[int, bool], now: datetime, survey=None) -> dict:
    """The state in full, with the row presence the plan relied on, for a saved plan's staleness check; for a
    table to convert, what hangs on it too (survey.py)."""
    presence = {str(p.ref): has_rows.get(p.oid) for p in presence_needed(spec, state, now)}
    observed = {**state.to_dict(estimates=False), "presence": dict(sorted(presence.items()))}
    laid = layout(spec, state) if spec.width is not None else None
    if laid is not None:  # an id table's plan rests on its mark's slot: ids moving within it change nothing
        observed["mark_slot"] = laid[0].floor(laid[0].mark)
    if spec.convert and survey is not None:
        observed["survey"] = survey.fingerprint()
    return observed


def layout(spec: TableSpec, state: TableState) -> Optional[tuple[Grid, Optional[KeyType]]]:
    key_type = state.key_type if state.oid is not None else spec.declared_key_type
    if key_type is None:
        return None
    if spec.width is not None:
        mark, _ = id_mark(spec, state)
        if mark is None or key_type.is_time or key_type is KeyType.UUID:
            return None
        step = state.id_mark.increment if state.id_mark is not None else 1
        return WidthGrid(spec.width, spec.origin, IdSpace(key_type, spec.timezone, mark), step), key_type
    if encoding_problem(spec.key_encoding, key_type):
        return None  # an integer key laid out by an interval without an encoding: _check_parent says why
    return Grid(spec.interval, space_for(key_type, spec.timezone, spec.key_encoding)), key_type


def id_mark(spec: TableSpec, state: TableState) -> tuple[Optional[int], Optional[str]]:
    """How far an id table's keys reach (widths.IdMark), or why that cannot be told. A table still to create, or one
    that is empty and has no sequence, starts at the origin."""
    mark = state.id_mark
    if state.oid is None or mark is None:
        return spec.origin, _new_table_problem(spec) if state.oid is None else None
    if mark.increment < 0:
        return None, (f"{spec.table}: sequence {mark.sequence} counts down (INCREMENT {mark.increment}); partman makes"
                      " id partitions ahead of a sequence that counts up")
    if mark.value is not None:
        return mark.value, None
    if mark.largest_known and not mark.sequence_locked:
        return spec.origin, None  # empty, and no sequence to ask (or none the role may read)
    key = spec.partition_key
    if mark.sequence is not None and mark.sequence_locked:
        why = f"sequence {mark.sequence} stayed locked by another session for the whole ladder (run again later)"
    elif mark.sequence is not None and not mark.sequence_readable and not mark.indexed:
        why = (f"the role may not read sequence {mark.sequence} (GRANT SELECT ON SEQUENCE {mark.sequence} TO it),"
               f" and no btree index leads with {key} to read the largest key instead")
    elif mark.indexed:
        why = "its largest key could not be read (a partition stayed locked by another session, or the role may not read it)"
    else:
        why = (f"{key} has no sequence (identity, or a default that is nextval() of one) and no btree index that leads"
               f" with it; give it one (CREATE INDEX ON {spec.table} ({key}))")
    return None, f"{spec.table}: cannot tell how far its ids reach: {why}"


def _new_table_problem(spec: TableSpec) -> Optional[str]:
    """A table partman is to create must be one whose mark it can read the next time: its key an identity, or
    the first column of its primary key."""
    key = next((c for c in spec.columns if c.name == spec.partition_key), None)
    if key is None or key.identity or (key.default or "").startswith("nextval(") or spec.primary_key[:1] == (key.name,):
        return None
    return (f"{spec.table}: a new id table needs its key {spec.partition_key} to be an identity (identity: always) or"
            f" the first column of its primary key, for partman to read how far ids reach ({spec.source})")


def _log_key(p: Partition, space: KeySpace) -> tuple[Optional[datetime], Optional[datetime]]:
    """The partition's range as partition_log holds it; None for MINVALUE or MAXVALUE."""
    return space.log_range(p.bounds)


@dataclass
class _Table:
    """Working state while planning one table."""

    spec: TableSpec
    state: TableState
    grid: Grid
    actions: list
    kept: list
    unmanaged: list
    warnings: list
    cutoff: Optional[KeyValue] = None
    errors: list = field(default_factory=list)


def plan_table(
    spec: TableSpec, state: TableState, has_rows: dict[int, bool], now: datetime, taken: Taken,
    *, busy: frozenset[int] = frozenset(), survey=None, unproven: tuple = (),
) -> TablePlan:
    """One table's plan. busy: partitions whose row presence is unknown (locked by another session); survey: what
    hangs on a plain table the spec converts (survey.py)."""
    try:
        if spec.convert and state.oid is not None and state.strategy is None:
            return _plan_conversion(spec, state, survey, now, taken)
        planned = _plan_table(spec, state, has_rows, now, taken, busy, survey)
        return _finish_conversion(planned, unproven) if unproven and not planned.errors else planned
    except (OverflowError, ValueError) as exc:
        if "range" not in str(exc) and not isinstance(exc, OverflowError):
            raise
        return TablePlan(
            table=spec.table, source=spec.source, key_type=None, spec_fingerprint=spec.fingerprint(),
            errors=(f"{spec.table}: the planning window reaches past the calendar (years 1 to 9999);"
                    " check premake, retention and --now",),
        )


def _plan_table(
    spec: TableSpec, state: TableState, has_rows: dict[int, bool], now: datetime, taken: Taken,
    busy: frozenset[int], survey=None,
) -> TablePlan:
    base = dict(
        table=spec.table,
        source=spec.source,
        spec_fingerprint=spec.fingerprint(),
        observation=Observation(partial(observed_state, spec, state, has_rows, now)),
        observed_digest=state.digest,
    )
    errors = _check_parent(spec, state, survey)
    laid = None if errors else layout(spec, state)
    if laid is None:
        return TablePlan(key_type=None, errors=tuple(errors), **base)
    grid, key_type = laid
    t = _Table(spec, state, grid, [], [], [], [], cutoff(grid, now, spec.retention))
    if isinstance(grid, WidthGrid) and t.cutoff is not None and _jumped(grid, state, spec):
        t.cutoff = None  # retention counts back from a mark that jumped away from the rows: it would retire them all
    if spec.timezone != "UTC" and key_type in (KeyType.TIMESTAMP, KeyType.DATE):
        t.warnings.append(Note(ZONE_IGNORED, spec.table, Bounds(None, None),
                               f"timezone {spec.timezone} on a {key_type.value} key: boundaries are the key's own"
                               f" {'dates' if key_type is KeyType.DATE else 'wall-clock times'}; the zone only"
                               " decides what today is"))
    obstacles, replaceable = _existing(t, has_rows, grid.space.key_of(now), busy)
    obstacles += _retire_detached(t, now, t.cutoff)
    creates = _fill(t, now, obstacles, replaceable)
    if t.errors:
        return TablePlan(key_type=key_type, errors=tuple(t.errors), **base)
    if len(creates) > MAX_PARTITIONS_PER_PLAN:
        return TablePlan(
            key_type=key_type,
            errors=(f"{spec.table}: the plan would create more than {MAX_PARTITIONS_PER_PLAN:,} partitions;"
                    f" check {'width' if spec.width else 'interval'}, premake"
                    f"{' and history_from' if spec.history_from is not None else ''}",),
            **base,
        )
    for b in creates:
        t.actions.append(Action(ActionKind.CREATE, partition_name(spec.table, grid, b, taken), b, Reason.PREMAKE))
    _note_default(t, has_rows, busy, bool(creates))
    if isinstance(grid, WidthGrid):
        _id_notes(t)
    _conform(t)
    if any(a.kind is ActionKind.ADOPT for a in t.actions):
        _adoption_notes(t, window(grid, now, spec.premake, spec.history_from).start)
    missing = _missing(spec, state) or _shape_problem(spec, state)
    if missing:
        return TablePlan(key_type=key_type, errors=(missing,), **base)
    # An encoded key has no partition_config row: the SQL face computes time bounds, which such a column refuses.
    wanted_config = desired_config(spec) if key_type.is_time else None
    changed = state.oid is None or any(a.kind in _CHANGES_PARTITIONS for a in t.actions)
    return TablePlan(
        key_type=key_type,
        key_encoding=grid.space.encoding,
        id_mark=_mark_text(spec, state, grid),
        refused=_unprivileged(spec, state, t.actions),
        analyze=statistics.due(spec, state, changed, now),
        create_parent=state.oid is None,
        config=wanted_config if wanted_config is not None and wanted_config != state.config else None,
        actions=tuple(sorted(t.actions, key=_action_order)),
        kept=tuple(sorted(t.kept, key=_note_order)),
        unmanaged=tuple(sorted(t.unmanaged, key=_note_order)),
        warnings=tuple(sorted(t.warnings, key=_note_order)),
        **base,
    )


def _plan_conversion(spec: TableSpec, state: TableState, survey, now: datetime, taken: Taken) -> TablePlan:
    """A plain table becomes the first partition of a new parent (conversion.py): one CONVERT action, whose
    steps the plan shows; the partitions from the cutover on follow as the window reaches them."""
    from . import conversion

    base = dict(table=spec.table, source=spec.source, spec_fingerprint=spec.fingerprint(), observed_digest=state.digest,
                observation=Observation(partial(observed_state, spec, state, {}, now, survey)))
    if survey is None:
        return TablePlan(key_type=None, errors=(f"{spec.table}: not surveyed for conversion",), **base)
    converted, errors = conversion.plan(spec, survey, now, taken)
    if errors:
        return TablePlan(key_type=survey.key_type, errors=tuple(errors), **base)
    action = Action(ActionKind.CONVERT, converted.legacy, converted.bounds, Reason.CONVERT_ATTACH,
                    rows_estimate=survey.rows_estimate, oid=survey.oid)
    wanted_config = desired_config(spec) if spec.width is None and survey.key_type.is_time else None
    refused = _unprivileged(spec, state, [Action(ActionKind.CREATE, spec.table, Bounds(None, None), Reason.PREMAKE), action])
    return TablePlan(key_type=survey.key_type, actions=(action,), conversion=converted, refused=refused,
                     config=wanted_config if wanted_config is not None and wanted_config != state.config else None, **base)


def _finish_conversion(planned: TablePlan, unproven: tuple) -> TablePlan:
    """An interrupted conversion's last step (foreign keys to prove) comes first in the table's plan."""
    from . import conversion

    finish = conversion.finishing(planned.table, unproven)
    action = Action(ActionKind.CONVERT, planned.table, Bounds(None, None), Reason.CONVERT_ATTACH)
    return replace(planned, actions=(action,) + planned.actions, conversion=finish)


def _existing(t: _Table, has_rows: dict[int, bool], now_key: KeyValue, busy: frozenset[int]) -> tuple[list, list]:
    """Each attached partition: retired, noted, or kept as an obstacle the new partitions fill around; returns
    the obstacles and the empty partitions an interval change may replace."""
    space, cutoff, managed, grid = t.grid.space, t.cutoff, t.state.managed, t.grid
    obstacles: list[Bounds] = []
    replaceable: list[Partition] = []
    pending = {(e.start, e.end): e.pending for e in t.state.detached if e.pending}
    log_range, as_is, adopt = space.log_range, space.logs_as_is, t.spec.adopt
    # The steady state, a managed partition in the past that retention keeps, takes the first branch: a large
    # table's plan is mostly this loop.
    for p in t.state.partitions:
        bounds = p.bounds
        start, end = bounds.start, bounds.end
        is_managed = ((start, end) if as_is else log_range(bounds)) in managed
        expired = cutoff is not None and end is not None and end <= cutoff
        future = start is not None and start > now_key
        if is_managed and not expired and not future and not p.detach_pending:
            obstacles.append(bounds)
            continue
        log_key = (start, end) if as_is else log_range(bounds)
        if p.detach_pending:
            if _interrupted(t, p, pending.get(log_key)):
                obstacles.append(bounds)
            continue
        if not is_managed and adopt:
            _adopt(t, p, expired)
            obstacles.append(bounds)  # adopted as it is, fitting the grid or not: the grid fills around it
            continue
        if expired and is_managed:
            _retire(t, p)
        elif not is_managed:
            code, why = (
                (UNMANAGED_EXPIRED, "expired by retention but not in partition_log; left alone")
                if expired
                else (UNMANAGED, "not in partition_log; left alone")
            )
            t.unmanaged.append(Note(code, p.ref, bounds, why))
        if not expired and future and is_managed and not grid.is_slot(bounds):  # replaceable (presence_needed)
            if p.oid in busy:
                t.kept.append(Note(BUSY, p.ref, p.bounds, "locked by another session: could not check it for rows;"
                                   " kept for now (plan again later)"))
            elif has_rows.get(p.oid, True):
                t.kept.append(
                    Note(KEPT_WITH_ROWS, p.ref, p.bounds, "holds rows; kept (future-data check), the new layout fills around it")
                )
            else:
                replaceable.append(p)
                continue
        # Expired partitions stay obstacles too: their range is spoken for and must not be filled again.
        obstacles.append(p.bounds)
    for name, expr in t.state.unparsed:
        t.warnings.append(Note(UNREADABLE_BOUND, TableRef(t.spec.table.schema, name), Bounds(None, None),
                               f"bound {expr!r} not understood; left alone"))
        obstacles.append(Bounds(None, None))  # cannot tell where it lies: make no partition anywhere
    return obstacles, replaceable


def _adopt(t: _Table, p: Partition, expired: bool) -> None:
    """A partition partman did not make becomes its own: a log row, no DDL. Retention waits for the next
    apply, so that taking a table over and retiring part of it are two reviewed steps, never one."""
    t.actions.append(Action(ActionKind.ADOPT, p.ref, p.bounds, Reason.ADOPT_EXISTING, rows_estimate=p.rows_estimate,
                            oid=p.oid))
    if expired:
        t.warnings.append(Note(ADOPTED_EXPIRED, p.ref, p.bounds, "adopted by this plan and already past retention:"
                               " the next apply retires it"))


def _adoption_notes(t: _Table, window_start: KeyValue) -> None:
    """What adopting a table cannot settle and so reports: its default partition, and the ranges behind the
    window that no partition covers (the plan fills only the window)."""
    if t.state.default is not None:
        t.warnings.append(Note(DEFAULT_NOT_ADOPTED, t.state.default.ref, Bounds(None, None),
                               "the default partition: not adopted; partman never drops it"))
    ranges = sorted((p.bounds for p in t.state.partitions), key=lambda b: (b.start is not None, b.start))
    # The window's start stands for the partitions the plan makes: a gap up to it is not filled either.
    ranges.append(Bounds(window_start, window_start))
    for before, after in zip(ranges, ranges[1:]):
        if before.end is None or after.start is None or before.end >= after.start:
            continue
        gap = Bounds(before.end, min(after.start, window_start))
        if gap.start < gap.end:
            t.warnings.append(Note(GAP, t.spec.table, gap, f"no partition covers [{iso(gap.start)}, {iso(gap.end)}),"
                                   " and the plan does not fill it (behind the window)"))


def _interrupted(t: _Table, p: Partition, intent: Optional[str]) -> bool:
    """An interrupted run's concurrent detach: apply finishes it first, so the plan shows it as the action it
    was and plans around its completion. True while the partition's range stays spoken for."""
    if intent == "drop":
        t.actions.append(Action(ActionKind.DROP, p.ref, p.bounds, Reason.INTERVAL_CHANGE, oid=p.oid))
        t.warnings.append(Note(INTERRUPTED, p.ref, p.bounds, "an interrupted drop: this apply finishes it"))
        return False
    if intent == "detach":
        t.actions.append(Action(ActionKind.DETACH, p.ref, p.bounds, Reason.RETENTION, p.rows_estimate, p.oid))
        t.actions.extend(_after_detach(t, p.ref, p.bounds, p.rows_estimate, p.oid, t.cutoff))
        t.warnings.append(Note(INTERRUPTED, p.ref, p.bounds, "an interrupted detach: this apply finishes it"))
    else:
        t.warnings.append(Note(INTERRUPTED, p.ref, p.bounds, "a detach is pending (not partman's); left alone"))
    return True


def _fill(t: _Table, now: datetime, obstacles: list[Bounds], replaceable: list[Partition]) -> list[Bounds]:
    """The ranges to create: the window's gaps cut into slots (and bridges), past retention's cutoff; an empty
    partition of the old layout stays where it is a wanted slot and is dropped where it is not."""
    cutoff = t.cutoff
    covered = window(t.grid, now, t.spec.premake, t.spec.history_from)
    if t.spec.history_from is not None and cutoff is not None and covered.start < cutoff:
        since = t.spec.history_from
        t.warnings.append(Note(HISTORY_RETAINED, t.spec.table, Bounds(covered.start, cutoff),
                               f"history_from {since if isinstance(since, int) else since.isoformat()} reaches before"
                               " retention's cutoff"
                               f" ({iso(t.grid.space.instant(cutoff))}): retention wins, partitions begin at the cutoff"))
    gaps = _gaps(covered, obstacles)
    if isinstance(t.grid, WidthGrid) and cutoff is not None:  # an id window may reach 2**63 back: start at the cutoff
        gaps = [Bounds(max(g.start, t.grid.floor(cutoff)), g.end) for g in gaps if g.end > t.grid.floor(cutoff)]
    # At most one more than a plan may create: counting further only delays the error that follows.
    wanted = list(islice((piece for gap in gaps for piece in t.grid.pieces(gap) if cutoff is None or piece.end > cutoff),
                         MAX_PARTITIONS_PER_PLAN + 1))
    wanted = _within_the_type(t, wanted)
    wanted_set = set(wanted)
    kept_bounds = set()
    for p in replaceable:
        if p.bounds in wanted_set:
            kept_bounds.add(p.bounds)
        else:
            t.actions.append(Action(ActionKind.DROP, p.ref, p.bounds, Reason.INTERVAL_CHANGE, rows_estimate=0, oid=p.oid))
    return [b for b in wanted if b not in kept_bounds]


def _within_the_type(t: _Table, wanted: list[Bounds]) -> list[Bounds]:
    """The ranges whose bounds the key's type can hold: an epoch in seconds in an integer column ends in January
    2038, an integer id at 2**31 - 1. What lies beyond is not made, and the plan says where the type ends."""
    space = t.grid.space
    if isinstance(space, IdSpace):
        fitting = [b for b in wanted if space.fits(b.start) and space.fits(b.end)]
        last = next((b for b in wanted if space.fits(b.start) and not space.fits(b.end)), None)
        if last is not None:  # the slot where the type ends runs to MAXVALUE: its last ids have a partition too
            fitting.append(Bounds(last.start, None))
        beyond = len(wanted) - len(fitting)
        if beyond:
            t.warnings.append(Note(TYPE_ENDS, t.spec.table, Bounds(None, None),
                                   f"{_article(space.key_type.value)} key holds {space.first} to {space.last} only"
                                   " (partman keeps ids within what partition_log holds):"
                                   + (f" the partition from {last.start} runs to MAXVALUE, and" if last else "")
                                   + f" {beyond} partition{'s' if beyond > 1 else ''} beyond are not made"))
        if wanted and not fitting:
            t.errors.append(f"{t.spec.table}: no partition of width {t.grid.width:,} from origin {t.grid.origin} around"
                            f" its mark ({t.grid.mark}) fits {_article(space.key_type.value)} key"
                            f" ({space.first} to {space.last}); check width and origin ({t.spec.source})")
        return fitting
    codec = space.codec
    if codec is None:
        return wanted
    fitting = [b for b in wanted if all(v is None or codec.fits(v) for v in (b.start, b.end))]
    beyond = len(wanted) - len(fitting)
    if beyond:
        t.warnings.append(Note(TYPE_ENDS, t.spec.table, Bounds(None, None),
                               f"{_article(t.grid.space.key_type.value)} key in {t.grid.space.encoding} holds times from"
                               f" {iso(codec.decode(codec.first))} to {iso(codec.decode(codec.last))} only:"
                               f" {beyond} partition{'s' if beyond > 1 else ''} outside them are not made"
                               " (a bigint column holds them)"))
    return fitting


def _id_notes(t: _Table) -> None:
    """What moved an id table's mark where the plan cannot follow quietly: a jump past its partitions, a row past
    its sequence, a sequence other tables draw from too. Each is reported; none widens the window."""
    mark, grid = t.state.id_mark, t.grid
    if mark is None or t.state.oid is None:
        return
    ends = [p.bounds.end for p in t.state.partitions if p.bounds.end is not None]
    start = grid.floor(grid.mark)
    below = [e for e in ends if e <= start]
    if _jumped(grid, t.state, t.spec):
        gap = Bounds(max(below), start)
        held = " Retention is held while they have none: it would count back over them and retire every row." \
            if t.spec.retention is not None else ""
        t.warnings.append(Note(IDS_JUMPED, t.spec.table, gap,
                               f"ids jumped: the mark ({grid.mark}, {mark.source}) is {_count(start - max(below), grid.width)}"
                               f" past the end of the partitions below it ({max(below)}): partitions are made from the"
                               f" mark's slot on; [{gap.start}, {gap.end}) has none.{held}"))
    if mark.sequence_value is not None and mark.largest is not None and mark.largest >= mark.sequence_value:
        holder = next((p.ref for p in t.state.partitions if p.bounds.contains(mark.largest)), None)
        where = f"in {holder}" if holder else (f"in the default partition {t.state.default.ref}" if t.state.default
                                               else "somewhere partman cannot tell")
        t.warnings.append(Note(PAST_THE_SEQUENCE, t.spec.table, Bounds(None, None),
                               f"a row holds id {mark.largest}, at or past the next value of sequence {mark.sequence}"
                               f" ({mark.sequence_value}): partitions follow the sequence, not that row ({where})"))
    detached = {str(e.partition) for e in t.state.detached}
    sharing = [c for c in mark.sharing if c.rsplit(".", 1)[0] not in detached]
    if sharing:
        t.warnings.append(Note(SHARED_SEQUENCE, t.spec.table, Bounds(None, None),
                               f"sequence {mark.sequence} also feeds {', '.join(sharing)}: this table's ids are not"
                               " dense, and premake in ids counts theirs too"))


def _jumped(grid: WidthGrid, state: TableState, spec: TableSpec) -> bool:
    """The ids jumped past the partitions: the mark's slot lies further past the end of the partitions below it than
    premake reaches ahead (ids that merely outran premake are a slot or two), and the window (history_from) does not
    reach below the mark's slot, where its creates would close the gap. Retention is held while that lasts (PM218 says so): it would count back over empty ranges and
    retire every row."""
    start = grid.floor(grid.mark)
    # What retention detached (and keeps, or keeps for its grace) covered its range: gaps it left are no jump.
    held = [Bounds(grid.space.from_log(e.start), grid.space.from_log(e.end)) for e in state.detached]
    ranges = [p.bounds for p in state.partitions] + held
    below = [b.end for b in ranges if b.end is not None and b.end <= start]
    if not below or any(b.contains(start - 1) for b in ranges):
        return False
    reach = start if spec.history_from is None else min(start, grid.floor(spec.history_from))
    ahead = (spec.premake or Reach.parse(DEFAULT_PREMAKE)).ids(grid.width)
    return reach >= start and start - max(below) > max(ahead, grid.width)  # reach < start: the window fills below


def _count(ids: int, width: int) -> str:
    slots = -(-ids // width)
    return f"{slots:,} partition{'s' if slots != 1 else ''}"


def _mark_text(spec: TableSpec, state: TableState, grid) -> Optional[str]:
    """What an id table's plan rests on, shown above its actions: its mark and where it was read."""
    if not isinstance(grid, WidthGrid):
        return None
    if state.oid is None:
        return f"from {grid.mark} (the origin: a new table); slots of {spec.width:,} from {spec.origin}"
    mark = state.id_mark
    source = mark.source if mark.value is not None else "the table is empty: the origin"
    return f"at {grid.mark} ({source}); slots of {spec.width:,} from {spec.origin}"


def _article(word: str) -> str:
    return f"{'an' if word[0] in 'aeio' else 'a'} {word}"  # a uuid, an integer


def _note_default(t: _Table, has_rows: dict[int, bool], busy: frozenset[int], creating: bool) -> None:
    default = t.state.default
    if default is None or not creating:
        return
    if default.oid in busy:
        t.warnings.append(Note(BUSY, default.ref, Bounds(None, None), "locked by another session: its rows were"
                               " not checked; apply checks them under the table's lock"))
    elif has_rows.get(default.oid, False):
        t.warnings.append(Note(DEFAULT_ROWS, default.ref, Bounds(None, None),
                               "the default partition holds rows: a create over their range moves them only with"
                               " move_default_rows"))


def with_default_rows(plan: Plan, counts: dict[tuple[TableRef, Bounds], int],
                      busy: frozenset[TableRef] = frozenset()) -> Plan:
    """The plan with each create marked with the default partition's rows in its range (counted by the shell);
    busy: tables whose default partition another session kept locked while they were counted."""
    tables = []
    for t in plan.tables:
        actions = tuple(
            replace(a, default_rows=counts.get((t.table, a.bounds), 0)) if a.kind is ActionKind.CREATE else a
            for a in t.actions
        )
        warnings = t.warnings
        if t.table in busy:
            note = Note(BUSY, t.table, Bounds(None, None), "its default partition was locked by another session: its"
                        " rows in the new ranges were not counted; apply counts them under the table's lock")
            warnings = tuple(sorted(warnings + (note,), key=_note_order))
        tables.append(replace(t, actions=actions, warnings=warnings))
    return replace(plan, tables=tuple(tables))


def with_references(plan: Plan, refs: dict, counts: dict, locked: frozenset, *, cap: int,
                    cascading: frozenset = frozenset()) -> Plan:
    """The plan with each partition that another table's rows reference kept rather than retired (on_reference:
    block): its detach, and the drop that would follow it in the same run, become a note naming the referencing
    table and the rows (counted by the shell, at most cap + 1; keyed by table, partition and constraint). For the
    tables in cascading (on_reference: cascade) the detach stays, carrying the rows it deletes. One that could not
    be checked (the referencing table stayed locked) is kept either way. A foreign key whose referencing column has
    no index is named, since checking it reads the whole referencing table."""
    from .references import REFERENCED, UNINDEXED, reason, unindexed

    tables = []
    for t in plan.tables:
        kept, notes, warnings = set(), list(t.kept), list(t.warnings)
        deletes: dict[TableRef, list[Cascade]] = {}
        retiring = [a for a in t.actions if a.kind is ActionKind.DETACH and a.reason is Reason.RETENTION]
        for ref in refs.get(t.table, ()) if retiring else ():
            if unindexed(ref):
                warnings.append(Note(UNINDEXED, ref.table, Bounds(None, None), unindexed(ref)))
            for a in retiring:
                key = (t.table, a.partition, ref.table, ref.constraint)
                if key in locked:
                    kept.add(a.partition)
                    notes.append(Note(BUSY, a.partition, a.bounds, f"{ref.table} stayed locked: its references into"
                                      " this partition were not checked; kept for now (plan again later)"))
                elif counts.get(key) and t.table in cascading and counts[key] <= cap:
                    deletes.setdefault(a.partition, []).append(
                        Cascade(ref.table, ref.constraint, min(counts[key], cap), counts[key] > cap))
                elif counts.get(key):  # block; or a cascade past the cap, which a reviewer could not have counted
                    kept.add(a.partition)
                    notes.append(Note(REFERENCED, a.partition, a.bounds, reason(ref, min(counts[key], cap), counts[key] > cap,
                                                                              cascading=t.table in cascading)))
        if not kept and not deletes and len(warnings) == len(t.warnings):
            tables.append(t)
            continue
        actions = tuple(
            replace(a, cascade=tuple(deletes[a.partition])) if a.kind is ActionKind.DETACH and a.partition in deletes else a
            for a in t.actions
            if not (a.partition in kept and a.reason in (Reason.RETENTION, Reason.RETENTION_GRACE_ELAPSED)
                    and (a.kind is ActionKind.DETACH or a.attached is False)))
        tables.append(replace(t, actions=actions, kept=tuple(sorted(notes, key=_note_order)),
                              warnings=tuple(sorted(warnings, key=_note_order))))
    return replace(plan, tables=tuple(tables))


NOT_COUNTED_LOCKED = "locked by another session"
NOT_COUNTED_DENIED = "no SELECT privilege on it"


def with_row_counts(plan: Plan, counts: dict[int, int], locked: frozenset[int] = frozenset(),
                    denied: frozenset[int] = frozenset(), *, cap: int) -> Plan:
    """The plan with each detach, drop and re-attach that has no estimate marked with its partition's exact
    row count (keyed by OID; at most cap + 1, counted by the shell), or with why it could not be counted:
    locked by another session for the whole ladder, or not readable by the connected role."""
    def counted(a: Action) -> Action:
        if a.kind not in ROW_FIGURED or a.rows_estimate is not None or a.oid is None:
            return a
        if a.oid in counts:
            return replace(a, rows_counted=RowCount.of(counts[a.oid], cap))
        if a.oid in locked:
            return replace(a, rows_counted=RowCount(why_not=NOT_COUNTED_LOCKED))
        if a.oid in denied:
            return replace(a, rows_counted=RowCount(why_not=NOT_COUNTED_DENIED))
        return a

    return replace(plan, tables=tuple(replace(t, actions=tuple(map(counted, t.actions))) for t in plan.tables))


def desired_config(spec: TableSpec) -> ConfigRow:
    """The partition_config row that makes the migration's manage_partitions() follow this spec."""
    months = None if spec.interval in (Interval.DAILY, Interval.WEEKLY) else spec.interval.months
    # The SQL face cannot keep a detached table forever: with retention_keep_table only partman retires.
    retention = None if spec.retention_keep_table else _span3(spec.retention)
    return ConfigRow(months, _span3(spec.premake), retention, _span3(spec.retention_grace), spec.timezone)


def _span3(span: Optional[Span]) -> Optional[Span3]:
    if span is None:
        return None
    if span.unit in ("months", "years"):
        return (span.amount * (12 if span.unit == "years" else 1), 0, 0)
    return (0, span.amount * (7 if span.unit == "weeks" else 1), 0)


def _check_parent(spec: TableSpec, state: TableState, survey=None) -> list[str]:
    found = _parent_problems(spec, state, survey)
    if found or spec.width is None:
        return found
    _, unknown = id_mark(spec, state)
    return [unknown] if unknown else []


def _parent_problems(spec: TableSpec, state: TableState, survey=None) -> list[str]:
    if state.oid is None:
        if not spec.columns:
            return [f"{spec.table} does not exist and its spec ({spec.source}) declares no columns to create it from"]
        return []
    if state.strategy != "range":
        if state.strategy:
            return [f"{spec.table} is partitioned by {state.strategy}; partman manages tables partitioned by range"]
        from .conversion import check_name

        left = survey.check(check_name(spec.table)) if survey is not None else None
        if left is not None:
            return [f"{spec.table}: an interrupted conversion left constraint {left.name} ({left.definition}), which"
                    f" refuses rows past its bound: add `convert: attach` to its spec ({spec.source}) to finish the"
                    f" conversion, or ALTER TABLE {spec.table} DROP CONSTRAINT {left.name} to undo it"]
        return [f"{spec.table} is not partitioned; add `convert: attach` to its spec ({spec.source}) to convert it"
                " online, without copying a row (README: Converting a table)"]
    if state.key_columns != (spec.partition_key,):
        return [
            f"{spec.table} is partitioned by ({', '.join(state.key_columns)}), but its spec says ({spec.partition_key})"
        ]
    if state.key_type is None:
        return [
            f"{spec.table}: partition key {spec.partition_key} has type {state.key_type_name};"
            " partman manages timestamptz, timestamp and date keys, and integer, bigint and uuid keys that hold a time"
        ]
    problem = encoding_problem(spec.key_encoding, state.key_type, spec.width is not None)
    if problem:
        return [f"{spec.table}: {problem} ({spec.source})"]
    declared = spec.declared_key_type
    if declared is not None and declared is not state.key_type:
        return [
            f"{spec.table}: partition key {spec.partition_key} is {state.key_type.value} in the database, but the"
            f" spec's columns say {declared.value} ({spec.source}); fix the spec"
        ]
    return []


def _retire(t: _Table, p: Partition) -> None:
    """Retention detaches; the drop waits for the grace period (and follows at once when it is zero)."""
    t.actions.append(Action(ActionKind.DETACH, p.ref, p.bounds, Reason.RETENTION, rows_estimate=p.rows_estimate, oid=p.oid))
    if _drops_at_once(t.spec):
        t.actions.append(_grace_drop(p.ref, p.bounds, p.rows_estimate, p.oid))


def _drops_at_once(spec: TableSpec) -> bool:
    """A grace of zero drops in the same apply; retention_keep_table never drops."""
    return spec.retention_grace.amount == 0 and not spec.retention_keep_table


def _grace_drop(ref: TableRef, bounds: Bounds, rows: Optional[int], oid: Optional[int]) -> Action:
    return Action(ActionKind.DROP, ref, bounds, Reason.RETENTION_GRACE_ELAPSED, rows_estimate=rows, oid=oid, attached=False)


def _after_detach(t: _Table, ref: TableRef, bounds: Bounds, rows: Optional[int], oid: Optional[int],
                  cutoff: Optional[KeyValue]) -> list[Action]:
    """What follows once an interrupted retention detach is finished, planned with it so that one run does
    both: the drop when the grace is zero, or re-attaching when retention no longer wants the range gone."""
    if not _expired(bounds, cutoff):
        return [Action(ActionKind.REATTACH, ref, bounds, Reason.RETENTION_LENGTHENED, rows_estimate=rows, oid=oid)]
    if _drops_at_once(t.spec):
        return [_grace_drop(ref, bounds, rows, oid)]
    return []


def _expired(bounds: Bounds, cutoff: Optional[KeyValue]) -> bool:
    return cutoff is not None and bounds.end is not None and bounds.end <= cutoff


def _retire_detached(t: _Table, now: datetime, cutoff: Optional[KeyValue]) -> list[Bounds]:
    """Plans for the partitions retention detached: drop those past their grace, re-attach (with their rows)
    those whose range retention no longer wants gone. Returns the ranges they hold, which no create may fill:
    a detached partition is never replaced by an empty twin."""
    space = t.grid.space
    if not t.state.detached:
        return []
    attached = {_log_key(p, space) for p in t.state.partitions}
    held: list[Bounds] = []
    for entry in t.state.detached:
        bounds = Bounds(from_log(entry.start, space), from_log(entry.end, space))
        standalone = entry.relid is not None and not entry.is_partition
        if entry.pending and (entry.start, entry.end) not in attached and standalone:
            # Detached by an interrupted run that meant to drop it (or to record a retention detach).
            if entry.pending == "drop":
                t.actions.append(Action(ActionKind.DROP, entry.partition, bounds, Reason.INTERVAL_CHANGE, oid=entry.relid, attached=False))
            else:
                t.actions.extend(_after_detach(t, entry.partition, bounds, entry.rows_estimate, entry.relid, cutoff))
                held.append(bounds)
            t.warnings.append(Note(INTERRUPTED, entry.partition, bounds, f"an interrupted {entry.pending}: this apply finishes it"))
            continue
        if entry.pending and (entry.start, entry.end) in attached:
            t.warnings.append(Note(INTERRUPTED, entry.partition, bounds, f"an interrupted {entry.pending} that never began: planned afresh"))
        if entry.detached_at is None or (entry.start, entry.end) in attached:
            continue  # still attached: re-attaching a detached partition is how a retention mistake is undone
        if not standalone:
            t.warnings.append(
                Note(DETACHED_MISSING, entry.partition, bounds, "detached by retention but no longer a standalone table; left alone")
            )
            continue
        held.append(bounds)
        if not _expired(bounds, t.cutoff):
            covering = [p for p in t.state.partitions if p.bounds.overlaps(bounds)]
            if covering:
                t.warnings.append(Note(DETACHED_OVERLAPPED, entry.partition, bounds,
                                       f"retention no longer expires it, but {covering[0].ref} now covers its range;"
                                       " left detached, with its rows"))
            else:
                t.actions.append(Action(ActionKind.REATTACH, entry.partition, bounds, Reason.RETENTION_LENGTHENED,
                                        rows_estimate=entry.rows_estimate, oid=entry.relid))
            continue
        due = t.spec.retention_grace.add(space.local_moment(entry.detached_at))
        if due <= space.local_moment(now) and not t.spec.retention_keep_table:
            t.actions.append(_grace_drop(entry.partition, bounds, entry.rows_estimate, entry.relid))
    return held


def _missing(spec: TableSpec, state: TableState) -> Optional[str]:
    """What the database lacks for a parent to be created (a schema, a column type): the spec cannot be planned."""
    access = state.access
    if state.oid is not None:
        return None
    if not access.schema_exists:
        return f"{spec.table}: schema {spec.table.schema} does not exist; create it first (partman creates tables, never schemas)"
    if access.missing_types:
        return (f"{spec.table}: the spec's column type {access.missing_types[0]!r} does not exist in the database"
                f" ({spec.source}); create the type or fix the spec")
    return None


# The actions after which the parent's statistics are out of date (an adoption changes no partition).
_CHANGES_PARTITIONS = (ActionKind.CREATE, ActionKind.DETACH, ActionKind.DROP, ActionKind.REATTACH, ActionKind.CONVERT)
# What each action needs of the connected role; an adoption writes partition_log rows only.
_NEEDS_CREATE = (ActionKind.CREATE,)
_NEEDS_OWNER = (ActionKind.CREATE, ActionKind.DETACH, ActionKind.DROP, ActionKind.REATTACH, ActionKind.CONVERT,
                ActionKind.CONFORM)


def _shape_problem(spec: TableSpec, state: TableState) -> Optional[str]:
    """What the spec asks of new partitions that the server cannot give: a tablespace that is not there or not open to
    the connected role."""
    shape = state.shape
    if shape is not None and shape.tablespace_problem:
        return f"{spec.source}: tablespace {spec.tablespace!r} {shape.tablespace_problem}; no partition could be created"
    return None


def _conform(t: _Table) -> None:
    """Each partition partman manages that differs from its parent (conformance.py): a CONFORM action with what
    fixes it in place, and a PM215 warning for what only a rewrite would (never done)."""
    from .conformance import UNFIXED, differences, wanted

    parent = t.state.shape
    if parent is None or not t.state.drifted or not t.spec.conform:
        return
    leaving = {a.partition for a in t.actions}
    space = t.grid.space
    for p in t.state.partitions:
        shape = t.state.drifted.get(p.oid)
        if shape is None or p.detach_pending or p.ref in leaving or _log_key(p, space) not in t.state.managed:
            continue
        changes = differences(parent, shape, wanted(t.spec))
        fixable = tuple(c for c in changes if c.fixable)
        if fixable:
            t.actions.append(Action(ActionKind.CONFORM, p.ref, p.bounds, Reason.CONFORMANCE, oid=p.oid, changes=fixable))
        for c in changes:
            if not c.fixable:
                t.warnings.append(Note(UNFIXED, p.ref, p.bounds, c.text()))


def _unprivileged(spec: TableSpec, state: TableState, actions: list[Action]) -> Optional[str]:
    """Why apply would be refused for want of a privilege, known at plan time. The plan itself is a read, so it is
    made and shown all the same (a read-only role can plan and watch drift); apply refuses the table before
    changing anything."""
    access = state.access
    schema = spec.table.schema
    if state.oid is None and not access.may_create:
        return f"{spec.table}: the connected role has no CREATE privilege on schema {schema}, so it cannot create the table"
    if any(a.kind in _NEEDS_CREATE for a in actions) and not access.may_create:
        return (f"{spec.table}: the connected role has no CREATE privilege on schema {schema}, so it cannot create"
                f" partitions (GRANT CREATE ON SCHEMA {schema} TO it)")
    if state.oid is not None and any(a.kind in _NEEDS_OWNER for a in actions) and not access.owned:
        return (f"{spec.table}: attaching and detaching partitions needs the table's owner ({access.owner}) or a member"
                " of that role; the connected role is neither")
    return None


def from_log(value: Optional[datetime], space: KeySpace) -> Optional[KeyValue]:
    """The inverse of KeySpace.to_log."""
    return space.from_log(value)


_START = attrgetter("start")


def _gaps(window: Bounds, obstacles: list[Bounds]) -> list[Bounds]:
    """The parts of a bounded window that no obstacle covers."""
    gaps = []
    cursor = window.start
    # What ends before the window cannot cut it (most of a large table): left out before sorting.
    reaching = [b for b in obstacles if b.end is None or b.end > cursor]
    ordered = [b for b in reaching if b.start is None] + sorted([b for b in reaching if b.start is not None], key=_START)
    for ob in ordered:
        if ob.end is not None and ob.end <= cursor:
            continue
        if ob.start is not None and ob.start >= window.end:
            break
        if ob.start is not None and ob.start > cursor:
            gaps.append(Bounds(cursor, ob.start))
        if ob.end is None:
            return gaps
        cursor = max(cursor, ob.end)
    if cursor < window.end:
        gaps.append(Bounds(cursor, window.end))
    return gaps


def _action_order(a: Action) -> tuple:
    return (a.bounds.start is not None, a.bounds.start, a.kind.value)


def _note_order(n: Note) -> tuple:
    return (n.bounds.start is not None, n.bounds.start, str(n.partition))
