"""The planner as a pure function: hand-built snapshots in, Plan values out."""

from dataclasses import replace
from datetime import date

from helpers import BOOKINGS, Layout, spec, utc

from partman.model import Bounds, KeyType, TableRef
from partman.plan import ActionKind, Reason
from partman.planner import KEPT_WITH_ROWS, UNMANAGED, UNMANAGED_EXPIRED, plan
from partman.snapshot import LogEntry, Snapshot, TableState

NOW = utc(2026, 11, 24, 10)


def creates(p):
    return [a.bounds for t in p.tables for a in t.actions if a.kind is ActionKind.CREATE]


def kinds(p, kind):
    return [a for t in p.tables for a in t.actions if a.kind is kind]


def test_a_missing_table_is_created_with_full_coverage():
    p = plan([spec("monthly", premake="3 months")], Snapshot(tables={}), now=NOW, env="test")
    table = p.tables[0]
    assert table.create_parent
    assert creates(p) == [
        Bounds(utc(2026, 11, 1), utc(2026, 12, 1)),
        Bounds(utc(2026, 12, 1), utc(2027, 1, 1)),
        Bounds(utc(2027, 1, 1), utc(2027, 2, 1)),
        Bounds(utc(2027, 2, 1), utc(2027, 3, 1)),
    ]
    assert [str(a.partition) for a in table.actions][:2] == ["public.bookings_2026_11", "public.bookings_2026_12"]
    assert all(a.reason is Reason.PREMAKE for a in table.actions)


def test_a_table_in_shape_plans_nothing():
    layout = Layout()
    for start, end in [((2026, 11, 1), (2026, 12, 1)), ((2026, 12, 1), (2027, 1, 1)), ((2027, 1, 1), (2027, 2, 1)), ((2027, 2, 1), (2027, 3, 1))]:
        layout.add(utc(*start), utc(*end))
    s = spec("monthly")
    p = plan([s], layout.snapshot(configured_for=s), now=NOW, env="test")
    assert not p.changes and not p.tables[0].errors


def test_only_the_missing_tail_is_created_as_time_moves_on():
    layout = Layout()
    layout.add(utc(2026, 11, 1), utc(2026, 12, 1))
    layout.add(utc(2026, 12, 1), utc(2027, 1, 1))
    p = plan([spec("monthly", premake="3 months")], layout.snapshot(), now=NOW, env="test")
    assert creates(p) == [Bounds(utc(2027, 1, 1), utc(2027, 2, 1)), Bounds(utc(2027, 2, 1), utc(2027, 3, 1))]


