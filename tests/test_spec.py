import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from helpers import spec_data, write_spec

from partman.errors import SpecError
from partman.intervals import Interval, Span
from partman.model import KeyType, TableRef
from partman.spec import TableSpec, load_specs


def test_the_environment_overlay_wins_over_the_top_level(tmp_path):
    write_spec(tmp_path, spec_data(interval="quarterly", environments={"dev": {"interval": "monthly", "retention": "3 months"}, "prod": {}}))
    dev, = load_specs([tmp_path], "dev")
    prod, = load_specs([tmp_path], "prod")
    assert dev.interval is Interval.MONTHLY and dev.retention == Span(3, "months")
    assert prod.interval is Interval.QUARTERLY and prod.retention is None


def test_defaults_fill_what_a_spec_leaves_out(tmp_path):
    data = spec_data()
    del data["premake"]
    write_spec(tmp_path, data)
    s, = load_specs([tmp_path], "test")
    assert s.premake is None and s.retention is None
    assert s.retention_grace == Span(7, "days") and s.timezone == "UTC"
    assert s.table == TableRef("public", "bookings")


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("table: bookings\npartition_key: start_time\ninterval: [monthly\n")
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    assert str(err.value).startswith(f"{path}:")
    assert "invalid YAML" in str(err.value)


def test_an_unknown_key_is_reported_at_its_own_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("table: bookings\npartition_key: start_time\ninterval: monthly\nretension: 3 months\nenvironments: {test: {}}\n")
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    assert str(err.value) == f"{path}:4: unknown key 'retension'"


def test_an_unknown_key_inside_an_environment_is_reported_at_its_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("table: b\npartition_key: k\ninterval: monthly\nenvironments:\n  test:\n    intreval: daily\n")
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    assert str(err.value) == f"{path}:6: environments.test: unknown key 'intreval'"


