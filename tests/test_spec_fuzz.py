"""Fuzzing the spec reader: whatever a file holds, load_specs returns specs or raises SpecError whose every line
is 'file:line: ...', and `partman validate` exits 0 or 1 without a traceback. About 200 examples, a few seconds."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partman.cli import main
from partman.errors import SpecError
from partman.spec import load_specs

FUZZ = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One directory for every example: a spec file rewritten each time, and a project file naming env test."""
    path = tmp_path_factory.mktemp("fuzz")
    (path / "partman.yaml").write_text("environments:\n  test: {}\n")
    return path


def check(workdir: Path, content: bytes) -> None:
    """The property, for one file's content: through the library, then through the command line."""
    path = workdir / "spec.yaml"
    path.write_bytes(content)
    try:
        specs = load_specs([path], "test", known_envs=["test"])
    except SpecError as exc:
        lines = exc.message.split("\n")
        assert lines and all(re.match(re.escape(str(path)) + r":\d+: ", line) for line in lines), exc.message
        assert all(len(line) < len(str(path)) + 400 for line in lines), "a message echoed too much"
    else:
        assert len(specs) == 1
    code, out, err = validate(path, workdir / "partman.yaml")
    assert code in (0, 1), (code, err)
    assert "Traceback" not in err
    if code == 1:
        assert all(line.startswith(f"error: {path}:") for line in err.splitlines()), err


def validate(path: Path, project: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(["validate", str(path), "--project", str(project)])
        except SystemExit as exc:
            return (exc.code or 0) if isinstance(exc.code, int) else 1, out.getvalue(), err.getvalue()
    raise AssertionError("main() returned instead of exiting")


# --- Structured: spec-shaped mappings with plausible and implausible values, dumped as YAML. ---

KEYS = ["table", "partition_key", "interval", "width", "origin", "premake", "retention", "retention_grace", "timezone",
        "columns", "primary_key", "move_default_rows", "history_from", "environments"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(["monthly", "daily", "3 months", "99999 years", "0 days", "UTC", "Mars/Olympus", "public.b",
                     "bigint", "bigint references victim", "timestamptz", "k" * 64, "a\x00b", "é" * 40, ".x", "x."]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
column = st.fixed_dictionaries(
    {"name": st.sampled_from(["id", "start_time", "k", "k" * 64, ""]) | st.text(max_size=8),
     "type": st.sampled_from(["bigint", "timestamptz", "date", "double precision", "text default now()", "x(1,2,3)"]) | st.text(max_size=12)},
    optional={"not_null": st.booleans() | values, "default": values, "identity": st.sampled_from(["always", "by default", "never"])},
)
setting = {
    "table": st.sampled_from(["bookings", "public.bookings", "s.t.u"]) | st.text(max_size=70),
    "partition_key": st.sampled_from(["start_time", "k"]) | st.text(max_size=70),
    "interval": st.sampled_from(["daily", "weekly", "monthly", "quarterly", "yearly", "hourly"]) | values,
    "width": st.integers(-5, 10**20) | values,
    "origin": st.integers(-10**20, 10**20) | values,
    "premake": st.from_regex(r"\A\s?\d{1,25} ?(day|week|month|quarter|year|id|partition)s?\Z") | st.integers(-5, 10**25) | values,
    "retention": st.from_regex(r"\A\d{1,8} (days|months|years|ids|partitions)\Z") | st.none() | st.integers() | values,
    "history_from": st.integers() | st.dates() | values,
    "retention_grace": st.from_regex(r"\A\d{1,8} (days|weeks)\Z") | values,
    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "../../etc/passwd", "x" * 300]) | values,
    "columns": st.lists(column, max_size=4) | values,
    "primary_key": st.lists(st.sampled_from(["id", "start_time", "k"]) | st.text(max_size=8), max_size=3) | values,
    "move_default_rows": st.booleans() | values,
}


@st.composite
def spec_documents(draw) -> dict:
    doc = {key: draw(setting[key]) for key in draw(st.lists(st.sampled_from(KEYS[:-1]), unique=True))}
    if draw(st.booleans()):
        names = st.sampled_from(["test", "dev", "prod"]) | st.text(max_size=10)
        doc["environments"] = draw(st.dictionaries(names, st.dictionaries(st.sampled_from(KEYS[1:-1]), values, max_size=3) | values, max_size=2))
    if draw(st.booleans()):
        doc[draw(st.text(max_size=10))] = draw(values)
    return doc


@settings(FUZZ, max_examples=80)
@given(spec_documents(), st.booleans())
def test_structured_specs_load_or_fail_with_file_and_line(workdir, doc, unicode):
    check(workdir, yaml.safe_dump(doc, allow_unicode=unicode, sort_keys=False).encode())


# --- Raw: random bytes, and text assembled from YAML's sharp edges. ---

FRAGMENTS = [
    "table: ", "partition_key: ", "interval: ", "premake: ", "retention: ", "columns:\n", "environments:\n",
    "primary_key: ", "timezone: ", "monthly", "start_time", "bookings", "99999 years", "9999999999999999999999 days",
    "\n", "  ", "    ", "- ", "{", "}", "[", "]", ", ", ": ", "? ", "'", '"', "&a ", "&b ", "*a", "*b", "<<: ",
    "<<: [*a, *b]", "!!python/object/apply:os.system ", "!!python/name:os.system ", "!!binary ", "!!set ", "!!omap ",
    "!!timestamp ", "!!int ", "!!float ", "!!str ", "!local ", "!<tag:x> ", "---\n", "...\n", "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n", "# c\n", "|\n", ">-\n", "\\x00", "\\u2028", "\\ud800", "\\U00110000", "\t", "\r", "\r\n",
    "\x00", "\x01", "\x85", "\u2028", "\ufeff", "\ud7ff", "é", "2027-13-45", "1:2:3", "0x1F", ".inf", ".nan", "~", "=",
    "{name: k, type: bigint references victim}", "{name: start_time, type: timestamptz}", "k" * 64,
]
yamlish = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=40).map("".join)


@settings(FUZZ, max_examples=80)
@given(yamlish, st.sampled_from(["utf-8", "utf-16"]))
def test_yamlish_text_loads_or_fails_with_file_and_line(workdir, text, encoding):
    check(workdir, text.encode(encoding, "surrogatepass"))


utf8ish = yamlish.map(lambda text: text.encode("utf-8", "surrogatepass"))  # lone surrogates: invalid UTF-8


@settings(FUZZ, max_examples=40)
@given(st.binary(max_size=300) | st.builds(lambda a, b, c: a + b + c, utf8ish, st.binary(max_size=8), utf8ish))
def test_random_bytes_load_or_fail_with_file_and_line(workdir, content):
    check(workdir, content)
