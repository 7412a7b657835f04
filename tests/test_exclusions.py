"""`partman exclusions`, on PostgreSQL 15 and 18 after a real apply: every format names the managed partitions, and
its patterns match every name partman gives partitions now and later, never the parent or an unrelated table (the
regex by re, Atlas' globs split and matched as Atlas does, pg_dump's patterns by the server's own pg_dump)."""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
from datetime import date, timedelta
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from dbtools import run_cli
from helpers import spec_data, write_spec

from partman import exclusions
from partman.intervals import Interval
from partman.model import Bounds, KeyType, TableRef
from partman.naming import fit, partition_name
from partman.timeline import Grid, KeySpace

NOW = "2027-02-15T12:00:00Z"
LATER = "2027-06-15T12:00:00Z"
LONG = "bookings_of_every_amenity_in_every_building_of_the_estate"  # 57 bytes: daily names are cut with an md5
# A hand-made partition adopted under its own name, and tables the patterns must leave alone.
BY_HAND = """
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, start_time timestamptz NOT NULL, note text,
                     PRIMARY KEY (id, start_time)) PARTITION BY RANGE (start_time);
CREATE TABLE events_legacy PARTITION OF events FOR VALUES FROM ('2026-12-01Z') TO ('2027-01-01Z');
CREATE TABLE events_archive (id bigint);
CREATE TABLE eventsx_2027_01 (id bigint);
CREATE TABLE events_2027_backup (id bigint);
CREATE TABLE events_20270101_old (id bigint);
CREATE TABLE events_2027_01_copy (id bigint);
CREATE SCHEMA other;
CREATE TABLE other.events_2027_03 (id bigint);
"""
# Near misses too: a backup or copy named after a partition is a table of its own, never excluded.
UNRELATED = ["public.events", "public.events_archive", "public.eventsx_2027_01", "other.events_2027_03",
             f"public.{LONG}", "public.partition_log", "public.events_2027_backup", "public.events_20270101_old",
             "public.events_2027_01_copy"]


def cli(capsys, db_url, *args):
    return run_cli(capsys, "exclusions", "specs", "--env", "test", "--database-url", db_url, *args)


@pytest.fixture
def applied(capsys, workdir, db_url, conn):
    """events (monthly, one adopted partition), the long-named daily table, and "Rooms" (a name to quote)."""
    conn.execute(BY_HAND)
    write_spec(workdir / "specs", spec_data(table="public.events", adopt="existing"), name="events.yaml")
    write_spec(workdir / "specs", spec_data(table=f"public.{LONG}", interval="daily", premake="5 days"), name="long.yaml")
    write_spec(workdir / "specs", spec_data(table="public.Rooms", premake="2 months"), name="rooms.yaml")
    result = run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW, "--auto-approve")
    assert result.code == 0, result.err


def managed(conn) -> list[str]:
    rows = conn.execute("SELECT partition_schema || '.' || partition_name FROM partition_log WHERE dropped_at IS NULL")
    return sorted(r[0] for r in rows)


def test_regex_lines_match_every_managed_partition_and_nothing_else(capsys, applied, db_url, conn):
    result = cli(capsys, db_url)
    assert result.code == 0, result.err
    patterns = [re.compile(line) for line in result.out.splitlines()]
    assert all(line.startswith("^") and line.endswith("$") for line in result.out.splitlines())
    names = managed(conn)
    assert "public.events_legacy" in names and any(n.startswith("public.Rooms_") for n in names)
    assert any(exclusions.stem_digest(LONG) + "_" in n for n in names), "some long names were cut"
    for name in names:
        assert any(p.match(name) for p in patterns), name
    for name in UNRELATED:
        assert not any(p.match(name) for p in patterns), name
    assert r"^public\.events_legacy$" in result.out.splitlines(), "an adopted name is listed as it is"
    assert not any("events_2027_02$" in line for line in result.out.splitlines()), "generated names: by the pattern"