def test_every_schema_error_is_reported_in_file_order(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("table: b\npartition_key: k\ninterval: hourly\npremake: soon\nenvironments: {test: {}}\n")
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    lines = str(err.value).splitlines()
    assert [line.split(":")[1] for line in lines] == ["3", "4"]
    assert "'hourly' is not one of daily, weekly, monthly, quarterly, yearly" in lines[0]
    assert "not a duration such as" in lines[1]


def test_a_duplicate_key_is_an_error_not_a_silent_override(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("table: b\npartition_key: k\ninterval: monthly\ninterval: daily\n")
    with pytest.raises(SpecError, match=r":4: duplicate key 'interval'"):
        load_specs([path], "test")


def test_an_unknown_environment_lists_the_known_ones(tmp_path):
    write_spec(tmp_path, spec_data(environments={"dev": {}, "prod": {}}))
    with pytest.raises(SpecError, match=r"unknown environment 'qa' \(known: default, dev, prod\)"):
        load_specs([tmp_path], "qa")


def test_an_environment_missing_from_the_project_file_is_named_at_its_line(tmp_path):
    path = write_spec(tmp_path, spec_data(environments={"prdo": {}}))
    with pytest.raises(SpecError, match=rf"{path}:\d+: environment 'prdo' is not in the project file"):
        load_specs([tmp_path], "prod", known_envs=["dev", "prod"])


def test_the_primary_key_must_hold_the_partition_key(tmp_path):
    write_spec(tmp_path, spec_data(primary_key=["id"]))
    with pytest.raises(SpecError, match="must include the partition key 'start_time'"):
        load_specs([tmp_path], "test")


def test_an_unknown_time_zone_is_refused(tmp_path):
    path = write_spec(tmp_path, spec_data(timezone="Mars/Olympus"))
    with pytest.raises(SpecError, match=rf"{path}:\d+: unknown time zone 'Mars/Olympus'"):
        load_specs([tmp_path], "test")


def test_a_key_column_of_another_type_is_refused(tmp_path):
    data = spec_data()
    data["columns"][1]["type"] = "text"
    write_spec(tmp_path, data)
    with pytest.raises(SpecError, match="partman manages timestamptz, timestamp and date keys"):
        load_specs([tmp_path], "test")


def test_a_bigint_key_without_an_encoding_is_refused_at_the_spec_line(tmp_path):
    data = spec_data()
    data["columns"][1]["type"] = "bigint"
    path = write_spec(tmp_path, data)
    with pytest.raises(SpecError, match=rf"{path}:\d+: a bigint partition key needs a width \(ids: `width: 1000000`\) or a key_encoding \(a time: epoch_s, epoch_ms"):
        load_specs([tmp_path], "test")


@pytest.mark.parametrize("key_type, encoding, why", [
    ("integer", "epoch_ms", "key_encoding epoch_ms needs a bigint key, not integer"),
    ("timestamptz", "epoch_s", "key_encoding epoch_s is for integer, bigint and uuid keys"),
    ("bigint", "uuidv7", "key_encoding uuidv7 needs a uuid key, not bigint"),
])
def test_an_encoding_the_key_type_cannot_hold_is_refused_at_its_line(tmp_path, key_type, encoding, why):
    data = spec_data(key_encoding=encoding)
    data["columns"][1]["type"] = key_type
    path = write_spec(tmp_path, data)
    with pytest.raises(SpecError, match=rf"{path}:\d+: {why}"):
        load_specs([tmp_path], "test")


@pytest.mark.parametrize("key_type, encoding", [("bigint", "epoch_ms"), ("integer", "epoch_s"), ("bigint", "epoch_us"),
                                                ("uuid", None), ("uuid", "uuidv7")])
def test_a_key_that_holds_a_time_is_accepted(tmp_path, key_type, encoding):
    data = spec_data(**({"key_encoding": encoding} if encoding else {}))
    data["columns"][1]["type"] = key_type
    write_spec(tmp_path, data)
    (spec,) = load_specs([tmp_path], "test")
    assert spec.key_encoding == encoding


def test_the_same_table_in_two_files_is_refused(tmp_path):
    write_spec(tmp_path, spec_data(), "a.yaml")
    write_spec(tmp_path, spec_data(), "b.yaml")
    with pytest.raises(SpecError, match=r"b.yaml:1: table public.bookings is already declared at .*a.yaml:1"):
        load_specs([tmp_path], "test")


def test_a_name_longer_than_63_bytes_is_refused(tmp_path):
    write_spec(tmp_path, spec_data(table="é" * 32))
    with pytest.raises(SpecError, match="longer than 63 bytes"):
        load_specs([tmp_path], "test")


def test_the_example_specs_are_valid_in_every_environment():
    root = Path(__file__).parent.parent
    for env in ("dev", "staging", "prod"):
        specs = load_specs([root / "specs"], env, known_envs=["dev", "staging", "prod"])
        assert sorted(str(s.table) for s in specs) == ["public.amenity_booking", "public.audit_events",
                                                       "public.order_lines", "public.sensor_readings"]
        assert {s.key_encoding for s in specs} == {None, "epoch_ms"}
        assert [s.width for s in specs if s.width] == [1000 if env == "dev" else 1000000]


def test_the_generated_validators_match_the_json_schemas():
    from partman.schema import generate

    for source, target in generate.SCHEMAS.items():
        assert (generate.HERE / target).read_text() == generate.code_for(source), "run python -m partman.schema.generate"


@pytest.mark.parametrize(
    "data",
    [
        {"table": "b", "partition_key": "k", "interval": "hourly"},
        {"table": "b", "partition_key": "k", "interval": "daily", "retension": "1 day"},
        {"table": "b", "partition_key": "k", "interval": "daily", "premake": "soon"},
        {"table": "b", "partition_key": "k", "interval": "daily", "environments": {"dev": {"table": "c"}}},
        {"table": "b", "partition_key": "k", "interval": "daily", "columns": [{"name": "x"}]},
        {"table": "b", "partition_key": "k", "interval": "daily", "primary_key": ["a", "a"]},
        {"table": "", "partition_key": "k", "interval": "daily"},
        {"partition_key": "k", "interval": "daily"},
        {"table": "b", "partition_key": "k", "interval": "daily", "retention": None, "move_default_rows": "yes"},
    ],
)
def test_the_quick_check_and_jsonschema_agree_on_invalid_specs(data):
    from partman.spec import _validator, quick_valid

    assert not quick_valid(data)
    assert list(_validator().iter_errors(data))


def test_the_quick_check_accepts_the_example_spec():
    import yaml

    from partman.spec import quick_valid

    root = Path(__file__).parent.parent
    assert quick_valid(yaml.safe_load((root / "specs" / "amenity_booking.yaml").read_text()))


# --- Hostile or broken input: one line 'file:line: message' and exit 1, never a traceback. ---

BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    + ["table: *i", "partition_key: k", "interval: daily"]
) + "\n"


def problem_lines(err: pytest.ExceptionInfo, path: Path) -> list[str]:
    lines = str(err.value).split("\n")
    for line in lines:
        assert line.startswith(f"{path}:") and line.split(":")[1].isdigit(), line
    return lines


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("table: &a [*a]\npartition_key: k\ninterval: daily\n", r":1: an alias refers to a value that contains it", id="self-alias"),
        pytest.param("table: t\npartition_key: k\ninterval: daily\nx: &m {<<: *m}\n", r":4: an alias refers to a value that contains it", id="self-merge"),
        pytest.param(BILLION_LAUGHS, r":\d+: aliases expand this file past 10000 values", id="billion-laughs"),
        pytest.param("table: t\npartition_key: k\ninterval: daily\n<<: 3\n", r":4: '<<' merges a mapping or a list of mappings", id="merge-scalar"),
        pytest.param("table: !!python/object/apply:os.system [echo hi]\n", r":1: tag '!!python/object/apply:os.system' is not allowed", id="python-tag"),
        pytest.param("table: !!python/name:os.system ''\n", r":1: table: tag '!!python/name:os.system' is not allowed", id="python-name"),
        pytest.param("table: !!set {a, b}\n", r":1: tag '!!set' is not allowed", id="set-tag"),
        pytest.param("table: 2027-13-45\n", r":1: table: '2027-13-45' is not a valid timestamp", id="bad-date"),
        pytest.param("table: t\n" + "x: " + "1:" * 3000 + "0\n", r":2: x: a number of more than 100 digits", id="sexagesimal"),
        pytest.param("table: t\npartition_key: k\ninterval: daily\nnote: \"\\0\"\n", r":4: note: '\\x00' holds a NUL", id="nul-escape"),
        pytest.param("table: t\n\x01: x\n", r":2: control character U\+0001 is not allowed", id="control-char"),
        pytest.param("[" * 5000, r":1: invalid YAML", id="deep-flow"),
        pytest.param("a:\n" + "".join(" " * i + "- \n" for i in range(1, 60)), r":\d+: nested more than 32 levels deep", id="deep-block"),
    ],
)
def test_hostile_yaml_is_one_line_at_its_place(tmp_path, text, expected):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_specs([path], "test", known_envs=["test"])
    lines = problem_lines(err, path)
    assert len(lines) == 1
    assert re.search(expected, lines[0]), lines[0]


