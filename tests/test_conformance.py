"""Partitions that match their parent, on PostgreSQL 15 and 18: every partition apply creates has the parent's
owner, privileges (column ones too), tablespace, replica identity and persistence, plus the spec's storage
parameters; a partition that drifted from its parent is reported by drift (kind conformance) and conformed by
apply's `~ conform` line; what only a rewrite would change is reported (PM215) and never done."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from dbtools import partitions, run_cli
from helpers import spec_data, write_spec

NOW = "2027-02-15T12:00:00Z"
LATER = "2027-05-15T12:00:00Z"
SPACE = "partman_test_space"

# A relation's attributes as the catalog holds them, written independently of partman's own reading: the owner's
# entries under OWNER, privileges without their grantor.
_LOOK = """
SELECT pg_get_userbyid(c.relowner),
       (SELECT array_agg(CASE WHEN a.grantee = c.relowner THEN 'OWNER' WHEN a.grantee = 0 THEN 'PUBLIC'
                              ELSE pg_get_userbyid(a.grantee) END || ':' || a.privilege_type || ':' || a.is_grantable
                         ORDER BY 1)
          FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a),
       (SELECT array_agg(at.attname || ':' || pg_get_userbyid(a.grantee) || ':' || a.privilege_type ORDER BY 1)
          FROM pg_attribute at, aclexplode(at.attacl) a WHERE at.attrelid = c.oid AND at.attacl IS NOT NULL),
       coalesce((SELECT spcname FROM pg_tablespace WHERE oid = c.reltablespace), 'default'),
       coalesce(c.reloptions, '{}'), coalesce((SELECT t.reloptions FROM pg_class t WHERE t.oid = c.reltoastrelid), '{}'),
       c.relreplident, c.relpersistence
  FROM pg_class c WHERE c.oid = %s::regclass
"""


def look(conn, relation: str) -> dict:
    owner, grants, column_grants, space, options, toast, identity, persistence = conn.execute(_LOOK, (relation,)).fetchone()
    return {"owner": owner, "grants": grants, "column_grants": column_grants, "tablespace": space,
            "options": sorted(options), "toast": sorted(toast), "identity": identity, "persistence": persistence}


def cli(capsys, db_url, command, *extra, now=NOW):
    return run_cli(capsys, command, "specs", "--env", "test", "--database-url", db_url, "--now", now, *extra)


@pytest.fixture
def roles(server, db_url):
    """Three roles of this test's own (roles are the cluster's): an owner, a reader and an auditor."""
    tag = uuid.uuid4().hex[:8]
    names = [f"owner_{tag}", f"reader_{tag}", f"auditor_{tag}"]
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        for name in names:
            admin.execute(f'CREATE ROLE "{name}"')
    yield names
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("DROP OWNED BY " + ", ".join(f'"{n}"' for n in names))
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        for name in names:
            admin.execute(f'DROP ROLE "{name}"')


@pytest.fixture(scope="module")
def tablespace(server):
    """A tablespace other than the default, inside the data directory (allow_in_place_tablespaces, PostgreSQL 15+):
    no directory outside the server's own is needed."""
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_tablespace WHERE spcname = %s", (SPACE,)).fetchone():
            admin.execute("SET allow_in_place_tablespaces = on")
            admin.execute(f"CREATE TABLESPACE {SPACE} LOCATION ''")
    return SPACE


def make_parent(conn, owner: str, reader: str, auditor: str, *, unlogged: bool = False, space: str = "") -> None:
    conn.execute(
        f"CREATE {'UNLOGGED ' if unlogged else ''}TABLE bookings (id bigint GENERATED ALWAYS AS IDENTITY,"
        " start_time timestamptz NOT NULL, note text, amount numeric, PRIMARY KEY (id, start_time))"
        f" PARTITION BY RANGE (start_time){f' TABLESPACE {space}' if space else ''}"
    )
    conn.execute(f'ALTER TABLE bookings OWNER TO "{owner}"')
    conn.execute(f'GRANT SELECT, INSERT ON bookings TO "{reader}"')
    conn.execute(f'GRANT SELECT (amount) ON bookings TO "{auditor}"')
    conn.execute("ALTER TABLE bookings REPLICA IDENTITY FULL")


STORAGE = {"fillfactor": 70, "autovacuum_vacuum_scale_factor": 0.02, "toast.autovacuum_enabled": False}


