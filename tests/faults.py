"""Fault injection for partman runs: deterministic kills, backend terminations and pauses at chosen statement
boundaries of a real `partman` process.

What this module owns
- `run_partman()`: runs the CLI as a real subprocess, `[sys.executable, "-c", BOOTSTRAP, *args]`, in a given
  working directory, with the fault plan in the environment variable `PARTMAN_TEST_FAULT`. The bootstrap
  installs the fault plan (`install_from_env()`) and then calls `partman.cli.main()`; without the variable the
  process is an ordinary `partman` run.
- `count_boundaries()`: one run in count mode; returns the run and the list of its boundaries (so a test can
  enumerate every one of them and name the statement at each).
- `Paused`: a run stopped at a boundary until the test releases it, so a test can interleave another session's
  change at an exact point.
- `Zygote`: the same runs, each a real process forked from one that imported partman once (about 0.25 s less
  per run; for tests that make hundreds of runs).
- `run_in_process()`: an unfaulted run inside the test process, captured like a subprocess (no traceback is lost).
- `distinct()`: which boundaries a mode can tell apart (the rest are the same point), for exhaustive sweeps.
- `spec()`: builds the value of `PARTMAN_TEST_FAULT`.

What a boundary is
Only the connection partman opens (`partman.session.connect` is wrapped) is watched; the harness's own side
connections are not. A large read's companion connection is not opened under the harness (so a run's boundaries
stay in one deterministic order); parallel apply's workers are, so the fault tests run `--parallelism 1`. A boundary is the moment just before partman hands psycopg something to send, or just after
a COMMIT returned:
- `statement`: every `Cursor.execute` (so `conn.execute()`, a cursor's `execute()`, and each statement queued
  in a `conn.pipeline()`; in a pipeline, statements queued before it may not have reached the server yet);
- `begin`: `conn.transaction()` entering (`BEGIN`, or `SAVEPOINT` when nested);
- `commit`: a transaction block about to end successfully (`COMMIT`, or `RELEASE SAVEPOINT` when nested);
- `committed`: just after an outer `COMMIT` returned (the transaction is durable, nothing else sent yet);
- `rollback`: a transaction block about to end with an exception (`ROLLBACK`; only on error paths).
Boundaries are numbered from 1 in the order they are reached. The text of a boundary is its SQL (whitespace
collapsed) for a statement, and `BEGIN` / `COMMIT` / `COMMITTED` / `ROLLBACK` (or the savepoint forms) followed,
for the last three, by ` <- ` and the statements of that transaction (each cut to 120 characters), so a commit
can be chosen by what its transaction did. With `--now` pinned and no other session interfering, a run's
boundaries are the same every time, so the k-th boundary of a count run is the k-th boundary of a faulted run.

`PARTMAN_TEST_FAULT` grammar
    count:<file>                    append one line per boundary to <file>: "k<TAB>kind<TAB>text"
    kill:<where>                    SIGKILL the partman process itself just before that boundary: nothing in
                                    Python runs afterwards (a real crash; the server sees the socket close)
    terminate:<where>               from a side connection, pg_terminate_backend(partman's backend pid), waiting
                                    until that backend is gone; then partman carries on and meets the dead
                                    connection at that very statement
    pause:<where>:<prefix>          write <prefix>.paused (JSON: k, kind, text, backend_pid) and wait until
                                    <prefix>.go exists (after 120 s without it: exit 99), then carry on
<where> is either
    <k>                             the k-th boundary (1-based)
    match=<text>[:<n>]              the n-th (default 1) boundary whose text contains <text> (case-sensitive);
                                    `&&` joins texts that must all occur: `match=COMMITTED&&ATTACH PARTITION:1`
                                    is just after the first transaction with an ATTACH PARTITION committed.
                                    <text> may contain ':' but must not end with ':<digits>'.
Every mode but count also honours `PARTMAN_TEST_FAULT_HIT=<file>`: the boundary that fired (k, kind, text) is
written there before the fault acts, so a test can tell that it fired and where. A fault fires at most once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

ENV = "PARTMAN_TEST_FAULT"
HIT_ENV = "PARTMAN_TEST_FAULT_HIT"
PAUSE_LIMIT_S = 120.0
TESTS_DIR = Path(__file__).resolve().parent

# SIGINT gets Python's own handler, as in a terminal: a test run started in the background (where the shell
# ignores SIGINT and children inherit that) would otherwise make partman deaf to the Ctrl-C the tests send.
BOOTSTRAP = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler);"
    " sys.path.insert(0, {tests!r}); import faults; faults.install_from_env();"
    " from partman.cli import main; main(sys.argv[1:])"
).format(tests=str(TESTS_DIR))


# ---------------------------------------------------------------------------------------------------------------
# The test side


@dataclass
class Run:
    code: int  # the exit code; -9 when killed by SIGKILL
    out: str
    err: str
    seconds: float
    hit: Optional[dict] = None  # the boundary the fault fired at (None: it never fired)

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL


@dataclass(frozen=True)
class Boundary:
    k: int
    kind: str  # statement | begin | commit | committed | rollback
    text: str

    def short(self, width: int = 160) -> str:
        head = self.text if len(self.text) <= width else self.text[: width - 1] + "…"
        return f"#{self.k} {self.kind}: {head}"


def spec(mode: str, k: Optional[int] = None, *, match: Optional[str] = None, nth: int = 1,
         path: Optional[os.PathLike] = None) -> str:
    """The value of PARTMAN_TEST_FAULT: spec("kill", 37), spec("terminate", match="DETACH PARTITION", nth=2),
    spec("pause", match="COMMITTED&&ATTACH PARTITION", path=tmp / "p"), spec("count", path=tmp / "b.tsv")."""
    if mode == "count":
        return f"count:{path}"
    if (k is None) == (match is None):
        raise ValueError("give exactly one of k and match")
    where = str(k) if k is not None else f"match={match}:{nth}"
    if mode == "pause":
        if path is None:
            raise ValueError("pause needs a path prefix")
        return f"pause:{where}:{path}"
    if mode not in ("kill", "terminate"):
        raise ValueError(f"unknown fault mode {mode!r}")
    return f"{mode}:{where}"


def _env(database_url: Optional[str], fault: Optional[str], hit: Optional[Path], extra: Optional[dict]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (ENV, HIT_ENV)}
    env.pop("PARTMAN_ENV", None)
    env["NO_COLOR"] = "1"
    if database_url is not None:
        env["PARTMAN_DATABASE_URL"] = database_url
    if fault is not None:
        env[ENV] = fault
    if hit is not None:
        env[HIT_ENV] = str(hit)
    env.update(extra or {})
    return env


def command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-c", BOOTSTRAP, *map(str, args)]


def run_partman(args: Sequence[str], *, cwd: os.PathLike, database_url: Optional[str] = None,
                fault: Optional[str] = None, env: Optional[dict] = None, timeout: float = 120.0) -> Run:
    """partman as a real process in cwd; the database URL goes in PARTMAN_DATABASE_URL."""
    hit = Path(cwd) / f".fault-hit-{os.getpid()}-{time.monotonic_ns()}" if fault and not fault.startswith("count:") else None
    t0 = time.monotonic()
    proc = subprocess.run(command(args), cwd=cwd, env=_env(database_url, fault, hit, env), capture_output=True,
                          text=True, timeout=timeout, check=False)
    return Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0, _read_hit(hit))


ZYGOTE = (
    "import sys; sys.path.insert(0, {tests!r}); import faults; faults._zygote_main()"
).format(tests=str(TESTS_DIR))


class Zygote:
    """Runs like run_partman(), each in its own process, forked from one process that has imported partman
    (and psycopg, typer, …) once: about a quarter of a second less per run than a new interpreter, for tests
    that make hundreds of runs. The child is a real, separate process (a kill is a real crash; its stdout and
    stderr are its own); what it does not repeat is the interpreter's start-up and the imports. The code it runs
    is the code as it was when the zygote started.

        with faults.Zygote() as z:
            run = z.run(["apply", ...], cwd=tmp, database_url=url, fault=faults.spec("kill", 37))"""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self._buffer = b""

    def __enter__(self) -> "Zygote":
        env = _env(None, None, None, None)
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, cwd=TESTS_DIR, bufsize=0)
        ready = self._line(60)
        if ready.strip() != "ready":
            raise RuntimeError(f"the fault zygote did not start: {ready!r}")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def run(self, args: Sequence[str], *, cwd: os.PathLike, database_url: Optional[str] = None,
            fault: Optional[str] = None, env: Optional[dict] = None, timeout: float = 120.0) -> Run:
        assert self.proc is not None, "use Zygote as a context manager"
        stem = Path(cwd) / f".fault-run-{os.getpid()}-{time.monotonic_ns()}"
        hit = Path(f"{stem}.hit") if fault and not fault.startswith("count:") else None
        out, err = Path(f"{stem}.out"), Path(f"{stem}.err")
        request = {"args": list(map(str, args)), "cwd": str(cwd), "env": _env(database_url, fault, hit, env),
                   "out": str(out), "err": str(err)}
        t0 = time.monotonic()
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        child = json.loads(self._line(timeout))["pid"]
        try:
            code = json.loads(self._line(timeout))["code"]
        except TimeoutError:
            os.kill(child, signal.SIGKILL)
            self._line(10)
            raise
        run = Run(code, out.read_text(errors="replace"), err.read_text(errors="replace"), time.monotonic() - t0,
                  _read_hit(hit))
        out.unlink()
        err.unlink()
        return run

    def _line(self, timeout: float) -> str:
        import select

        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"no answer from the fault zygote within {timeout:g} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("the fault zygote died")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()


def _zygote_main() -> None:
    """The zygote: import everything a run needs, then fork one child per request read from stdin."""
    import importlib
    import pkgutil

    import partman

    for module in pkgutil.walk_packages(partman.__path__, "partman."):
        if module.name.endswith("__main__"):
            continue  # running it is what `python -m partman` does
        try:
            importlib.import_module(module.name)
        except Exception:  # noqa: BLE001 - the child imports it again and fails there, as a fresh process would
            pass
    import psycopg  # noqa: F401
    import typer  # noqa: F401

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _zygote_child(request)
        sys.stdout.write(json.dumps({"pid": pid}) + "\n")
        sys.stdout.flush()
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
        sys.stdout.flush()


def _zygote_child(request: dict) -> None:
    """In the forked child: become the run the request describes; never returns."""
    import traceback

    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, request["out"]), (2, request["err"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        try:
            install_from_env()
            from partman.cli import main

            main(request["args"])
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                sys.stderr.write(f"{exc.code}\n")
        except BaseException:  # noqa: BLE001 - printed as the interpreter would print it
            traceback.print_exc()
        finally:
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
    finally:
        os._exit(code)


def run_in_process(args: Sequence[str], *, cwd: os.PathLike, database_url: Optional[str] = None) -> Run:
    """The same CLI, unfaulted, in this process (no interpreter start-up: about 0.25 s less than run_partman).
    What a subprocess would print is captured alike: stdout, stderr, psycopg's log warnings (which a real
    process prints on stderr), and an exception escaping main() as a "Traceback" on stderr with exit 1."""
    import contextlib
    import io
    import logging
    import traceback

    from partman.cli import main

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setLevel(logging.WARNING)
    psycopg_log = logging.getLogger("psycopg")
    saved_env = {k: os.environ.get(k) for k in ("PARTMAN_DATABASE_URL", "PARTMAN_ENV", ENV, HIT_ENV, "NO_COLOR")}
    saved_cwd = os.getcwd()
    t0 = time.monotonic()
    code = 0
    try:
        for k in saved_env:
            os.environ.pop(k, None)
        os.environ["NO_COLOR"] = "1"
        if database_url is not None:
            os.environ["PARTMAN_DATABASE_URL"] = database_url
        os.chdir(cwd)
        psycopg_log.addHandler(handler)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(map(str, args)))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # noqa: BLE001 - what a real process would die of, shown as it would show it
                err.write(traceback.format_exc())
                code = 1
    finally:
        psycopg_log.removeHandler(handler)
        os.chdir(saved_cwd)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Run(code, out.getvalue(), err.getvalue(), time.monotonic() - t0)


def _read_hit(hit: Optional[Path]) -> Optional[dict]:
    if hit is None or not hit.exists():
        return None
    try:
        return json.loads(hit.read_text())
    finally:
        hit.unlink()


def read_boundaries(path: os.PathLike) -> list[Boundary]:
    out = []
    for line in Path(path).read_text().splitlines():
        k, kind, text = line.split("\t", 2)
        out.append(Boundary(int(k), kind, text))
    return out


def count_boundaries(args: Sequence[str], *, cwd: os.PathLike, database_url: Optional[str] = None,
                     env: Optional[dict] = None) -> tuple[Run, list[Boundary]]:
    """One run in count mode: what it did, and every boundary it passed, in order."""
    path = Path(cwd) / f".fault-count-{os.getpid()}-{time.monotonic_ns()}.tsv"
    run = run_partman(args, cwd=cwd, database_url=database_url, fault=spec("count", path=path), env=env)
    try:
        return run, read_boundaries(path) if path.exists() else []
    finally:
        path.unlink(missing_ok=True)


def distinct(boundaries: Sequence[Boundary], mode: str) -> list[tuple[Boundary, list[Boundary]]]:
    """The boundaries where a fault of this mode can end differently, each with the boundaries it stands for
    (those that are the same point for that mode, itself included).
    - `committed` is the same point as the next boundary, in both modes: nothing is sent in between (it exists
      to be matched, e.g. by a pause).
    - kill: what the server keeps of a killed run is what was durable before the kill (committed transactions,
      autocommit statements; session state dies with the connection), so every boundary inside an outer
      transaction (BEGIN, its statements, savepoints) is the same point as the moment just before its COMMIT,
      the one kept. Kept: every statement outside a transaction and every COMMIT.
    - terminate: every boundary but `committed` is kept: where the dead connection is met decides which
      code path partman takes."""
    groups: list[tuple[Boundary, list[Boundary]]] = []
    waiting: list[Boundary] = []
    inside = False
    for b in boundaries:
        waiting.append(b)
        if b.kind == "begin" and b.text == "BEGIN":
            inside = True
        outer_end = b.kind in ("commit", "rollback") and b.text.startswith(("COMMIT <-", "ROLLBACK <-"))
        if mode == "kill":
            keep = outer_end or (b.kind == "statement" and not inside)
        else:
            keep = b.kind != "committed"
        if outer_end:
            inside = False
        if keep:
            groups.append((b, waiting))
            waiting = []
    return groups


class Paused:
    """A partman run stopped at one boundary until release():

        with Paused(["apply", ...], cwd=tmp, database_url=url, match="COMMITTED&&ATTACH PARTITION") as p:
            ...  # partman is blocked just after that commit; p.boundary says where, p.backend_pid who
        p.run   # the finished Run (exit code, stdout, stderr)

    Leaving the block releases the run (if not yet released) and waits for it to end."""

    def __init__(self, args: Sequence[str], *, cwd: os.PathLike, database_url: Optional[str] = None,
                 k: Optional[int] = None, match: Optional[str] = None, nth: int = 1, env: Optional[dict] = None,
                 timeout: float = 60.0):
        self.prefix = Path(cwd) / f".fault-pause-{os.getpid()}-{time.monotonic_ns()}"
        self.fault = spec("pause", k, match=match, nth=nth, path=self.prefix)
        self.args, self.cwd, self.database_url, self.env, self.timeout = list(args), cwd, database_url, env, timeout
        self.proc: Optional[subprocess.Popen] = None
        self.boundary: Optional[Boundary] = None
        self.backend_pid: Optional[int] = None
        self.run: Optional[Run] = None
        self._t0 = 0.0

    def __enter__(self) -> "Paused":
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(command(self.args), cwd=self.cwd, env=_env(self.database_url, self.fault, None, self.env),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        marker = Path(f"{self.prefix}.paused")
        deadline = time.monotonic() + self.timeout
        while not marker.exists():
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                self.run = Run(self.proc.returncode, out, err, time.monotonic() - self._t0)
                raise AssertionError(f"partman ended (exit {self.proc.returncode}) before reaching the pause {self.fault}:\n{err}")
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.communicate()
                raise AssertionError(f"partman never reached the pause {self.fault}")
            time.sleep(0.01)
        data = json.loads(marker.read_text())
        self.boundary = Boundary(data["k"], data["kind"], data["text"])
        self.backend_pid = data["backend_pid"]
        return self

    def release(self) -> None:
        Path(f"{self.prefix}.go").touch()

    def __exit__(self, *exc) -> None:
        self.release()
        assert self.proc is not None
        try:
            out, err = self.proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.run = Run(self.proc.returncode, out, err, time.monotonic() - self._t0)
        for suffix in (".paused", ".go"):
            Path(f"{self.prefix}{suffix}").unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------------
# The partman side: installed by the bootstrap in the partman process


@dataclass
class _Plan:
    mode: str  # count | kill | terminate | pause
    k: Optional[int] = None
    match: Optional[tuple[str, ...]] = None
    nth: int = 1
    path: Optional[str] = None


def parse(text: str) -> _Plan:
    mode, sep, rest = text.partition(":")
    if not sep or mode not in ("count", "kill", "terminate", "pause"):
        raise ValueError(f"{ENV}={text!r}: expected count:, kill:, terminate: or pause:")
    if mode == "count":
        return _Plan("count", path=rest)
    path = None
    if mode == "pause":
        rest, sep, path = rest.rpartition(":")
        if not sep or not path:
            raise ValueError(f"{ENV}={text!r}: pause needs :<prefix> at the end")
    if rest.isdigit():
        return _Plan(mode, k=int(rest), path=path)
    if rest.startswith("match="):
        body = rest[len("match="):]
        nth = 1
        m = re.search(r":(\d+)$", body)
        if m:
            body, nth = body[: m.start()], int(m.group(1))
        parts = tuple(p for p in body.split("&&") if p)
        if not parts or nth < 1:
            raise ValueError(f"{ENV}={text!r}: empty match or n < 1")
        return _Plan(mode, match=parts, nth=nth, path=path)
    raise ValueError(f"{ENV}={text!r}: <where> is <k> or match=<text>[:<n>]")


def _one_line(text: str, width: Optional[int] = None) -> str:
    text = " ".join(text.split())
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


class _Tracker:
    """Counts the boundaries of partman's connection(s) and fires the fault plan at the chosen one."""

    def __init__(self, plan: _Plan, hit_path: Optional[str]):
        self.plan, self.hit_path = plan, hit_path
        self.k = 0
        self.matched = 0
        self.fired = False
        self.txn: list[str] = []
        self.url: Optional[str] = None
        self.backend_pid: Optional[int] = None
        self.log = open(plan.path, "a", encoding="utf-8") if plan.mode == "count" else None

    def reach(self, kind: str, text: str) -> None:
        self.k += 1
        if kind == "statement":
            self.txn.append(_one_line(text, 120))
        elif kind in ("commit", "committed", "rollback"):
            text = f"{text} <- {' ; '.join(self.txn)}"
        text = _one_line(text)
        if self.log is not None:
            self.log.write(f"{self.k}\t{kind}\t{text}\n")
            self.log.flush()
            return
        if self.fired or not self._chosen(text):
            return
        self.fired = True
        self._fire(kind, text)

    def _chosen(self, text: str) -> bool:
        if self.plan.k is not None:
            return self.k == self.plan.k
        if all(part in text for part in self.plan.match):
            self.matched += 1
            return self.matched == self.plan.nth
        return False

    def _fire(self, kind: str, text: str) -> None:
        where = {"k": self.k, "kind": kind, "text": text, "backend_pid": self.backend_pid}
        if self.hit_path:
            with open(self.hit_path, "w", encoding="utf-8") as f:
                json.dump(where, f)
        if self.plan.mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.plan.mode == "terminate":
            import psycopg

            with psycopg.connect(self.url, autocommit=True, application_name="partman-fault") as side:
                side.execute("SELECT pg_terminate_backend(%s, 10000)", (self.backend_pid,))
        elif self.plan.mode == "pause":
            prefix = self.plan.path
            tmp = f"{prefix}.paused.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(where, f)
            os.replace(tmp, f"{prefix}.paused")
            deadline = time.monotonic() + PAUSE_LIMIT_S
            while not os.path.exists(f"{prefix}.go"):
                if time.monotonic() > deadline:
                    sys.stderr.write(f"faults: the pause at boundary {self.k} was never released\n")
                    sys.stderr.flush()
                    os._exit(99)
                time.sleep(0.005)