def test_the_billion_laughs_file_is_small_and_refused_fast(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    assert path.stat().st_size < 500
    started = time.monotonic()
    with pytest.raises(SpecError, match="alias bomb"):
        load_specs([path], "test")
    assert time.monotonic() - started < 2


def test_invalid_utf8_is_named_by_its_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"table: t\npartition_key: \xff\xfe\ninterval: daily\n")
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    assert problem_lines(err, path) == [f"{path}:2: not UTF-8 (byte 0xff); save the file as UTF-8"]


def test_a_nul_byte_is_refused_without_showing_the_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"table: t\npartition_key: k\ninterval: daily\x00secret\n")
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    assert problem_lines(err, path) == [f"{path}:3: a NUL byte; not a text file"]


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_symlink_to_proc_environ_is_refused_without_echoing_the_environment(tmp_path):
    path = tmp_path / "s.yaml"
    path.symlink_to("/proc/self/environ")
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    assert problem_lines(err, path) == [f"{path}:1: not a regular file (it reports no size, like a /proc file); not read"]
    environment = Path("/proc/self/environ").read_bytes().decode(errors="replace").split("\0")
    assert not any(entry and entry in str(err.value) for entry in environment)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    path = tmp_path / "s.yaml"
    os.mkfifo(path)
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    assert problem_lines(err, path) == [f"{path}:1: not a regular file; name a spec file or a directory of them"]


