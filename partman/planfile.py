"""Saved plans: the plan file a pull request reviews and a deploy applies, and what moved since it was made."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from . import __version__
from .errors import SpecError
from .plan import Plan
from .spec import TableSpec

KIND = "partman-plan"


@dataclass(frozen=True)
class Target:
    """Which database a plan is for; never a password."""

    env: str
    database: str
    host: Optional[str]
    port: Optional[int]

    def describe(self) -> str:
        where = f"{self.host}:{self.port}" if self.host else "the default server"
        return f"database {self.database} on {where} (env {self.env})"


def target_of(conn: Any, env: str) -> Target:
    database, addr, port = conn.execute("SELECT current_database(), host(inet_server_addr()), inet_server_port()").fetchone()
    # A Unix-socket connection has no server address: name the socket directory the client used instead.
    return Target(env, database, addr or conn.info.host, port or int(conn.info.port))


@dataclass(frozen=True)
class SavedPlan:
    plan: Plan
    specs: tuple[TableSpec, ...]
    target: Target
    plan_id: str
    partman_version: str = __version__
    project: Optional[str] = None  # the project file, relative to the plan file's directory (see locate_project)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "partman_version": self.partman_version,
            "plan_id": self.plan_id,
            "target": self.target.__dict__,
            "specs": [s.to_dict(with_source=True) for s in self.specs],
            "spec_fingerprints": {str(s.table): s.fingerprint() for s in self.specs},
            "observed": {str(t.table): t.observed for t in self.plan.tables},
            "plan": self.plan.to_dict(saved=True),
            "project": self.project,
        }


def new(plan: Plan, specs: list[TableSpec], target: Target) -> SavedPlan:
    return SavedPlan(plan, tuple(specs), target, str(uuid.uuid4()))


def write(saved: SavedPlan, path: Path, project_file: Optional[Path] = None) -> None:
    """Atomically: a reader never sees half a plan. The project file is recorded relative to the plan, so
    `partman apply plan.json` finds its environments from any directory, as long as the two move together."""
    from dataclasses import replace

    from .files import write_atomically

    if project_file is not None:
        saved = replace(saved, project=os.path.relpath(project_file.resolve(), path.resolve().parent))
    write_atomically(path, json.dumps(saved.to_dict(), indent=2, sort_keys=True) + "\n")


def locate_project(path: Path, saved: SavedPlan) -> Optional[Path]:
    """The project file the plan was made with, if it is still where the plan says."""
    if not saved.project:
        return None
    candidate = path.resolve().parent / saved.project
    return candidate if candidate.is_file() else None


def read(path: Path) -> SavedPlan:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}:{exc.lineno}: not a partman plan file ({exc.msg})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise SpecError(f"{path}: not a partman plan file (made with partman plan --out)")
    if data["partman_version"] != __version__:
        raise SpecError(
            f"{path}: made by partman {data['partman_version']}, this is {__version__}; run plan again with this version"
        )
    specs = tuple(TableSpec.from_dict(s) for s in data["specs"])
    for s in specs:
        if data["spec_fingerprints"].get(str(s.table)) != s.fingerprint():
            raise SpecError(f"{path}: the spec of {s.table} in the file was altered after the plan was made")
    return SavedPlan(
        plan=Plan.from_dict(data["plan"], data["observed"]),
        specs=specs,
        target=Target(**data["target"]),
        plan_id=data["plan_id"],
        partman_version=data["partman_version"],
        project=data.get("project"),
    )


def what_moved(table: str, saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Each difference between the state a plan was made from and the state now, as a sentence."""
    if saved == now:
        return []
    if saved.get("oid") != now.get("oid"):
        if now.get("oid") is None:
            return [f"{table} was dropped since the plan was made"]
        return [f"{table} was {'created' if saved.get('oid') is None else 'dropped and created again'} since the plan was made"]
    moved = []
    before = {p["name"]: p for p in saved.get("partitions", [])}
    after = {p["name"]: p for p in now.get("partitions", [])}
    for name in sorted(after.keys() - before.keys()):
        moved.append(f"{name} was created since the plan was made")
    for name in sorted(before.keys() - after.keys()):
        moved.append(f"{name} was dropped or detached since the plan was made")
    for name in sorted(before.keys() & after.keys()):
        a, b = before[name], after[name]
        if (a["oid"], a["from"], a["to"]) != (b["oid"], b["from"], b["to"]):
            moved.append(f"{name} was replaced since the plan was made")
    if (saved.get("default") or {}).get("oid") != (now.get("default") or {}).get("oid"):
        moved.append(f"the default partition of {table} changed since the plan was made")
    for name, had in saved.get("presence", {}).items():
        has = now.get("presence", {}).get(name, had)
        if had is not has:
            moved.append(f"{name} {'now holds rows' if has else 'is empty now'}; it did not when the plan was made")
    if saved.get("log_high_water") != now.get("log_high_water"):
        moved.append(f"partition_log of {table} has new entries (another run changed it)")
    if saved.get("config") != now.get("config"):
        moved.append(f"partition_config of {table} changed since the plan was made")
    if saved.get("mark_slot") != now.get("mark_slot"):
        moved.append(f"the ids of {table} moved from the slot at {saved.get('mark_slot')} to the one at"
                     f" {now.get('mark_slot')} since the plan was made")
    if saved.get("survey") != now.get("survey"):
        moved.append(f"what depends on {table} (indexes, constraints, foreign keys, views, triggers, policies, grants)"
                     " changed since the conversion was planned")
    if not moved:
        from deepdiff import DeepDiff

        paths = sorted(DeepDiff(saved, now, ignore_order=True).affected_root_keys)
        moved.append(f"{table}: {', '.join(map(str, paths)) or 'its catalog state'} changed since the plan was made")
    return moved
