"""One command's session: the project and environment it works in, the specs, the connection and the clock, and
the refusals that come before anything is read (an unknown --table, a state schema that cannot be, a pinned
clock far from the database's). The CLI builds a Session from its options and hands it to the engine."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from . import project as projects
from .console import OUT, cut
from .errors import CatalogError, SpecError, UsageError
from .spec import DEFAULT_ENV

if TYPE_CHECKING:
    from .lock import Ladder


@dataclass(frozen=True)
class Options:
    """What a command was told about where to work; None means "find it"."""

    paths: Sequence[Path] = ()
    env: Optional[str] = None
    project_file: Optional[Path] = None
    database_url: Optional[str] = None
    state_schema: Optional[str] = None
    now: Optional[str] = None
    tables: Sequence[str] = ()
    ladder: Optional["Ladder"] = None  # default: Ladder()
    parallelism: Optional[int] = None  # apply: tables at once (pool.size caps it); None: pool.size chooses


@dataclass
class Session:
    """Specs, project, an open connection and the clock for one command."""

    options: Options
    project: projects.Project
    env: str
    specs: list
    conn: Any
    state_schema: str
    protected: bool
    now: Optional[datetime] = None
    database_now: Optional[datetime] = None
    pinned: bool = False
    standby: bool = False  # the server is a hot standby in recovery: it reads, and nothing can change there
    url: str = ""  # what conn was opened with: parallel apply opens more alike

    def another(self):
        """One more connection to the same database (a worker of a parallel apply, a large read's companion)."""
        return connect(self.url)

    @property
    def ladder(self) -> "Ladder":
        from .lock import Ladder

        return self.options.ladder or Ladder()

    @classmethod
    def open(cls, options: Options) -> "Session":
        """Load the specs of the environment, connect, and read the database's clock (or pin --now)."""
        from .spec import load_specs

        pinned = parse_now(options.now) if options.now else None
        project = load_project(options)
        env = env_of(project, options.env)
        specs = only(load_specs(options.paths, env, project.env_names), options.tables)
        session = cls.connect(options, project, env, specs)
        session.database_now, session.standby = session.conn.execute("SELECT now(), pg_is_in_recovery()").fetchone()
        session.now, session.pinned = (pinned, True) if pinned else (session.database_now, False)
        return session

    @classmethod
    def connect(cls, options: Options, project: projects.Project, env: str, specs: list) -> "Session":
        settings = project.environments.get(env)
        schema = state_schema(options.state_schema or project.state_schema)
        url = database_url(project, env, options.database_url)
        session = cls(options, project, env, specs, connect(url), schema, bool(settings and settings.protected))
        session.url = url
        return session

    def observe(self, digests: bool = False):
        """The snapshot and the plan, read under the ladder; the plan says whether the clock was pinned."""
        from .observe import observe

        snap, the_plan = observe(self.conn, self.specs, now=self.now, env=self.env, state_schema=self.state_schema,
                                 ladder=self.ladder, digests=digests, another=self.another)
        OUT.debug(f"read {sum(len(t.partitions) for t in snap.tables.values())} partitions of {len(snap.tables)} tables")
        return snap, replace(the_plan, pinned=self.pinned, database_now=self.database_now if self.pinned else None)

    def plan(self, digests: bool = False):
        """digests=True for a plan that apply will carry out: it checks them under each table's lock."""
        return self.observe(digests)[1]

    def on_standby(self, what: str) -> bool:
        """Says, in one line, that this server is a standby and what that means for the command; True if so.
        The same cron job can run on every node of a cluster: on the standbys it does nothing and exits 0."""
        if self.standby:
            OUT.warn(f"{self.target().describe()} is a standby in recovery: {what}")
        return self.standby

    def target(self):
        from .planfile import target_of

        return target_of(self.conn, self.env)


def load_project(options: Options) -> projects.Project:
    return projects.load_project(options.project_file or projects.find(options.paths))


def env_of(project: projects.Project, env: Optional[str]) -> str:
    """--env as given; without it, the project's only environment, or the implicit one when there is no
    project file. A project of several environments must be told which: guessing could be prod."""
    names = project.env_names
    if env:
        if names and env not in names:
            raise SpecError(f"unknown environment '{cut(env)}' (known: {', '.join(names)})")
        return env
    if not names:
        return DEFAULT_ENV
    if len(names) == 1:
        return names[0]
    raise UsageError(f"which environment? pass --env (known: {', '.join(names)}; or set PARTMAN_ENV)")


def database_url(project: projects.Project, env: str, given: Optional[str]) -> str:
    """The connection string; the embedded dev server is started (and said so, once) when the env asks for it."""
    from .redact import redact

    url = projects.database_url(project, env, given)
    if url is None:
        from . import embedded

        url = embedded.url(project.root, on_start=OUT.warn)
    OUT.debug(f"connecting to {redact(url) if url else 'the server libpq PG* variables name'} for env {env}")
    return url


def connect(url: str):
    """An autocommit connection that says it is partman; one line for any failure (faults.py wraps this)."""
    import psycopg

    from .redact import connection_failure, parse_failure

    unparsable = parse_failure(url)
    if unparsable:
        raise CatalogError(unparsable)
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="partman")
    except psycopg.Error as exc:
        raise CatalogError(connection_failure(url, exc)) from None


