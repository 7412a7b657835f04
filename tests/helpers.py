"""Builders shared by the tests: specs as values or files, snapshots as values."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import yaml

from partman.intervals import Interval, Span
from partman.model import Bounds, KeyType, TableRef
from partman.snapshot import Partition, Snapshot, TableState
from partman.spec import Column, TableSpec
from partman.timeline import space_for

UTC = timezone.utc
BOOKINGS = TableRef("public", "bookings")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def spec(
    interval: str = "monthly",
    *,
    table: TableRef = BOOKINGS,
    premake: Optional[str] = "3 months",
    retention: Optional[str] = None,
    grace: str = "7 days",
    tz: str = "UTC",
    key_type: str = "timestamptz",
    key_encoding: Optional[str] = None,
) -> TableSpec:
    return TableSpec(
        table=table,
        partition_key="start_time",
        interval=Interval(interval),
        premake=Span.parse(premake) if premake else None,
        retention=Span.parse(retention) if retention else None,
        retention_grace=Span.parse(grace),
        timezone=tz,
        columns=(Column("id", "bigint", True), Column("start_time", key_type, True)),
        primary_key=("id", "start_time"),
        env="test",
        source="specs/bookings.yaml:1",
        key_encoding=key_encoding,
    )


class Layout:
    """A table's partitions built up by hand for planner tests; oids are assigned in order."""

    def __init__(self, table: TableRef = BOOKINGS, key_type: KeyType = KeyType.TIMESTAMPTZ, tz: str = "UTC",
                 encoding: Optional[str] = None, mark=None):
        self.table, self.key_type, self.space = table, key_type, space_for(key_type, tz, encoding)
        self.mark = mark  # an id table's sequence and largest key (widths.IdMark)
        self.partitions: list[Partition] = []
        self.managed: set = set()
        self.rows: dict[int, bool] = {}

    def add(self, start, end, *, managed: bool = True, rows: bool = False, name: Optional[str] = None) -> Partition:
        oid = 1000 + len(self.partitions)
        p = Partition(oid, TableRef(self.table.schema, name or f"{self.table.name}_p{oid}"), Bounds(start, end), 0)
        self.partitions.append(p)
        self.rows[oid] = rows
        if managed:
            self.managed.add((self.space.to_log(start), self.space.to_log(end)))
        return p

    def state(self, configured_for: Optional[TableSpec] = None) -> TableState:
        """The table as the catalog would show it; configured_for: as if apply had written that spec's config."""
        from partman.planner import desired_config

        return TableState(
            self.table,
            oid=1,
            strategy="range",
            key_columns=("start_time",),
            key_type_name=self.key_type.value,
            partitions=tuple(sorted(self.partitions, key=lambda p: p.bounds.start)),
            managed=frozenset(self.managed),
            config=desired_config(configured_for) if configured_for else None,
            id_mark=self.mark,
        )

    def snapshot(self, configured_for: Optional[TableSpec] = None) -> Snapshot:
        # As the catalog reads it (catalog._taken): the partitions' own names are taken.
        return Snapshot(tables={self.table: self.state(configured_for)}, has_rows=dict(self.rows),
                        taken_names=frozenset(p.ref for p in self.partitions))


def write_spec(directory: Path, data: dict[str, Any], name: str = "bookings.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def spec_data(table: str = "public.bookings", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "table": table,
        "partition_key": "start_time",
        "interval": "monthly",
        "premake": "3 months",
        "columns": [
            {"name": "id", "type": "bigint", "identity": "always"},
            {"name": "start_time", "type": "timestamptz", "not_null": True},
            {"name": "note", "type": "text"},
        ],
        "primary_key": ["id", "start_time"],
        "environments": {"test": {}},
    }
    data.update(overrides)
    return data