def test_names_partman_will_generate_later_match_the_pattern_and_the_globs():
    for parent in ("events", LONG, "a" * 63):
        table = TableRef("public", parent)
        regex, globs = re.compile(exclusions.name_regex(table)), exclusions.name_globs(parent)
        for interval in Interval:
            grid = Grid(interval, KeySpace(KeyType.TIMESTAMPTZ, "UTC"))
            boundary, taken = interval.floor(date(2026, 1, 1)), set()
            while boundary < date(2029, 1, 1):
                slot = grid.slot(boundary)
                for bounds in (slot, Bounds(slot.start + timedelta(hours=6), slot.end), slot):  # a bridge; a taken name
                    name = partition_name(table, grid, bounds, taken)
                    assert regex.match(str(name)), name
                    assert any(fnmatchcase(name.name, g) for g in globs), name
                    assert len(name.name.encode()) <= 63
                boundary = interval.next(boundary)
        assert not regex.match(f"public.{parent}") and not any(fnmatchcase(parent, g) for g in globs)


def test_names_partman_will_generate_for_an_id_table_match_its_pattern_and_globs_and_no_time_names():
    from partman.widths import IdSpace, WidthGrid

    for parent in ("events", LONG, "a" * 63):
        table = TableRef("public", parent)
        regex, globs = re.compile(exclusions.name_regex(table, ids=True)), exclusions.name_globs(parent, ids=True)
        grid, taken = WidthGrid(1000, 0, IdSpace(KeyType.BIGINT, mark=0)), set()
        for start in (-3000, 0, 1000, 9_000_000_000_000):
            slot = grid.slot(start)
            for bounds in (slot, Bounds(slot.start + 250, slot.end), slot):  # a bridge; a taken name
                name = partition_name(table, grid, bounds, taken)
                assert regex.match(str(name)), name
                assert any(fnmatchcase(name.name, g) for g in globs), name
                assert len(name.name.encode()) <= 63
        assert not regex.match(f"public.{parent}_2027_01") and not regex.match(f"public.{parent}")


def test_the_stem_digest_is_the_one_naming_cuts_long_names_with():
    suffix = "_2027_01_05"
    assert fit(LONG, suffix) == LONG[:63 - len(suffix) - 7] + exclusions.stem_digest(LONG) + suffix
    assert not exclusions.shortened("events") and exclusions.shortened(LONG)


def atlas_patterns(text: str) -> list[str]:
    """The strings of the exclude list, as HCL reads them."""
    body = text[text.index("exclude = [\n") + len("exclude = [\n"):text.rindex("]")]
    return [json.loads(line.strip().rstrip(",")) for line in body.splitlines()]


def atlas_excludes(pattern: str, schema: str, name: str, *, qualified: bool) -> bool:
    """Whether Atlas' exclude drops table schema.name: it splits a pattern at dots as CSV (sqlx.ExcludeRealm) and
    matches each part with filepath.Match; at schema scope the pattern is prefixed with the schema's name."""
    parts = next(csv.reader([pattern if qualified else f"{schema}.{pattern}"], delimiter="."))
    return len(parts) == 2 and fnmatchcase(schema, parts[0]) and fnmatchcase(name, parts[1])


@pytest.mark.parametrize("qualified", [True, False], ids=["realm-scope", "schema-scope"])
def test_atlas_format_is_an_exclude_list_whose_globs_match_the_partitions(capsys, applied, db_url, conn, qualified):
    result = cli(capsys, db_url, "--format", "atlas")
    assert result.code == 0, result.err
    assert result.out.startswith("# partman exclusions (env test)")
    patterns = atlas_patterns(result.out)
    assert '"public.events_[0-9][0-9][0-9][0-9]_[0-9][0-9]",' in result.out and '"events_[0-9][0-9][0-9][0-9]",' in result.out
    assert not any(p.endswith("*") for p in patterns), "no glob ends in a bare *" 
    for name in managed(conn):
        schema, table = name.split(".", 1)
        assert any(atlas_excludes(p, schema, table, qualified=qualified) for p in patterns), name
    # At schema scope Atlas sees only the URL's schema (public here): a bare pattern says nothing of the others.
    for name in UNRELATED if qualified else [n for n in UNRELATED if n.startswith("public.")]:
        schema, table = name.split(".", 1)
        assert not any(atlas_excludes(p, schema, table, qualified=qualified) for p in patterns), name


