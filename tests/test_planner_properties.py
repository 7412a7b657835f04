"""Properties of the planner over random layouts, rows, intervals, time zones and instants (no database).

A tiny model of apply (detach, drop, create on the snapshot value) lets the properties speak about the
state after the plan, and about the plan after that."""

from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import BOOKINGS, Layout, spec, utc

from partman.intervals import Interval
from partman.model import Bounds, KeyType
from partman.plan import ActionKind, Plan, Reason
from partman.planner import plan
from partman.snapshot import LogEntry, Partition, Snapshot
from partman.intervals import Span
from partman.planner import layout as layout_of
from partman.timeline import cutoff, space_for, window
from partman.widths import IdMark, Reach

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "America/Havana", "Pacific/Chatham"]
KEY_TYPES = {"timestamptz": KeyType.TIMESTAMPTZ, "timestamp": KeyType.TIMESTAMP, "date": KeyType.DATE,
             "bigint": KeyType.BIGINT, "integer": KeyType.INTEGER, "smallint": KeyType.SMALLINT, "uuid": KeyType.UUID}
# Each key kind: its column type and key_encoding. Epoch numbers and UUIDv7 are laid out as timestamptz is.
KINDS = {"timestamptz": ("timestamptz", None), "timestamp": ("timestamp", None), "date": ("date", None),
         "epoch_ms": ("bigint", "epoch_ms"), "epoch_s": ("integer", "epoch_s"), "epoch_us": ("bigint", "epoch_us"),
         "uuidv7": ("uuid", "uuidv7")}
SPAN = {Interval.DAILY: 40, Interval.WEEKLY: 200, Interval.MONTHLY: 500, Interval.QUARTERLY: 800, Interval.YEARLY: 1500}


@st.composite
def scenarios(draw):
    kind = draw(st.sampled_from(sorted(KINDS) + ["ids", "ids"]))
    return _id_scenario(draw) if kind == "ids" else _time_scenario(draw, kind)


def _id_scenario(draw):
    """An id table (width): an old layout of another width around its mark, which may have jumped far past it."""
    key = draw(st.sampled_from(["bigint", "integer", "smallint"]))  # smallint: the jump meets its end (PM217)
    width, old = draw(st.sampled_from([10, 100, 1000])), draw(st.sampled_from([10, 100, 250, 1000]))
    origin = draw(st.sampled_from([0, 0, 7, -3]))
    built = draw(st.integers(0, 20_000))  # where the old layout is centred
    mark = built + draw(st.sampled_from([0, 0, 37, 999, 20_000]))  # 20,000: a jump past the partitions
    reaches = ["0 ids", "50 ids", "3 partitions", "2500 ids", None]
    s = replace(spec("monthly", key_type=key), interval=None, width=width, origin=origin,
                premake=_reach(draw(st.sampled_from(reaches))),
                retention=_reach(draw(st.sampled_from([None, "30 ids", "2 partitions", "5000 ids"]))),
                retention_grace=Span.parse(draw(st.sampled_from(["0 days", "7 days"]))),
                adopt=draw(st.integers(0, 3)) == 0, retention_keep_table=draw(st.integers(0, 3)) == 0,
                history_from=draw(st.sampled_from([None, None, max(0, built - 500), built])))
    by_sequence = draw(st.booleans())
    layout = Layout(key_type=KEY_TYPES[key], mark=IdMark("public.t_id_seq", mark, 1, indexed=True) if by_sequence
                    else IdMark(indexed=True, largest=mark, largest_known=True))
    boundary = built - built % old - 10 * old
    while boundary < built + 10 * old:
        if draw(st.integers(0, 9)) < 8:
            cut = [boundary, boundary + old]
            if draw(st.integers(0, 9)) == 0:
                cut.insert(1, boundary + draw(st.integers(1, old - 1)))
            for a, b in zip(cut, cut[1:]):
                layout.add(a, b, rows=draw(st.integers(0, 9)) < 3, managed=draw(st.integers(0, 19)) > 0)
        boundary += old
    return s, layout, utc(2027, 1, 1)


def _reach(text):
    return None if text is None else Reach.parse(text)