def test_every_partition_apply_creates_matches_its_parent(capsys, workdir, db_url, conn, server, roles, tablespace):
    owner, reader, auditor = roles
    unlogged_parent = server.version < 18  # PostgreSQL 18 refuses an UNLOGGED partitioned table: the spec asks instead
    make_parent(conn, owner, reader, auditor, unlogged=unlogged_parent, space=tablespace)
    extra = {} if unlogged_parent else {"unlogged": True}
    write_spec(workdir / "specs", spec_data(premake="2 months", storage_parameters=STORAGE, **extra))
    result = cli(capsys, db_url, "apply", "--auto-approve")
    assert result.code == 0, result.err
    parent = look(conn, "bookings")
    names = [n for n, _ in partitions(conn, "bookings")]
    assert len(names) == 3
    for name in names:
        seen = look(conn, name)
        assert seen["owner"] == owner
        assert seen["grants"] == parent["grants"] and f"{reader}:SELECT:false" in seen["grants"]
        assert seen["column_grants"] == [f"amount:{auditor}:SELECT"]
        assert seen["tablespace"] == tablespace
        assert seen["options"] == ["autovacuum_vacuum_scale_factor=0.02", "fillfactor=70"]
        assert seen["toast"] == ["autovacuum_enabled=false"]
        assert seen["identity"] == "f"
        assert seen["persistence"] == "u"
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0, "made matching: nothing to conform"


def test_a_partition_made_before_a_grant_is_reported_by_drift_and_conformed_by_apply(capsys, workdir, db_url, conn, roles):
    owner, reader, auditor = roles
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute(f'GRANT SELECT ON bookings TO "{reader}"')
    conn.execute(f'GRANT UPDATE (note) ON bookings TO "{auditor}"')
    drift = cli(capsys, db_url, "drift", "--format", "json")
    findings = [f for t in json.loads(drift.out)["tables"] for f in t["findings"] if f["kind"] == "conformance"]
    assert {f["partition"] for f in findings} == {"public.bookings_2027_02", "public.bookings_2027_03", "public.bookings_2027_04"}
    assert any(f["detail"].startswith(f"privileges: grant SELECT to {reader}") for f in findings)
    assert any(f"grant UPDATE (note) to {auditor}" in f["detail"] for f in findings)
    plan = cli(capsys, db_url, "plan")
    assert f"~ conform  public.bookings_2027_02  grant SELECT to {reader}; grant UPDATE (note) to {auditor}" in plan.out
    assert "3 to conform" in plan.out
    result = cli(capsys, db_url, "apply", "--auto-approve")
    assert result.code == 0, result.err
    assert look(conn, "bookings_2027_03")["grants"] == look(conn, "bookings")["grants"]
    assert look(conn, "bookings_2027_03")["column_grants"] == [f"note:{auditor}:UPDATE"]
    assert cli(capsys, db_url, "drift").code == 0


def test_a_grant_made_on_one_partition_alone_is_revoked(capsys, workdir, db_url, conn, roles):
    _, reader, _ = roles
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute(f'GRANT DELETE ON bookings_2027_03 TO "{reader}" WITH GRANT OPTION')
    plan = cli(capsys, db_url, "plan")
    assert f"~ conform  public.bookings_2027_03  revoke DELETE from {reader}" in plan.out
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert look(conn, "bookings_2027_03")["grants"] == look(conn, "bookings")["grants"]


def test_an_owner_changed_on_the_parent_is_carried_to_its_partitions(capsys, workdir, db_url, conn, roles):
    owner, _, _ = roles
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute(f'ALTER TABLE bookings OWNER TO "{owner}"')
    plan = cli(capsys, db_url, "plan")
    assert f"~ conform  public.bookings_2027_02  owner {owner} (is " in plan.out
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert {look(conn, n)["owner"] for n, _ in partitions(conn, "bookings")} == {owner}
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0


def test_storage_parameters_changed_by_hand_are_set_again_and_others_left_alone(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(premake="2 months", storage_parameters={"fillfactor": 80}))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute("ALTER TABLE bookings_2027_03 SET (fillfactor = 50, autovacuum_enabled = off)")
    plan = cli(capsys, db_url, "plan")
    assert "~ conform  public.bookings_2027_03  set fillfactor = 80 (is 50)" in plan.out
    assert "bookings_2027_02  set" not in plan.out
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert look(conn, "bookings_2027_03")["options"] == ["autovacuum_enabled=off", "fillfactor=80"]


