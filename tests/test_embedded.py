"""The README's first command: apply the example specs to the embedded dev database, twice."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path):
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    shutil.copy(ROOT / "partman.yaml", tmp_path / "partman.yaml")
    yield tmp_path
    data = tmp_path / ".partman" / "pgdata"
    if (data / "postmaster.pid").exists():
        from pgcluster import embedded_bindir

        # The embedded server outlives partman on purpose (the next run reuses it); the test stops it.
        owner = data.stat().st_uid
        subprocess.run([str(embedded_bindir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       user=owner, check=False, capture_output=True)


def partman(project: Path, *args: str) -> subprocess.CompletedProcess:
    env_free = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("PG", "PARTMAN_"))}
    return subprocess.run([sys.executable, "-m", "partman", *args], cwd=project, capture_output=True, text=True, env=env_free)


def test_apply_on_the_embedded_dev_database_twice_says_no_changes_the_second_time(project):
    first = partman(project, "apply", "specs/", "--env", "dev", "--auto-approve")
    assert first.returncode == 0, first.stderr
    for table in ("amenity_booking", "audit_events", "order_lines", "sensor_readings"):  # time, UUIDv7, id, epoch ms
        assert f"+ create table public.{table}" in first.stdout
    assert "0 detached, 0 dropped in 4 tables." in first.stdout
    second = partman(project, "apply", "specs/", "--env", "dev", "--auto-approve")
    assert second.returncode == 0, second.stderr
    assert second.stdout.rstrip().endswith("No changes.")