def test_pg_dump_format_leaves_every_managed_partition_out_of_a_real_dump(capsys, server, applied, db_url, conn):
    result = cli(capsys, db_url, "--format", "pg_dump")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("'--exclude-table=") and all("--exclude-table=" in line for line in lines)
    args = [arg for line in lines for arg in shlex.split(line)]
    pg_dump = str(Path(server.psql).parent / "pg_dump")

    def created(*extra: str) -> set[str]:
        dump = subprocess.run([pg_dump, "--schema-only", "--dbname", db_url, *extra], capture_output=True, text=True)
        assert dump.returncode == 0, dump.stderr
        return set(re.findall(r"^CREATE TABLE (\S+) ", dump.stdout, re.MULTILINE))

    quoted = {".".join(f'"{p}"' if p != p.lower() else p for p in name.split(".", 1)) for name in managed(conn)}
    assert quoted <= created(), "without the options, pg_dump dumps every partition"
    dumped = created(*args)
    assert not dumped & quoted, "with them, every managed partition is left out"
    for name in UNRELATED:
        schema, table = name.split(".", 1)
        assert f'{schema}."{table}"' in dumped or name in dumped, name


def test_json_format_names_each_tables_pattern_and_partitions(capsys, applied, db_url, conn):
    result = cli(capsys, db_url, "--format", "json")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert (body["format_version"], body["env"]) == (1, "test")
    tables = {t["table"]: t for t in body["tables"]}
    assert sorted(tables) == sorted(["public.events", f"public.{LONG}", "public.Rooms"])
    events = tables["public.events"]
    assert events["pattern"] == exclusions.name_regex(TableRef("public", "events"))
    assert events["partitions"][0] == "public.events_legacy", "by range"
    assert events["unmatched"] == ["public.events_legacy"]
    assert sorted(p for t in body["tables"] for p in t["partitions"]) == managed(conn)


def test_partitions_detached_and_kept_are_still_excluded(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(premake="1 month", retention="1 month", retention_keep_table=True))
    for now in (NOW, LATER):
        result = run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", now, "--auto-approve")
        assert result.code == 0, result.err
    kept = conn.execute("SELECT partition_schema || '.' || partition_name FROM partition_log"
                        " WHERE detached_at IS NOT NULL AND dropped_at IS NULL").fetchall()
    assert kept
    listed = json.loads(cli(capsys, db_url, "--format", "json").out)["tables"][0]["partitions"]
    assert {k[0] for k in kept} <= set(listed)


def test_before_any_apply_only_the_patterns_are_printed(capsys, workdir, db_url):
    write_spec(workdir / "specs", spec_data())
    result = cli(capsys, db_url)
    assert (result.code, result.err) == (0, "")
    assert result.out == exclusions.name_regex(TableRef("public", "bookings")) + "\n"


def test_an_unknown_format_exits_64_before_connecting(capsys, workdir):
    write_spec(workdir / "specs", spec_data())
    result = run_cli(capsys, "exclusions", "specs", "--format", "yaml", "--database-url", "postgresql://x@127.0.0.1:1/x")
    assert result.code == 64
    assert result.err == "error: --format 'yaml' is not one of regex, atlas, pg_dump, json\n"


def test_the_command_explains_itself_with_examples(capsys):
    result = run_cli(capsys, "exclusions", "-h")
    assert result.code == 0
    assert "Usage: partman exclusions [OPTIONS] SPEC..." in result.out and "Examples:" in result.out
    assert "--format [regex|atlas|pg_dump|json]" in result.out


def test_regex_escapes_names_for_every_dialect():
    pattern = exclusions.name_regex(TableRef("a.b", "x+y(1)"))
    assert pattern.startswith(r"^a\.b\.x\+y\(1\)_(")
    assert re.match(pattern, "a.b.x+y(1)_2027_01") and not re.match(pattern, "a.b.xxy(1)_2027_01")


def test_a_table_the_spec_converts_has_its_legacy_name_in_the_patterns_before_the_conversion(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE events (id bigint, start_time timestamptz NOT NULL)")
    write_spec(workdir / "specs", spec_data(table="public.events", convert="attach"), name="events.yaml")
    regex = re.compile(cli(capsys, db_url).out.splitlines()[0])
    assert regex.match("public.events_legacy") and regex.match("public.events_legacy_2")
    assert not regex.match("public.events_legacy_copy")
    globs = atlas_patterns(cli(capsys, db_url, "--format", "atlas").out)
    assert "events_legacy" in globs and "public.events_legacy_[0-9]" in globs
    assert '"public"."events"_(' in cli(capsys, db_url, "--format", "pg_dump").out and "|legacy)" in cli(
        capsys, db_url, "--format", "pg_dump").out