def test_a_file_over_one_mebibyte_is_not_read(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("table: " + "t" * (1 << 20) + "\n")
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    assert problem_lines(err, path) == [f"{path}:1: larger than 1 MiB; not a spec file"]


def test_merge_keys_merge_as_safe_loader_does(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "table: bookings\npartition_key: start_time\ninterval: monthly\n"
        "environments:\n"
        "  prod: &prod {premake: 6 months, retention: 36 months, timezone: Europe/Berlin}\n"
        "  fast: &fast {interval: daily, retention: 7 days}\n"
        "  staging:\n"
        "    <<: [*fast, *prod]\n"  # earlier mappings of a list win
        "    timezone: UTC\n"  # and the mapping's own keys win over every merge
    )
    staging, = load_specs([path], "staging")
    # yaml.org/type/merge.html and SafeLoader up to PyYAML 6.0.3; 6.0.4 lets the last win (yaml/pyyaml#953)
    assert (staging.interval, staging.retention, staging.premake) == (Interval.DAILY, Span(7, "days"), Span(6, "months"))
    assert staging.timezone == "UTC"


def test_a_merged_value_is_reported_where_it_is_written(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "table: bookings\npartition_key: start_time\ninterval: monthly\n"
        "x-defaults: &d\n  premake: 99999 years\n"
        "environments:\n  test:\n    <<: *d\n"
    )
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    assert f"{path}:4: unknown key 'x-defaults'" in problem_lines(err, path)


def test_a_duplicate_key_next_to_a_merge_is_still_an_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("base: &b {interval: daily}\nt:\n  <<: *b\n  a: 1\n  a: 2\n")
    with pytest.raises(SpecError, match=r":5: duplicate key 'a'"):
        load_specs([path], "test")


# --- Spans: bounded at validate time, so plan never meets an OverflowError. ---


@pytest.mark.parametrize(
    "key, value",
    [("premake", "99999 years"), ("premake", "9999999999999999999999 days"), ("retention", "99999 years"),
     ("retention_grace", "99999 years"), ("premake", "1201 months"), ("retention", "401 quarters"),
     ("retention_grace", "5301 weeks"), ("premake", "36601 days"), ("premake", "1" * 5000 + " days")],
)
def test_a_span_beyond_the_limits_is_refused_at_its_line(tmp_path, key, value):
    path = write_spec(tmp_path, spec_data(**{key: value}))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(f"{key}:"))
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    message, = problem_lines(err, path)
    assert message.startswith(f"{path}:{line}: {key}: ")
    assert "is longer than partman allows (at most 100 years, 400 quarters, 1200 months, 5300 weeks, 36600 days)" in message
    assert len(message) < len(str(path)) + 200


def test_a_span_beyond_the_limits_in_an_environment_is_refused_at_its_line(tmp_path):
    path = write_spec(tmp_path, spec_data(environments={"test": {"retention_grace": "99999 years"}}))
    with pytest.raises(SpecError, match=r"s?:\d+: environments.test.retention_grace: '99999 years' is longer than"):
        load_specs([path], "prod", known_envs=["test", "prod"])


