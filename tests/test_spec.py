from pathlib import Path

import pytest

from helpers import spec_data, write_spec

from partman.errors import SpecError
from partman.intervals import Interval, Span
from partman.model import TableRef
from partman.spec import load_specs


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
    with pytest.raises(SpecError, match=r"unknown environment 'qa' \(known: dev, prod\)"):
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
    data["columns"][1]["type"] = "bigint"
    write_spec(tmp_path, data)
    with pytest.raises(SpecError, match="partman manages timestamptz, timestamp and date keys"):
        load_specs([tmp_path], "test")


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
        assert [str(s.table) for s in specs] == ["public.amenity_booking"]


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
