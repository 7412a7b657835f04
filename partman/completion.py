"""Shell completion's answers: environments from the project file, tables from the spec files on the line.
Completion runs on every Tab, so it reads files quietly and never fails: a broken file completes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def envs(incomplete: str) -> list[str]:
    from . import project as projects

    try:
        names = projects.load_project(projects.find([])).env_names or []
    except Exception:  # noqa: BLE001 - a half-written partman.yaml must not break the shell
        return []
    return [name for name in names if name.startswith(incomplete)]


def tables(paths: Sequence[Path], incomplete: str) -> list[str]:
    from .spec import spec_files
    from .yamldoc import load

    names = []
    try:
        for file in spec_files([Path(p) for p in paths] or [Path("specs")]):
            data = load(file).data
            if isinstance(data, dict) and isinstance(data.get("table"), str):
                names.append(data["table"])
    except Exception:  # noqa: BLE001 - completing is best effort
        pass
    return sorted(name for name in set(names) if name.startswith(incomplete))