@pytest.mark.parametrize("text", ["100 years", "400 quarters", "1200 months", "5300 weeks", "36600 days"])
def test_the_longest_spans_allowed_can_be_planned(text):
    from partman.timeline import Grid, KeySpace, retention_cutoff, window

    span = Span.parse(text)
    for interval in Interval:
        for now in (datetime(1990, 1, 1, tzinfo=timezone.utc), datetime(2027, 2, 15, 12, tzinfo=timezone.utc)):
            window(Grid(interval, KeySpace(KeyType.TIMESTAMPTZ, "UTC")), now, span)
            retention_cutoff(KeySpace(KeyType.TIMESTAMPTZ, "UTC"), now, span)


# --- Identifiers: what the server would cut or cannot store is refused, so plans converge. ---


def _with(data: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    target = data
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize(
    "place, value, message",
    [
        ("partition_key", "k" * 64, "is not an identifier: 1 to 63 bytes, no control characters"),
        ("partition_key", "é" * 32, "is longer than 63 bytes (PostgreSQL would cut it)"),
        ("partition_key", "start\x01time", "is not an identifier"),
        ("partition_key", "start_time\n", "is not an identifier"),  # Python's '$' would match before the newline
        ("columns.2.name", "n" * 64, "is not an identifier"),
        ("columns.2.name", "ö" * 40, "is longer than 63 bytes"),
        ("columns.2.name", "no\x7fte", "is not an identifier"),
        ("primary_key.0", "i" * 64, "is not an identifier"),
        ("primary_key.0", "ïd" * 22, "is longer than 63 bytes"),
        ("table", "s" * 64 + ".bookings", "is longer than 63 bytes"),
        ("table", "public." + "b\x1bookings", "is not a table"),
        ("table", "public.", "an identifier cannot be empty"),
        ("table", ".bookings", "an identifier cannot be empty"),
    ],
)
def test_identifiers_the_server_would_change_are_refused_at_their_line(tmp_path, place, value, message):
    data = _with(spec_data(), place, value)
    path = write_spec(tmp_path, data)
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    lines = problem_lines(err, path)
    assert any(message in line for line in lines), lines
    assert all(len(line.splitlines()) == 1 for line in lines)


def test_a_partition_key_with_a_nul_is_refused_at_its_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text('table: b\npartition_key: "start\\0time"\ninterval: daily\n')
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    assert problem_lines(err, path) == [f"{path}:2: partition_key: 'start\\x00time' holds a NUL or a lone surrogate, which PostgreSQL cannot store"]


def test_an_environment_name_over_63_characters_is_refused(tmp_path):
    path = write_spec(tmp_path, spec_data(environments={"e" * 64: {}}))
    with pytest.raises(SpecError, match=r"s.yaml:\d+: environments: 'e{60}…' is not an environment name"):
        load_specs([path], "test")


@pytest.mark.parametrize(
    "text, message",
    [
        ("state_schema: " + "s" * 64 + "\nenvironments: {dev: {}}\n", ":1: state_schema: 'sssss"),
        ("state_schema: " + "ß" * 32 + "\nenvironments: {dev: {}}\n", ":1: state_schema: 'ßßß"),
        ('state_schema: "a\\tb"\nenvironments: {dev: {}}\n', ":1: state_schema: 'a\\tb' is not a schema name"),
        ("environments:\n  dev: {}\n  " + "p" * 64 + ": {}\n", ":3: environments: 'ppp"),
        ("environments:\n  dev: {}\n  \"pr\\nod\": {}\n", ":3: environments: 'pr\\nod' is not an environment name"),
    ],
)
def test_the_project_file_bounds_its_state_schema_and_environment_names(tmp_path, text, message):
    from partman.project import load_project

    path = tmp_path / "partman.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_project(path)
    line, = problem_lines(err, path)
    assert message in line


# --- Column types: type names only, so no clause rides along into CREATE TABLE. ---


@pytest.mark.parametrize(
    "type_name",
    ["bigint references victim", "text default current_user", "int primary key", 'text collate "C"',
     "bigint not null", "bigint; drop table victim", "text check (true)", "time zone", "numeric(1, 2, 3)",
     "text(pg_sleep(1))", "interval year to second", "timestamp with time zone(3)", "a.b.c", " bigint"],
)
def test_a_type_with_a_clause_is_refused_at_its_line(tmp_path, type_name):
    data = spec_data()
    data["columns"][2]["type"] = type_name
    path = write_spec(tmp_path, data)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "type:" in text and "name: note" in path.read_text().splitlines()[i - 2])
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    message, = problem_lines(err, path)
    assert message.startswith(f"{path}:{line}: columns[2].type: ")
    assert "a type name" in message