def _query_text(query, conn) -> str:
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    if isinstance(query, str):
        return query
    try:
        return query.as_string(conn)
    except Exception:  # noqa: BLE001 - a label is best effort; never change what partman does
        return repr(query)


def install_from_env() -> None:
    """Install the fault plan of PARTMAN_TEST_FAULT (if set) in this process, before partman runs."""
    text = os.environ.get(ENV)
    if not text:
        return
    tracker = _Tracker(parse(text), os.environ.get(HIT_ENV))

    import psycopg
    from psycopg import pq

    import partman.catalog as catalog
    import partman.session as session

    # One session's boundaries, in one order: a large read's companion connection (partman/companion.py) would add
    # its own statements, interleaved as the threads happen to run. The companion has its own tests.
    catalog.COMPANION_FROM = float("inf")
    watched: set[int] = set()

    class CountingCursor(psycopg.Cursor):
        def execute(self, query, params=None, **kwargs):
            tracker.reach("statement", _query_text(query, self.connection))
            return super().execute(query, params, **kwargs)

        def executemany(self, query, params_seq, **kwargs):
            tracker.reach("statement", _query_text(query, self.connection))
            return super().executemany(query, params_seq, **kwargs)

        def stream(self, query, params=None, **kwargs):
            tracker.reach("statement", _query_text(query, self.connection))
            return super().stream(query, params, **kwargs)

    original_connect = session.connect

    def connect(url: str):
        conn = original_connect(url)
        conn.cursor_factory = CountingCursor
        watched.add(id(conn))
        tracker.url, tracker.backend_pid = url, conn.info.backend_pid
        return conn

    session.connect = connect

    enter, exit_ = psycopg.Transaction.__enter__, psycopg.Transaction.__exit__

    def tx_enter(self):
        if id(self._conn) in watched:
            outer = self._conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
            if outer:
                tracker.txn = []
            tracker.reach("begin", "BEGIN" if outer else "SAVEPOINT")
        return enter(self)

    def tx_exit(self, exc_type, exc_val, exc_tb):
        if id(self._conn) not in watched:
            return exit_(self, exc_type, exc_val, exc_tb)
        outer = bool(getattr(self, "_outer_transaction", True))
        ok = exc_val is None and not self.force_rollback
        if ok:
            tracker.reach("commit", "COMMIT" if outer else "RELEASE SAVEPOINT")
        else:
            tracker.reach("rollback", "ROLLBACK" if outer else "ROLLBACK TO SAVEPOINT")
        result = exit_(self, exc_type, exc_val, exc_tb)
        if ok and outer:
            tracker.reach("committed", "COMMITTED")
        return result

    psycopg.Transaction.__enter__ = tx_enter
    psycopg.Transaction.__exit__ = tx_exit