def state_schema(name: str) -> str:
    """The state schema as given (an identifier, quoted when SQL is composed); never a system schema."""
    if not name or "\x00" in name or len(name.encode()) > 63:
        raise UsageError(f"--state-schema {cut(name)!r} is not a schema name (1 to 63 bytes, no NUL)")
    if name in ("pg_catalog", "information_schema", "pg_toast") or name.startswith("pg_temp"):
        raise UsageError(f"--state-schema {name} is a system schema; partman's state tables cannot live there")
    return name


def only(specs: list, tables: Sequence[str]) -> list:
    """The specs named by --table; an unknown name is an error that lists the known ones."""
    if not tables:
        return specs
    from .model import TableRef

    known = {s.table: s for s in specs}
    chosen = []
    for name in tables:
        ref = TableRef.parse(name)
        if ref not in known:
            raise SpecError(f"unknown table '{cut(name)}' (known: {', '.join(sorted(map(str, known)))})")
        chosen.append(known[ref])
    return chosen


def parse_now(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--now {cut(text)!r} is not an ISO 8601 timestamp (e.g. 2027-01-01T00:00:00Z)") from None
    if value.tzinfo is None:
        raise UsageError(f"--now {cut(text)!r} needs an offset (e.g. 2027-01-01T00:00:00Z)")
    # Far enough from year 1 and 9999 that every window, premake and retention stays on the calendar.
    if not 1900 <= value.year <= 9000:
        raise UsageError(f"--now {cut(text)!r} is outside the years 1900 to 9000")
    return value


# How far apart a pinned clock and the database's may be, per interval: about one interval.
_SKEW = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92, "yearly": 366}


def refuse_skew(specs: list, pinned: datetime, database_now: datetime) -> None:
    """--now is for reproducible plans and tests; applying a clock far from the database's would retire or
    create partitions for another time. More than one interval of the finest spec away is refused."""
    specs = [s for s in specs if s.interval is not None]  # an id table's plan follows its ids, not the clock
    if not specs:
        return
    finest = min(specs, key=lambda s: _SKEW[s.interval.value])
    if abs(pinned - database_now) > timedelta(days=_SKEW[finest.interval.value]):
        raise UsageError(
            f"--now {pinned.isoformat()} is more than one interval ({finest.interval.value}, {finest.table}) away from"
            f" the database's clock ({database_now.isoformat()}); pass --allow-clock-skew to apply it anyway"
        )


def mentioned_envs(paths: Sequence[Path]) -> list[str]:
    """Environments the spec files name, for validate without a project file."""
    from .spec import spec_files
    from .yamldoc import load

    names: set[str] = set()
    for file in spec_files(paths):
        try:
            data = load(file).data
        except SpecError:
            continue
        if isinstance(data, dict) and isinstance(data.get("environments"), dict):
            names.update(data["environments"])
    return sorted(names)