@pytest.mark.parametrize(
    "type_name",
    ["bigint", "text", "numeric(10, 2)", "numeric(10,2)", "numeric(5, -2)", "varchar(20)[]", "int[][]", "integer[3]",
     "double precision", "DOUBLE PRECISION", "character varying(255)", "char varying", "national character varying(10)",
     "nchar varying(3)", "bit varying(5)", "bit(3)", "timestamp(3) with time zone", "timestamp without time zone",
     "time with time zone", "time(6)", "interval", "interval year to month", "interval day to second(3)",
     "interval(6)", "interval second(3)", "public.my_enum", "public.my_enum[]", '"char"', 'public."Mood"',
     "pg_catalog.int4", "geometry(Point, 4326)", "jsonb"],
)
def test_type_names_in_every_standard_form_are_accepted(tmp_path, type_name):
    data = spec_data()
    data["columns"][2]["type"] = type_name
    write_spec(tmp_path, data)
    s, = load_specs([tmp_path], "test")
    assert s.columns[2].type == type_name


# --- Echoed values are cut, so a message is one short line whatever the file holds. ---


def test_a_huge_value_is_cut_in_the_message(tmp_path):
    path = write_spec(tmp_path, spec_data(table="t" * 500_000))
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    message, = problem_lines(err, path)
    assert "t" * 60 + "…" in message and "t" * 61 not in message
    assert len(message) < len(str(path)) + 200


def test_a_ten_megabyte_table_name_is_not_echoed(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("table: " + "t" * 10_000_000 + "\npartition_key: k\ninterval: daily\nenvironments: {test: {}}\n")
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    assert len(str(err.value)) < len(str(path)) + 200


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('table: b\npartition_key: k\ninterval: daily\n"bad\\nkey": 1\n', "unknown key 'bad\\nkey'"),
        ("table: b\npartition_key: k\ninterval: " + "x" * 1000 + "\n", "'" + "x" * 60 + "…' is not one of"),
        ("table: b\npartition_key: k\ninterval: daily\ntimezone: [" + "1, " * 1000 + "1]\n", "is not of type 'string'"),
        ("table: b\npartition_key: k\ninterval: daily\ntimezone: \"Mars\\u2028Olympus\"\n", "unknown time zone 'Mars\\u2028Olympus'"),
        ('table: b\npartition_key: k\ninterval: daily\n? "x\\u202ey"\n: 1\n', "unknown key 'x\\u202ey'"),
    ],
)
def test_a_message_stays_one_short_line(tmp_path, text, fragment):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_specs([path], "test", known_envs=["test"])
    message, = problem_lines(err, path)
    assert fragment in message and len(message) < len(str(path)) + 200


def test_an_unknown_environment_named_on_the_command_line_is_cut(tmp_path):
    write_spec(tmp_path, spec_data())
    with pytest.raises(SpecError) as err:
        load_specs([tmp_path], "q" * 10_000)
    assert str(err.value) == "unknown environment '" + "q" * 60 + "…' (known: default, test)"


