"""What the test command prepares before any test runs (in the xdist controller, once).

PostgreSQL 15 tests need Debian's postgresql-15 and postgresql-client-15 (the second server version) and
postgresql-15-plpgsql-check (tests/test_sql_lint.py) and postgresql-15-partman (pg_partman 4.7.2, for
tests/test_import_pg_partman.py). As root with apt-get, the missing ones are installed;
otherwise the run stops at once with one line saying what to install. As root the servers run as an unprivileged
user, made here once (pgcluster.ensure_user stays safe for other entry points)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Optional, Sequence

import pytest

import pgcluster

PLPGSQL_CHECK_CONTROL = Path("/usr/share/postgresql/15/extension/plpgsql_check.control")
PG_PARTMAN_CONTROL = Path("/usr/share/postgresql/15/extension/pg_partman.control")
EXIT_CODE = 4  # the run cannot start: pytest's "usage error", never a test result


def missing_packages() -> list[str]:
    """The Debian packages the PostgreSQL 15 tests need that are not installed, in install order."""
    bindir = pgcluster.debian_bindir()
    need = []
    if bindir is None:
        need.append("postgresql-15")
    if not (bindir or pgcluster.DEBIAN_PG15_BINDIR).joinpath("psql").exists():
        need.append("postgresql-client-15")
    if not PLPGSQL_CHECK_CONTROL.exists():
        need.append("postgresql-15-plpgsql-check")
    if not PG_PARTMAN_CONTROL.exists():
        need.append("postgresql-15-partman")
    return need


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")]
    return (errors or lines or [""])[-1]


def apt_install(packages: Sequence[str]) -> Optional[str]:
    """apt-get update, then install `packages`; None on success, else why not (one line)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", "DPkg::Lock::Timeout=300"]  # another apt run holding the lock is waited for, not a failure
    update = subprocess.run(["apt-get", *wait, "update", "-qq"], capture_output=True, text=True, env=env)
    install = subprocess.run(["apt-get", *wait, "install", "-y", "-qq", *packages], capture_output=True, text=True,
                             env=env, stdin=subprocess.DEVNULL)
    if install.returncode == 0:
        return None
    why = _last_line(install.stderr) or _last_line(install.stdout)
    if update.returncode != 0:
        why = f"{why}; apt-get update: {_last_line(update.stderr)}"
    return f"apt-get install exited {install.returncode}: {why}"


def prepare(servers: Sequence[str], say: Callable[[str], None]) -> None:
    """Make the machine ready for the servers the run tests on; pytest.exit with one line where it cannot."""
    root = os.geteuid() == 0
    if "pg15" in servers:
        need = missing_packages()
        if need:
            names = " ".join(need)
            if not root or shutil.which("apt-get") is None:
                why = "not root" if not root else "no apt-get"
                pytest.exit(f"PostgreSQL 15 tests need {names}, not installable here ({why}): run"
                            f" `apt-get install {names}` as root, or set PARTMAN_TEST_SERVERS=pg18",
                            returncode=EXIT_CODE)
            say(f"partman tests: installing {names} with apt-get for the PostgreSQL 15 tests")
            failed = apt_install(need)
            still = missing_packages()
            if failed or still:
                why = failed or f"still missing after apt-get: {' '.join(still)}"
                pytest.exit(f"PostgreSQL 15 tests need {names}, and installing failed ({why}): run"
                            f" `apt-get install {names}` as root, or set PARTMAN_TEST_SERVERS=pg18",
                            returncode=EXIT_CODE)
    if root and any(s in ("pg15", "pg18") for s in servers):
        try:
            user = pgcluster.ensure_user()
            if "pg18" in servers:  # copied once here if the test user cannot reach the venv's binaries
                pgcluster.runnable_bindir(pgcluster.embedded_bindir(), user)
        except Exception as exc:  # one line, not an internal-error traceback
            pytest.exit(f"cannot prepare the test servers: {exc}", returncode=EXIT_CODE)


def skip_pg15_only_tests(items: Sequence[pytest.Item], servers: Sequence[str]) -> None:
    """tests/test_sql_lint.py runs on PostgreSQL 15 whatever the servers; when the run leaves PostgreSQL 15 out
    (PARTMAN_TEST_SERVERS=pg18, PARTMAN_TEST_DATABASE_URL) and its packages are missing, it is skipped, not failed."""
    if "pg15" in servers:
        return
    need = None
    for item in items:
        if item.path.name == "test_sql_lint.py":
            # pg_partman is not what the lint needs
            need = [p for p in missing_packages() if p != "postgresql-15-partman"] if need is None else need
            if need:
                item.add_marker(pytest.mark.skip(reason=f"PostgreSQL 15 not selected and {' '.join(need)} missing"))