def _time_scenario(draw, kind):
    key, encoding = KINDS[kind]
    tz = draw(st.sampled_from(ZONES))
    now = utc(2026, 1, 1) + timedelta(minutes=draw(st.integers(0, 3 * 365 * 24 * 60)))
    old = draw(st.sampled_from(list(Interval)))
    new = draw(st.sampled_from(list(Interval)))
    premakes = ["0 days", "10 days", "2 months"] if new is Interval.DAILY else ["0 days", "10 days", "3 months", "1 year", None]
    s = spec(
        new.value,
        premake=draw(st.sampled_from(premakes)),
        retention=draw(st.sampled_from([None, "20 days", "3 months", "1 year"])),
        grace=draw(st.sampled_from(["0 days", "7 days"])),
        tz=tz,
        key_type=key,
        key_encoding=encoding,
    )
    history = draw(st.sampled_from([None, None, 15, 120, 400]))  # days before now, for history_from
    s = replace(s, adopt=draw(st.integers(0, 3)) == 0, retention_keep_table=draw(st.integers(0, 3)) == 0,
                history_from=None if history is None else (now - timedelta(days=history)).date())
    layout = Layout(key_type=KEY_TYPES[key], tz=tz, encoding=encoding)
    local_now = layout.space.local_moment(now).date()
    boundary = old.floor(local_now - timedelta(days=SPAN[old]))
    stop = local_now + timedelta(days=SPAN[old])
    while boundary < stop:
        nxt = old.next(boundary)
        if draw(st.integers(0, 9)) < 8:  # some slots missing
            cuts = [boundary, nxt]
            span_days = (nxt - boundary).days
            if span_days > 1 and draw(st.integers(0, 9)) == 0:  # an earlier bridge
                cuts.insert(1, boundary + timedelta(days=draw(st.integers(1, span_days - 1))))
            for a, b in zip(cuts, cuts[1:]):
                layout.add(
                    layout.space.at_midnight(a),
                    layout.space.at_midnight(b),
                    rows=draw(st.integers(0, 9)) < 3,
                    managed=draw(st.integers(0, 19)) > 0,
                )
        boundary = nxt
    return s, layout, now


def simulate(snapshot: Snapshot, p: Plan) -> Snapshot:
    """What apply leaves behind, on the snapshot value: the model the properties are checked against."""
    (tp,) = p.tables
    state = snapshot.tables[BOOKINGS]
    space = space_for(tp.key_type, "UTC", tp.key_encoding)
    parts = {x.ref: x for x in state.partitions}
    managed = set(state.managed)
    detached = {(e.start, e.end): e for e in state.detached}
    has_rows = dict(snapshot.has_rows)
    taken = set(snapshot.taken_names)
    next_oid = 10_000 + max([0] + list(has_rows))
    for a in tp.actions:
        key = (space.to_log(a.bounds.start), space.to_log(a.bounds.end))
        if a.kind is ActionKind.DETACH:
            parts.pop(a.partition)
            detached[key] = LogEntry(a.partition, key[0], key[1], detached_at=p.now, relid=a.oid, is_partition=False)
        elif a.kind is ActionKind.DROP:
            parts.pop(a.partition, None)
            managed.discard(key)
            detached.pop(key, None)
            taken.discard(a.partition)
        elif a.kind is ActionKind.ADOPT:
            managed.add(key)
        else:
            next_oid += 1
            parts[a.partition] = Partition(next_oid, a.partition, a.bounds, 0)
            managed.add(key)
            has_rows[next_oid] = False
            taken.add(a.partition)
    new_state = replace(
        state,
        config=tp.config or state.config,
        partitions=tuple(sorted(parts.values(), key=lambda x: x.bounds.start)),
        managed=frozenset(managed),
        detached=tuple(sorted(detached.values(), key=lambda e: e.start)),
    )
    return Snapshot(tables={BOOKINGS: new_state}, taken_names=frozenset(taken), has_rows=has_rows)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(scenarios())
def test_after_apply_no_two_partitions_overlap(case):
    s, layout, now = case
    after = simulate(layout.snapshot(), plan([s], layout.snapshot(), now=now, env="t"))
    bounds = sorted(x.bounds for x in after.tables[BOOKINGS].partitions)
    assert all(a.end <= b.start for a, b in zip(bounds, bounds[1:]))