# --- Through the command line: exit 1 and one line per problem, never a traceback. ---


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"table: t\n<<: {partition_key: k, interval: daily}\nbad: 1\n", id="merge"),
        pytest.param(b"table: &a [*a]\n", id="self-alias"),
        pytest.param(b"table: \xff\n", id="utf8"),
        pytest.param(b"table: t\x00\n", id="nul"),
        pytest.param(BILLION_LAUGHS.encode(), id="billion-laughs"),
        pytest.param(b"table: b\npartition_key: k\ninterval: daily\npremake: 99999 years\n", id="span"),
        pytest.param(b"table: b\npartition_key: " + b"k" * 64 + b"\ninterval: daily\n", id="identifier"),
    ],
)
def test_validate_exits_1_with_one_line_per_problem(capsys, tmp_path, monkeypatch, content):
    from dbtools import run_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_bytes(content)
    result = run_cli(capsys, "validate", "s.yaml")
    assert result.code == 1
    assert "Traceback" not in result.err
    assert all(re.match(r"error: s\.yaml:\d+: ", line) for line in result.err.splitlines()), result.err


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_validate_of_a_link_to_proc_environ_shows_none_of_it(capsys, tmp_path, monkeypatch):
    from dbtools import run_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").symlink_to("/proc/self/environ")
    result = run_cli(capsys, "validate", "s.yaml")
    assert (result.code, result.err) == (1, "error: s.yaml:1: not a regular file (it reports no size, like a /proc file); not read\n")