def test_replica_identity_using_an_index_names_each_partitions_own_index(capsys, workdir, db_url, conn):
    write_spec(workdir / "specs", spec_data(premake="1 month"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0  # the parent, and partitions made before
    conn.execute("CREATE UNIQUE INDEX bookings_ident ON bookings (start_time, id)")
    conn.execute("ALTER TABLE bookings REPLICA IDENTITY USING INDEX bookings_ident")
    plan = cli(capsys, db_url, "plan", now=LATER)
    assert "~ conform  public.bookings_2027_02  replica identity USING INDEX bookings_2027_02_start_time_id_idx (is DEFAULT)" in plan.out
    assert cli(capsys, db_url, "apply", "--auto-approve", now=LATER).code == 0
    rows = conn.execute(
        """SELECT c.relname, ic.relname, ii.inhparent = 'bookings_ident'::regclass
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_index x ON x.indrelid = c.oid AND x.indisreplident JOIN pg_class ic ON ic.oid = x.indexrelid
             JOIN pg_inherits ii ON ii.inhrelid = x.indexrelid
            WHERE i.inhparent = 'bookings'::regclass AND c.relreplident = 'i'""").fetchall()
    assert len(rows) == len(partitions(conn, "bookings")) and all(matched for _, _, matched in rows)
    assert cli(capsys, db_url, "plan", "--detailed-exitcode", now=LATER).code == 0


def test_a_partition_in_another_tablespace_is_reported_and_never_moved(capsys, workdir, db_url, conn, tablespace):
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute(f"ALTER TABLE bookings_2027_03 SET TABLESPACE {tablespace}")
    plan = cli(capsys, db_url, "plan", "--detailed-exitcode")
    assert plan.code == 0, "a rewrite is not a change apply makes"
    assert f"PM215 tablespace {tablespace}, the parent's partitions want the default" in plan.out
    drift = cli(capsys, db_url, "drift")
    assert drift.code == 2 and f"conformance public.bookings_2027_03: tablespace {tablespace}" in drift.out
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert look(conn, "bookings_2027_03")["tablespace"] == tablespace


def test_conform_false_leaves_existing_partitions_alone(capsys, workdir, db_url, conn, roles):
    _, reader, _ = roles
    write_spec(workdir / "specs", spec_data(premake="2 months", conform=False))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute(f'GRANT SELECT ON bookings TO "{reader}"')
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0
    assert cli(capsys, db_url, "drift").code == 0
    assert cli(capsys, db_url, "apply", "--auto-approve", now=LATER).code == 0
    assert f"{reader}:SELECT:false" in look(conn, "bookings_2027_06")["grants"], "new partitions still match"


def test_a_saved_plan_carries_its_conform_lines(capsys, workdir, db_url, conn, roles):
    _, reader, _ = roles
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute(f'GRANT SELECT ON bookings TO "{reader}"')
    assert cli(capsys, db_url, "plan", "--out", "plan.json").code == 0
    result = run_cli(capsys, "apply", "plan.json", "--database-url", db_url, "--auto-approve")
    assert result.code == 0, result.err
    assert f"{reader}:SELECT:false" in look(conn, "bookings_2027_02")["grants"]


def test_a_parent_with_row_level_security_keeps_its_privileges_off_the_partitions(capsys, workdir, db_url, conn, roles):
    _, reader, _ = roles
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute("ALTER TABLE bookings ENABLE ROW LEVEL SECURITY")
    conn.execute(f'CREATE POLICY own ON bookings TO "{reader}" USING (note = current_user)')
    conn.execute(f'GRANT SELECT ON bookings TO "{reader}"')
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0, "no grant that would read past the policy"
    assert cli(capsys, db_url, "apply", "--auto-approve", now=LATER).code == 0
    assert f"{reader}:SELECT:false" not in look(conn, "bookings_2027_06")["grants"]


def test_a_conform_behind_a_reader_of_the_partition_gives_up_after_the_budget_and_changes_nothing(
        capsys, workdir, db_url, conn, roles):
    owner, _, _ = roles
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute(f'ALTER TABLE bookings OWNER TO "{owner}"')
    before = look(conn, "bookings_2027_03")
    with psycopg.connect(db_url) as reader:
        reader.execute("SELECT count(*) FROM bookings_2027_03")  # ACCESS SHARE, held until rollback
        result = cli(capsys, db_url, "apply", "--auto-approve", "--lock-timeout-ms", "50", "--lock-budget", "0.5")
        assert result.code == 4, result.err
        assert "public.bookings_2027_03: conform" in result.err
        assert look(conn, "bookings_2027_03") == before
        reader.rollback()
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert look(conn, "bookings_2027_03")["owner"] == owner


def test_row_level_security_on_the_parent_revokes_what_partitions_were_granted_before(capsys, workdir, db_url, conn, roles):
    _, reader, _ = roles
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute(f'GRANT SELECT ON bookings TO "{reader}"')
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0  # conformed: the partitions have the grant
    conn.execute("ALTER TABLE bookings ENABLE ROW LEVEL SECURITY")
    plan = cli(capsys, db_url, "plan")
    assert f"~ conform  public.bookings_2027_02  revoke SELECT from {reader}" in plan.out
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert all(f"{reader}:SELECT:false" not in look(conn, n)["grants"] for n, _ in partitions(conn, "bookings"))


def test_the_creators_default_privileges_do_not_leave_new_partitions_to_conform(capsys, workdir, db_url, conn, roles):
    _, reader, _ = roles
    write_spec(workdir / "specs", spec_data(premake="1 month"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO "{reader}"')
    try:
        assert cli(capsys, db_url, "apply", "--auto-approve", now=LATER).code == 0
        assert f"{reader}:SELECT:false" not in look(conn, "bookings_2027_06")["grants"]
        assert cli(capsys, db_url, "plan", "--detailed-exitcode", now=LATER).code == 0
    finally:
        conn.execute(f'ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM "{reader}"')


def test_a_grant_passed_on_by_another_role_is_reported_not_revoked_forever(capsys, workdir, db_url, conn, roles):
    _, reader, auditor = roles
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    conn.execute(f'GRANT USAGE ON SCHEMA public TO "{reader}"')
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute(f'GRANT SELECT ON bookings, bookings_2027_03 TO "{reader}" WITH GRANT OPTION')
    conn.execute(f'SET ROLE "{reader}"; GRANT SELECT ON bookings_2027_03 TO "{auditor}"; RESET ROLE')
    plan = cli(capsys, db_url, "plan")
    assert f"PM215 SELECT of {auditor} was granted by another role than the owner" in plan.out
    assert "~ conform  public.bookings_2027_03" not in plan.out
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0, "converged: nothing planned again and again"


def test_a_privilege_held_from_two_grantors_converges(capsys, workdir, db_url, conn, roles):
    _, reader, auditor = roles
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    conn.execute(f'GRANT USAGE ON SCHEMA public TO "{reader}"')
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute(f'GRANT SELECT ON bookings TO "{reader}" WITH GRANT OPTION')
    conn.execute(f'GRANT SELECT ON bookings TO "{auditor}" WITH GRANT OPTION')
    conn.execute(f'SET ROLE "{reader}"; GRANT SELECT ON bookings TO "{auditor}"; RESET ROLE')
    for _ in range(2):
        assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0
    assert f"{auditor}:SELECT:true" in look(conn, "bookings_2027_03")["grants"]


def test_a_partition_owned_by_a_role_partman_cannot_act_for_is_reported(capsys, workdir, db_url, conn, server, roles):
    owner, reader, _ = roles
    conn.execute(f'GRANT CREATE ON SCHEMA public TO "{owner}"; ALTER ROLE "{owner}" LOGIN')
    conn.execute(f'CREATE TABLE bookings (id bigint, start_time timestamptz NOT NULL) PARTITION BY RANGE (start_time);'
                 f' ALTER TABLE bookings OWNER TO "{owner}"')
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    conn.execute(f'ALTER TABLE bookings_2027_03 OWNER TO "{reader}"')
    conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{owner}"')
    as_owner = psycopg.conninfo.make_conninfo(db_url, user=owner)
    plan = run_cli(capsys, "plan", "specs", "--env", "test", "--database-url", as_owner, "--now", NOW, "--detailed-exitcode")
    assert plan.code == 0, plan.out
    assert f"PM215 owned by {reader}, which the connected role is not a member of" in plan.out


def test_a_tablespace_that_does_not_exist_is_a_plan_error_that_names_it(capsys, workdir, db_url):
    write_spec(workdir / "specs", spec_data(premake="2 months"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    write_spec(workdir / "specs", spec_data(premake="2 months", tablespace="nosuch"))
    plan = cli(capsys, db_url, "plan")
    assert plan.code == 1 and "tablespace 'nosuch' does not exist" in plan.out


def test_naming_the_default_tablespace_is_the_default(capsys, workdir, db_url):
    write_spec(workdir / "specs", spec_data(premake="2 months", tablespace="pg_default"))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert cli(capsys, db_url, "drift").code == 0
    assert "PM215" not in cli(capsys, db_url, "plan").out


def test_toast_parameters_on_a_table_without_a_toast_table_are_not_planned_again_and_again(capsys, workdir, db_url, conn):
    conn.execute("CREATE TABLE bookings (id bigint, start_time timestamptz NOT NULL) PARTITION BY RANGE (start_time)")
    write_spec(workdir / "specs", spec_data(premake="2 months", storage_parameters={"toast.autovacuum_enabled": False,
                                                                                    "fillfactor": 90}))
    assert cli(capsys, db_url, "apply", "--auto-approve").code == 0
    assert cli(capsys, db_url, "plan", "--detailed-exitcode").code == 0
    assert look(conn, "bookings_2027_02")["options"] == ["fillfactor=90"]