@PROPERTY
@given(scenarios())
def test_after_apply_the_window_has_no_gap(case):
    s, layout, now = case
    after = simulate(layout.snapshot(), plan([s], layout.snapshot(), now=now, env="t"))
    grid, _ = layout_of(s, layout.state())
    w = window(grid, now, s.premake, s.history_from)
    end = cutoff(grid, now, s.retention)
    w = Bounds(w.start, min(w.end, grid.floor(grid.space.last))) if s.width else w  # the type ends there (PM217)
    cursor = w.start if end is None else max(w.start, end)
    for b in sorted(x.bounds for x in after.tables[BOOKINGS].partitions):
        if cursor >= w.end:
            break
        if b.end <= cursor:
            continue
        assert b.start <= cursor, f"gap [{cursor}, {b.start})"
        cursor = b.end
    assert cursor >= w.end, f"gap [{cursor}, {w.end})"


@PROPERTY
@given(scenarios())
def test_no_populated_partition_is_dropped_except_by_retention(case):
    s, layout, now = case
    snap = layout.snapshot()
    p = plan([s], snap, now=now, env="t")
    oid_of = {x.ref: x.oid for x in snap.tables[BOOKINGS].partitions}
    grid, _ = layout_of(s, snap.tables[BOOKINGS])
    now_key = grid.space.key_of(now)
    expired = cutoff(grid, now, s.retention)
    for a in p.tables[0].actions:
        if a.kind is ActionKind.DROP and a.reason is Reason.INTERVAL_CHANGE:
            assert not snap.has_rows[oid_of[a.partition]]
            assert a.bounds.start > now_key, "an interval change touched a past or current partition"
        if a.kind is ActionKind.DETACH:
            assert a.reason is Reason.RETENTION and a.bounds.end <= expired
        if a.kind in (ActionKind.DROP, ActionKind.DETACH):
            assert any(start == layout.space.to_log(a.bounds.start) for start, _ in snap.tables[BOOKINGS].managed), "dropped an unmanaged partition"


@PROPERTY
@given(scenarios())
def test_the_plan_after_apply_is_empty(case):
    s, layout, now = case
    snap = layout.snapshot()
    first = plan([s], snap, now=now, env="t")
    after = simulate(snap, first)
    if first.summary()["adopt"]:  # what it adopts is retired by the next apply, never by the adopting one
        after = simulate(after, plan([s], after, now=now, env="t"))
    again = plan([s], after, now=now, env="t")
    assert not again.changes, (again.tables[0].actions, sorted((x.bounds.start, x.bounds.end, layout.rows[x.oid]) for x in layout.partitions), layout.mark)


@PROPERTY
@given(scenarios())
def test_adopt_takes_over_every_unmanaged_partition_and_retires_none_of_them(case):
    s, layout, now = case
    snap = layout.snapshot()
    state = snap.tables[BOOKINGS]
    unmanaged = {x.ref for x in state.partitions
                 if (layout.space.to_log(x.bounds.start), layout.space.to_log(x.bounds.end)) not in state.managed}
    actions = plan([s], snap, now=now, env="t").tables[0].actions
    adopted = {a.partition for a in actions if a.kind is ActionKind.ADOPT}
    assert adopted == (unmanaged if s.adopt else set())
    assert not {a.partition for a in actions if a.kind is not ActionKind.ADOPT} & adopted


@PROPERTY
@given(scenarios())
def test_retention_keep_table_never_drops_what_retention_detached(case):
    s, layout, now = case
    snap = layout.snapshot()
    for _ in range(2):
        p = plan([s], snap, now=now, env="t")
        if s.retention_keep_table:
            assert not [a for a in p.tables[0].actions if a.kind is ActionKind.DROP and a.reason is not Reason.INTERVAL_CHANGE]
        snap = simulate(snap, p)
        now += timedelta(days=400)


@PROPERTY
@given(scenarios())
def test_every_generated_name_fits_and_is_unique(case):
    s, layout, now = case
    p = plan([s], layout.snapshot(), now=now, env="t")
    names = [a.partition for a in p.tables[0].actions if a.kind is ActionKind.CREATE]
    existing = {x.ref for x in layout.partitions}
    assert len(set(names)) == len(names)
    assert not set(names) & existing
    assert all(len(n.name.encode()) <= 63 for n in names)