def test_a_spec_directory_that_cannot_be_listed_is_an_error_not_empty(tmp_path, monkeypatch):
    """As root every directory can be listed, so the refusal is simulated where os.walk lists: rglob used to
    skip such a directory silently, and a plan then ran on fewer specs than the user has."""
    import os

    from partman.errors import SpecError
    from partman.spec import spec_files

    (tmp_path / "specs" / "team").mkdir(parents=True)
    (tmp_path / "specs" / "a.yaml").write_text("table: a\n")
    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("team"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(SpecError) as error:
        spec_files([tmp_path / "specs"])
    assert "cannot read: Permission denied" in error.value.message


def test_storage_parameters_are_checked_by_name_and_value_at_their_lines(tmp_path):
    path = write_spec(tmp_path, spec_data(storage_parameters={"fillfactor": "seventy", "fillfactr": 70,
                                                              "toast.autovacuum_enabled": False, "parallel_workers": 2000}))
    with pytest.raises(SpecError) as err:
        load_specs([path], "test")
    lines = str(err.value).splitlines()
    assert len(lines) == 3
    assert "storage_parameters.fillfactor: 'seventy' is not a whole number" in lines[0]
    assert "'fillfactr' is not a storage parameter of a table (did you mean fillfactor?)" in lines[1]
    assert "storage_parameters.parallel_workers: '2000' is outside 0 to 1024" in lines[2]


def test_valid_storage_parameters_reach_the_spec_as_the_server_reads_them(tmp_path):
    path = write_spec(tmp_path, spec_data(storage_parameters={"fillfactor": 70, "toast.autovacuum_enabled": False,
                                                              "autovacuum_vacuum_scale_factor": 0.02}))
    spec = load_specs([path], "test")[0]
    assert spec.storage_parameters == (("autovacuum_vacuum_scale_factor", "0.02"), ("fillfactor", "70"),
                                       ("toast.autovacuum_enabled", "false"))


@pytest.mark.parametrize("text", ["history_from: yesterday", "history_from: 2024-01-01 10:00:00", "history_from: 20240101",
                                  "history_from: '2024-02-30'"])
def test_a_history_from_that_is_not_a_date_is_refused_at_its_line(tmp_path, text):
    data = yaml.safe_dump(spec_data(), sort_keys=False) + text + "\n"
    (tmp_path / "bookings.yaml").write_text(data)
    line = data.count("\n")
    with pytest.raises(SpecError, match=rf"bookings.yaml:{line}: history_from .* is not a date \(YYYY-MM-DD\)"):
        load_specs([tmp_path], "test")


def test_history_from_is_a_date_written_either_way_and_an_environment_may_set_its_own(tmp_path):
    from datetime import date

    data = spec_data(history_from="2024-03-01")
    data["environments"]["prod"] = {"history_from": date(2023, 1, 1)}
    write_spec(tmp_path, data)
    assert load_specs([tmp_path], "test", ["test", "prod"])[0].history_from == date(2024, 3, 1)
    assert load_specs([tmp_path], "prod", ["test", "prod"])[0].history_from == date(2023, 1, 1)


def id_spec_data(**overrides):
    data = spec_data(partition_key="id", width=1000000, premake="4 partitions", primary_key=["id"])
    del data["interval"]
    data["columns"] = [{"name": "id", "type": "bigint", "identity": "always"}, {"name": "note", "type": "text"}]
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_an_id_table_takes_a_width_and_reaches_in_ids_or_partitions(tmp_path):
    from partman.widths import Reach

    data = id_spec_data(retention=5000000, history_from=0, origin=1)
    data["environments"]["prod"] = {"premake": "20000000 ids", "retention": "10 partitions"}
    write_spec(tmp_path, data)
    test = load_specs([tmp_path], "test", ["test", "prod"])[0]
    prod = load_specs([tmp_path], "prod", ["test", "prod"])[0]
    assert (test.interval, test.width, test.origin, test.history_from) == (None, 1000000, 1, 0)
    assert (test.premake, test.retention) == (Reach(4, "partitions"), Reach(5000000, "ids"))
    assert (prod.premake, prod.retention) == (Reach(20000000, "ids"), Reach(10, "partitions"))
    assert TableSpec.from_dict(test.to_dict(with_source=True)) == test, "a plan file carries the spec exactly"


def test_a_time_tables_fingerprint_does_not_change_with_the_width_keys(tmp_path):
    # A spec written before widths existed keeps its fingerprint, so saved plans made then stay valid.
    write_spec(tmp_path, spec_data())
    (spec,) = load_specs([tmp_path], "test")
    assert "width" not in spec.to_dict() and "origin" not in spec.to_dict()


@pytest.mark.parametrize("overrides, key, why", [
    ({"interval": "monthly"}, "interval", "'interval' and 'width' exclude each other: a table has an interval \\(a time key\\) or a width \\(an id key\\), not both"),
    ({"premake": "3 months"}, "premake", "premake of an id table \\(width\\) is a number of ids or partitions"),
    ({"retention": "1 year"}, "retention", "retention of an id table \\(width\\) is a number of ids or partitions"),
    ({"history_from": "2024-01-01"}, "history_from", "history_from of an id table \\(width\\) is an id"),
    ({"key_encoding": "epoch_ms"}, "key_encoding", "key_encoding epoch_ms lays out a time, width lays out ids"),
])
def test_what_an_id_table_cannot_take_is_refused_at_its_line(tmp_path, overrides, key, why):
    path = write_spec(tmp_path, id_spec_data(**overrides))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(f"{key}:"))
    with pytest.raises(SpecError, match=rf"{path}:{line}: {why}"):
        load_specs([tmp_path], "test")


@pytest.mark.parametrize("overrides, why", [
    ({"premake": "4 partitions"}, "premake '4 partitions' counts ids or partitions, which only an id table"),
    ({"retention": 5000}, "retention 5000 counts ids or partitions, which only an id table"),
    ({"origin": 5}, "origin aligns the partitions of an id table; it needs a width"),
])
def test_what_only_an_id_table_takes_is_refused_on_a_time_table(tmp_path, overrides, why):
    path = write_spec(tmp_path, spec_data(**overrides))
    with pytest.raises(SpecError, match=rf"{path}:\d+: {why}"):
        load_specs([tmp_path], "test")


def test_a_width_on_a_time_key_is_refused(tmp_path):
    data = spec_data(width=100)
    del data["interval"]
    path = write_spec(tmp_path, data)
    with pytest.raises(SpecError, match=rf"{path}:\d+: width is for integer keys holding ids; a timestamp with time zone key takes an interval"):
        load_specs([tmp_path], "test")