def test_monthly_to_quarterly_keeps_populated_months_and_bridges_around_them():
    layout = Layout()
    layout.add(utc(2026, 10, 1), utc(2026, 11, 1))
    months = [layout.add(utc(2026, m, 1), utc(2026 + m // 12, m % 12 + 1, 1)) for m in (11, 12)]
    months += [layout.add(utc(2027, m, 1), utc(2027, m + 1, 1), rows=(m == 2)) for m in range(1, 7)]
    nov, dec, jan, feb, mar, apr, may, jun = months
    p = plan([spec("quarterly", premake="6 months")], layout.snapshot(), now=NOW, env="test")
    drops = kinds(p, ActionKind.DROP)
    # Past and current months stay; the populated February stays; January and March are exactly the bridges
    # the quarterly layout needs around February, so they stay too. Only April to June make way for Q2.
    assert [a.partition for a in drops] == [apr.ref, may.ref, jun.ref]
    assert all(a.reason is Reason.INTERVAL_CHANGE and a.rows_estimate == 0 for a in drops)
    assert creates(p) == [Bounds(utc(2027, 4, 1), utc(2027, 7, 1))]
    assert [(n.partition, n.code) for n in p.tables[0].kept] == [(feb.ref, KEPT_WITH_ROWS)]


def test_a_populated_future_partition_is_bridged_to_the_next_aligned_boundary():
    layout = Layout()
    layout.add(utc(2026, 10, 1), utc(2027, 1, 1))
    busy = layout.add(utc(2027, 1, 10), utc(2027, 2, 10), rows=True, managed=True)
    empty = layout.add(utc(2027, 2, 10), utc(2027, 5, 10))
    p = plan([spec("quarterly", premake="9 months")], layout.snapshot(), now=NOW, env="test")
    assert [a.partition for a in kinds(p, ActionKind.DROP)] == [empty.ref]
    assert creates(p) == [
        Bounds(utc(2027, 1, 1), utc(2027, 1, 10)),
        Bounds(utc(2027, 2, 10), utc(2027, 4, 1)),
        Bounds(utc(2027, 4, 1), utc(2027, 7, 1)),
        Bounds(utc(2027, 7, 1), utc(2027, 10, 1)),
    ]
    assert busy.ref in {n.partition for n in p.tables[0].kept}


def test_quarterly_to_monthly_splits_empty_future_quarters():
    layout = Layout()
    layout.add(utc(2026, 10, 1), utc(2027, 1, 1), rows=True)  # current quarter: never touched
    q1 = layout.add(utc(2027, 1, 1), utc(2027, 4, 1))
    p = plan([spec("monthly", premake="4 months")], layout.snapshot(), now=NOW, env="test")
    assert [a.partition for a in kinds(p, ActionKind.DROP)] == [q1.ref]
    assert creates(p) == [Bounds(utc(2027, m, 1), utc(2027, m + 1, 1)) for m in (1, 2, 3)]


def test_an_empty_current_partition_of_another_interval_is_left_alone():
    layout = Layout()
    layout.add(utc(2026, 10, 1), utc(2027, 1, 1))  # empty, current, quarterly
    p = plan([spec("monthly", premake="2 months")], layout.snapshot(), now=NOW, env="test")
    assert not kinds(p, ActionKind.DROP)
    assert creates(p) == [Bounds(utc(2027, 1, 1), utc(2027, 2, 1))]


def test_retention_detaches_only_fully_expired_partitions():
    layout = Layout()
    old = layout.add(utc(2026, 7, 1), utc(2026, 8, 1), rows=True)
    edge = layout.add(utc(2026, 8, 1), utc(2026, 9, 1), rows=True)  # ends after the cutoff of 2026-08-24
    p = plan([spec("monthly", premake="1 month", retention="3 months")], layout.snapshot(), now=NOW, env="test")
    detaches = kinds(p, ActionKind.DETACH)
    assert [a.partition for a in detaches] == [old.ref]
    assert detaches[0].reason is Reason.RETENTION
    assert edge.ref not in {a.partition for t in p.tables for a in t.actions}
    assert not kinds(p, ActionKind.DROP)


def test_a_zero_grace_drops_in_the_same_apply():
    layout = Layout()
    old = layout.add(utc(2026, 7, 1), utc(2026, 8, 1), rows=True)
    p = plan([spec("monthly", premake="1 month", retention="3 months", grace="0 days")], layout.snapshot(), now=NOW, env="test")
    assert [(a.kind, a.partition, a.reason) for a in p.tables[0].actions if a.partition == old.ref] == [
        (ActionKind.DETACH, old.ref, Reason.RETENTION),
        (ActionKind.DROP, old.ref, Reason.RETENTION_GRACE_ELAPSED),
    ]


def _detached(layout, start, end, detached_at, s, name="bookings_old"):
    ref = TableRef("public", name)
    entry = LogEntry(ref, start, end, detached_at=detached_at, relid=555, rows_estimate=42)
    state = layout.state(configured_for=s)
    detached = replace(state, managed=state.managed | {(start, end)}, detached=(entry,))
    return Snapshot(tables={BOOKINGS: detached}), ref


def test_a_detached_partition_is_dropped_only_after_its_grace():
    layout = Layout()
    layout.add(utc(2026, 11, 1), utc(2026, 12, 1))
    layout.add(utc(2026, 12, 1), utc(2027, 1, 1))
    s = spec("monthly", premake="1 month", retention="3 months", grace="7 days")
    snap, ref = _detached(layout, utc(2026, 7, 1), utc(2026, 8, 1), utc(2026, 11, 20, 10), s)
    assert not plan([s], snap, now=NOW, env="test").changes
    later = plan([s], snap, now=utc(2026, 11, 27, 10), env="test")
    drop, = kinds(later, ActionKind.DROP)
    assert (drop.partition, drop.reason, drop.rows_estimate, drop.attached) == (ref, Reason.RETENTION_GRACE_ELAPSED, 42, False)


def test_unmanaged_partitions_are_shown_and_never_dropped():
    layout = Layout()
    stranger = layout.add(utc(2027, 1, 1), utc(2027, 4, 1), managed=False)  # future, wrong shape, not ours
    ancient = layout.add(utc(2020, 1, 1), utc(2020, 2, 1), managed=False)
    p = plan([spec("monthly", premake="6 months", retention="12 months")], layout.snapshot(), now=NOW, env="test")
    assert not kinds(p, ActionKind.DROP) and not kinds(p, ActionKind.DETACH)
    assert {(n.partition, n.code) for n in p.tables[0].unmanaged} == {(stranger.ref, UNMANAGED), (ancient.ref, UNMANAGED_EXPIRED)}
    assert all(not b.overlaps(stranger.bounds) for b in creates(p))


def test_a_partition_whose_rows_are_unknown_is_treated_as_populated():
    layout = Layout()
    q1 = layout.add(utc(2027, 1, 1), utc(2027, 4, 1))
    snap = layout.snapshot()
    snap.has_rows.pop(q1.oid)
    p = plan([spec("monthly", premake="6 months")], snap, now=NOW, env="test")
    assert not kinds(p, ActionKind.DROP)
    assert [n.code for n in p.tables[0].kept] == [KEPT_WITH_ROWS]


def test_a_config_that_differs_from_the_spec_is_planned_for_update():
    layout = Layout()
    layout.add(utc(2026, 11, 1), utc(2026, 12, 1))
    old = spec("quarterly", premake="0 days")
    new = spec("monthly", premake="0 days", retention="2 years")
    p = plan([new], layout.snapshot(configured_for=old), now=NOW, env="test")
    assert not p.tables[0].actions
    assert p.tables[0].config.interval_months == 1 and p.tables[0].config.retention == (24, 0, 0)
    assert p.tables[0].config.to_dict()["retention"] == "24 months"


def test_daily_and_weekly_intervals_are_configured_for_partman_only():
    p = plan([spec("weekly")], Snapshot(tables={}), now=NOW, env="test")
    assert p.tables[0].config.interval_months is None


def test_a_list_partitioned_table_is_an_error_for_that_table_only():
    state = TableState(BOOKINGS, oid=1, strategy="list", key_columns=("start_time",), key_type_name=KeyType.TIMESTAMPTZ.value)
    other = spec(table=TableRef("public", "other"))
    p = plan([spec(), other], Snapshot(tables={BOOKINGS: state}), now=NOW, env="test")
    by_table = {t.table: t for t in p.tables}
    assert by_table[BOOKINGS].errors == ("public.bookings is partitioned by list; partman manages tables partitioned by range",)
    assert by_table[other.table].create_parent


def test_a_key_of_another_column_is_an_error():
    state = TableState(BOOKINGS, oid=1, strategy="range", key_columns=("created_at",), key_type_name=KeyType.TIMESTAMPTZ.value)
    p = plan([spec()], Snapshot(tables={BOOKINGS: state}), now=NOW, env="test")
    assert "partitioned by (created_at), but its spec says (start_time)" in p.tables[0].errors[0]


def test_date_keys_plan_date_bounds():
    layout = Layout(key_type=KeyType.DATE)
    p = plan([spec("yearly", premake="1 year", key_type="date")], layout.snapshot(), now=NOW, env="test")
    assert creates(p) == [Bounds(date(2026, 1, 1), date(2027, 1, 1)), Bounds(date(2027, 1, 1), date(2028, 1, 1))]


def test_names_of_a_long_table_fit_63_bytes_and_stay_distinct():
    long = TableRef("public", "b" * 60)
    p = plan([spec("daily", table=long, premake="3 days")], Snapshot(tables={}), now=NOW, env="test")
    names = [a.partition.name for a in p.tables[0].actions]
    assert len(set(names)) == len(names) == 4
    assert all(len(n.encode()) <= 63 for n in names)


def test_a_name_already_taken_gets_a_suffix():
    taken = frozenset({TableRef("public", "bookings_2026_11")})
    p = plan([spec("monthly", premake="0 days")], Snapshot(tables={}, taken_names=taken), now=NOW, env="test")
    assert [a.partition.name for a in p.tables[0].actions] == ["bookings_2026_11_2"]


def test_a_detached_partition_whose_range_retention_wants_again_is_reattached_not_recreated():
    layout = Layout()
    layout.add(utc(2026, 11, 1), utc(2026, 12, 1))
    layout.add(utc(2026, 12, 1), utc(2027, 1, 1))
    longer = spec("monthly", premake="1 month", retention="24 months", grace="30 days")
    snap, ref = _detached(layout, utc(2026, 7, 1), utc(2026, 8, 1), utc(2026, 11, 20, 10), longer)
    p = plan([longer], snap, now=NOW, env="test")
    reattach, = kinds(p, ActionKind.REATTACH)
    assert (reattach.partition, reattach.reason, reattach.oid) == (ref, Reason.RETENTION_LENGTHENED, 555)
    assert Bounds(utc(2026, 7, 1), utc(2026, 8, 1)) not in creates(p)


def test_a_detached_partition_past_its_grace_but_wanted_again_is_reattached_not_dropped():
    layout = Layout()
    layout.add(utc(2026, 11, 1), utc(2026, 12, 1))
    layout.add(utc(2026, 12, 1), utc(2027, 1, 1))
    s = spec("monthly", premake="1 month", retention=None)
    snap, ref = _detached(layout, utc(2026, 7, 1), utc(2026, 8, 1), utc(2026, 1, 1), s)
    p = plan([s], snap, now=NOW, env="test")
    assert [a.kind for a in p.tables[0].actions] == [ActionKind.REATTACH]


def test_a_detached_range_another_partition_now_covers_is_left_detached_with_a_note():
    from partman.planner import DETACHED_OVERLAPPED

    layout = Layout()
    layout.add(utc(2026, 7, 1), utc(2026, 10, 1), managed=False)
    layout.add(utc(2026, 11, 1), utc(2026, 12, 1))
    layout.add(utc(2026, 12, 1), utc(2027, 1, 1))
    s = spec("monthly", premake="1 month")
    snap, ref = _detached(layout, utc(2026, 7, 1), utc(2026, 8, 1), utc(2026, 11, 20, 10), s)
    p = plan([s], snap, now=NOW, env="test")
    assert not kinds(p, ActionKind.REATTACH) and not kinds(p, ActionKind.DROP)
    assert [n.code for n in p.tables[0].warnings] == [DETACHED_OVERLAPPED]


def test_an_interrupted_retention_detach_with_no_grace_plans_its_drop_in_the_same_run():
    layout = Layout()
    old = layout.add(utc(2026, 7, 1), utc(2026, 8, 1))
    layout.add(utc(2026, 11, 1), utc(2026, 12, 1))
    layout.add(utc(2026, 12, 1), utc(2027, 1, 1))
    s = spec("monthly", premake="1 month", retention="3 months", grace="0 days")
    state = layout.state(configured_for=s)
    pending = replace(old, detach_pending=True)
    entry = LogEntry(old.ref, utc(2026, 7, 1), utc(2026, 8, 1), relid=old.oid, is_partition=True, pending="detach")
    state = replace(state, partitions=tuple(pending if p.oid == old.oid else p for p in state.partitions), detached=(entry,))
    p = plan([s], Snapshot(tables={BOOKINGS: state}), now=NOW, env="test")
    assert [(a.kind, a.reason) for a in p.tables[0].actions] == [
        (ActionKind.DETACH, Reason.RETENTION), (ActionKind.DROP, Reason.RETENTION_GRACE_ELAPSED)]


def test_a_detach_finished_but_not_recorded_with_no_grace_plans_its_drop_in_the_same_run():
    layout = Layout()
    layout.add(utc(2026, 11, 1), utc(2026, 12, 1))
    layout.add(utc(2026, 12, 1), utc(2027, 1, 1))
    s = spec("monthly", premake="1 month", retention="3 months", grace="0 days")
    ref = TableRef("public", "bookings_2026_07")
    entry = LogEntry(ref, utc(2026, 7, 1), utc(2026, 8, 1), relid=777, is_partition=False, pending="detach")
    state = replace(layout.state(configured_for=s), detached=(entry,))
    state = replace(state, managed=state.managed | {(utc(2026, 7, 1), utc(2026, 8, 1))})
    p = plan([s], Snapshot(tables={BOOKINGS: state}), now=NOW, env="test")
    assert [(a.kind, a.partition, a.attached) for a in p.tables[0].actions] == [(ActionKind.DROP, ref, False)]


def test_a_partition_locked_by_another_session_is_kept_with_a_busy_note():
    from partman.plan import BUSY

    layout = Layout()
    q1 = layout.add(utc(2027, 1, 1), utc(2027, 4, 1))
    snap = layout.snapshot()
    snap.has_rows.pop(q1.oid)
    p = plan([spec("monthly", premake="6 months")], replace(snap, busy=frozenset({q1.oid})), now=NOW, env="test")
    assert not kinds(p, ActionKind.DROP)
    assert [n.code for n in p.tables[0].kept] == [BUSY] and p.tables[0].busy


def test_a_window_past_the_calendar_is_an_error_for_that_table_not_a_crash():
    p = plan([spec("monthly", premake="1 month")], Snapshot(tables={}), now=utc(9999, 12, 15), env="test")
    assert p.tables[0].errors and "calendar" in p.tables[0].errors[0]
    from partman.intervals import Span

    ancient = replace(spec("monthly"), retention=Span(9000, "years"))  # beyond what a spec may say: a value built in code
    p = plan([ancient], Snapshot(tables={}), now=NOW, env="test")
    assert p.tables[0].errors and "calendar" in p.tables[0].errors[0]


def test_a_schema_that_does_not_exist_is_an_error_not_a_create():
    from partman.snapshot import Access

    state = TableState(BOOKINGS, access=Access(schema_exists=False, may_create=False))
    p = plan([spec()], Snapshot(tables={BOOKINGS: state}), now=NOW, env="test")
    assert not p.tables[0].create_parent and "schema public does not exist" in p.tables[0].errors[0]


def test_history_from_covers_the_past_from_its_slot_to_the_horizon():
    s = replace(spec("monthly", premake="1 month"), history_from=date(2026, 7, 15))
    p = plan([s], Snapshot(tables={}), now=NOW, env="test")
    assert creates(p) == [Bounds(utc(2026, m, 1), utc(2026, m + 1, 1)) for m in range(7, 12)] + [
        Bounds(utc(2026, 12, 1), utc(2027, 1, 1))]
    assert not p.tables[0].warnings


def test_history_from_after_now_changes_nothing():
    s = spec("monthly", premake="1 month")
    later = replace(s, history_from=date(2027, 6, 1))
    assert creates(plan([later], Snapshot(tables={}), now=NOW, env="test")) == creates(
        plan([s], Snapshot(tables={}), now=NOW, env="test"))


def test_retention_wins_over_history_from_and_the_plan_says_so():
    s = replace(spec("monthly", premake="1 month", retention="2 months"), history_from=date(2026, 1, 1))
    p = plan([s], Snapshot(tables={}), now=NOW, env="test")
    assert creates(p)[0] == Bounds(utc(2026, 9, 1), utc(2026, 10, 1)), "the first month ending after the cutoff"
    (note,) = p.tables[0].warnings
    assert note.code == "PM216" and "history_from 2026-01-01 reaches before retention's cutoff" in note.why


def id_spec(**changes):
    from partman.widths import Reach

    base = replace(spec("monthly", key_type="bigint"), interval=None, width=1000, premake=Reach(4, "partitions"))
    return replace(base, **changes)


def test_history_from_far_behind_an_id_tables_mark_counts_only_the_partitions_missing():
    from partman.widths import IdMark

    layout = Layout(key_type=KeyType.BIGINT, mark=IdMark(indexed=True, largest=4_996_500, largest_known=True))
    for start in range(0, 4_996_000, 1000):
        layout.add(start, start + 1000)
    p = plan([id_spec(history_from=0)], layout.snapshot(), now=utc(2027, 1, 1), env="t")
    (t,) = p.tables
    assert not t.errors, t.errors
    assert [a.bounds.start for a in t.actions] == [4_996_000, 4_997_000, 4_998_000, 4_999_000, 5_000_000]


def test_an_id_window_reaching_further_than_a_plan_may_create_is_refused_without_computing_it():
    from partman.widths import IdMark, Reach

    layout = Layout(key_type=KeyType.BIGINT, mark=IdMark(indexed=True, largest=10, largest_known=True))
    (t,) = plan([id_spec(width=1, premake=Reach(10 ** 18, "partitions"))], layout.snapshot(), now=utc(2027, 1, 1),
                env="t").tables
    assert t.errors == ("public.bookings: the plan would create more than 5,000 partitions; check width, premake",)
