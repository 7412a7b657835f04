"""The test setup itself: the unprivileged server user is made safely when several processes ask at once."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

import pgcluster

N = 4
NAME = "partman_fake_user"


def fake_useradd(tmp_path: Path) -> list[str]:
    """A useradd that makes `made/` (atomically, as the real one adds a passwd line) and logs each call: the first
    caller succeeds, every later one exits 9 "already exists", as useradd does."""
    script = tmp_path / "useradd"
    script.write_text(
        "#!/bin/sh\n"
        f'name="$1"; dir="{tmp_path}"\n'
        'if mkdir "$dir/made" 2>/dev/null; then echo made >> "$dir/calls"; exit 0; fi\n'
        'echo exists >> "$dir/calls"; echo "useradd: user \'$name\' already exists" >&2; exit 9\n'
    )
    script.chmod(0o755)
    return [str(script)]


def made(tmp_path: Path, name: str) -> bool:
    return (tmp_path / "made").is_dir()


def first_look_misses(tmp_path: Path):
    """Every process's first look finds no user (they all looked before anyone made it); later looks are real."""
    looked = []

    def exists(name: str) -> bool:
        looked.append(name)
        return len(looked) > 1 and made(tmp_path, name)

    return exists


def _child(queue, barrier, useradd, exists, lock):
    barrier.wait()
    try:
        queue.put(("ok", pgcluster.ensure_user(NAME, useradd, exists=exists, lock=lock)))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, whatever it is
        queue.put(("raised", repr(exc)))


def run_at_once(useradd, exists_for, lock) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("fork")
    queue, barrier = ctx.Queue(), ctx.Barrier(N)
    procs = [ctx.Process(target=_child, args=(queue, barrier, useradd, exists_for(), lock)) for _ in range(N)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=20) for _ in procs]
    for p in procs:
        p.join(timeout=20)
    return results


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls").read_text().split()


def test_processes_asking_at_once_share_one_useradd_under_the_lock(tmp_path):
    useradd = fake_useradd(tmp_path)
    results = run_at_once(useradd, lambda: (lambda name: made(tmp_path, name)), tmp_path / "user.lock")
    assert results == [("ok", NAME)] * N
    assert calls(tmp_path) == ["made"]


def test_already_exists_from_a_racing_useradd_is_success_after_a_second_look(tmp_path):
    # No shared lock (another entry point, or another /tmp): every process runs useradd; all but one get exit 9.
    useradd = fake_useradd(tmp_path)
    results = run_at_once(useradd, lambda: first_look_misses(tmp_path), None)
    assert results == [("ok", NAME)] * N
    assert sorted(calls(tmp_path)) == ["exists"] * (N - 1) + ["made"]


def test_a_useradd_that_fails_otherwise_or_makes_no_user_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="exited 1"):
        pgcluster.ensure_user(NAME, ["false"], exists=lambda name: False, lock=tmp_path / "lock")
    with pytest.raises(RuntimeError, match="exited 9"):
        pgcluster.ensure_user(NAME, ["sh", "-c", "exit 9", "-"], exists=lambda name: False, lock=tmp_path / "lock")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root makes the test user")
def test_the_real_test_user_exists_once_the_run_has_started():
    # The controller made it before any test (tests/prepare.py); asking again changes nothing.
    assert pgcluster.ensure_user() == pgcluster.TEST_USER
