"""Apply over a pool of connections, on PostgreSQL 15 and 18: 50 tables at once, three of which end short for
reasons of their own (a lock another session holds, a spec the table does not match, rows in the default partition
that apply may not move; or, moved while partman waits for their locks, a stale plan and rows in a partition an
interval change drops); the other 47 converge, each of the three says its own reason, the exit code follows the
precedence, the output is the same, byte for byte, however the tables finished, and a signal mid-run leaves every
partition done or untouched."""

from __future__ import annotations

import psycopg
import pytest

from dbtools import partitions, run_cli
from helpers import spec_data, write_spec

NOW = "2027-02-15T12:00:00Z"
TABLES = [f"t{n:02d}" for n in range(50)]
LOCKED, WRONG_KEY, DEFAULT_ROWS = "t07", "t23", "t41"
ATTACHED = "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relkind = 'r'"


def cli(capsys, db_url, *extra):
    return run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW, "--auto-approve",
                   "--lock-timeout-ms", "50", "--lock-budget", "1", *extra)


def fifty(workdir, conn) -> None:
    for name in TABLES:
        write_spec(workdir / "specs", spec_data(f"public.{name}", premake="2 months"), name=f"{name}.yaml")
    conn.execute(f"CREATE TABLE {WRONG_KEY} (id bigint, start_time timestamptz NOT NULL, other timestamptz NOT NULL)"
                 " PARTITION BY RANGE (other)")
    conn.execute(f"CREATE TABLE {DEFAULT_ROWS} (id bigint GENERATED ALWAYS AS IDENTITY, start_time timestamptz NOT NULL,"
                 f" note text) PARTITION BY RANGE (start_time)")
    conn.execute(f"CREATE TABLE {DEFAULT_ROWS}_default PARTITION OF {DEFAULT_ROWS} DEFAULT")
    conn.execute(f"INSERT INTO {DEFAULT_ROWS} (start_time) VALUES ('2027-03-10Z')")


def held_advisory_lock(db_url: str, table: str):
    """Another session holding partman's advisory lock of the table, as a concurrent apply would."""
    other = psycopg.connect(db_url, autocommit=True)
    other.execute("SELECT pg_advisory_lock(1885434484, ('x' || left(md5(format('%%I.%%I', 'public', %s::text)), 8))"
                  "::bit(32)::int)", (table,))
    return other


@pytest.mark.parametrize("workers", ["1", "8"])
def test_fifty_tables_at_once_converge_but_three_that_each_say_their_own_reason(capsys, workdir, db_url, conn, workers):
    fifty(workdir, conn)
    with held_advisory_lock(db_url, LOCKED):
        result = cli(capsys, db_url, "--parallelism", workers)
    assert result.code == 1, "an error outranks a blocked table and a busy lock"
    # Each table's outcome, in table order whatever finished first (the plan named the spec error already).
    failures = [line for line in result.err.splitlines() if line.startswith("error:") and line.endswith("]")]
    assert len(failures) == 3, "\n".join(failures)
    assert failures[0].startswith(f"error: public.{LOCKED}: partman's lock") and failures[0].endswith("[PM303]")
    assert failures[1].startswith(f"error: public.{WRONG_KEY} is partitioned by (other)") and failures[1].endswith("[PM304]")
    assert failures[2].startswith(f"error: public.{DEFAULT_ROWS}_default holds 1 rows") and failures[2].endswith("[PM301]")
    converged = [t for t in TABLES if t not in (LOCKED, WRONG_KEY, DEFAULT_ROWS)]
    assert all(len(partitions(conn, t)) == 3 for t in converged)
    assert conn.execute("SELECT to_regclass(%s)", (LOCKED,)).fetchone()[0] is None, "untouched"
    assert len(partitions(conn, DEFAULT_ROWS)) == 1


def test_the_output_is_the_same_whatever_order_the_tables_finished_in(capsys, workdir, server, tmp_path):
    from conftest import fresh_database

    outputs = []
    for workers in ("1", "8", "8"):
        databases = fresh_database(server)
        url = next(databases)
        try:
            with psycopg.connect(url, autocommit=True) as c:
                fifty(workdir, c)
            with held_advisory_lock(url, LOCKED):
                result = cli(capsys, url, "--parallelism", workers)
            # The one line that moves between runs: the database's clock, beside the pinned one.
            out = "\n".join(line for line in result.out.splitlines() if "the database's clock says" not in line)
            # Said live as it happens (with the holder's pid), so not part of what must repeat: a lock wait.
            err = "\n".join(line for line in result.err.splitlines() if not line.startswith("waiting:"))
            outputs.append((result.code, out, err))
        finally:
            databases.close()
    assert outputs[0] == outputs[1] == outputs[2]


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_during_a_parallel_apply_leaves_every_partition_done_or_untouched(workdir, db_url, conn, signal_name):
    import signal
    import subprocess
    import sys
    import time

    for name in TABLES[:20]:
        write_spec(workdir / "specs", spec_data(f"public.{name}", premake="36 months"), name=f"{name}.yaml")
    args = [sys.executable, "-m", "partman", "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW,
            "--auto-approve", "--parallelism", "4", "--allow-clock-skew"]
    errors = (workdir / "stderr").open("w+")
    # SIG_DFL for SIGINT, as in a terminal: a test run started in the background would leave partman ignoring it.
    proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=errors, text=True,  # no pipe to fill
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if conn.execute(f"SELECT to_regclass('partition_log') IS NOT NULL AND ({ATTACHED}) > 0").fetchone()[0]:
            break
        time.sleep(0.01)
    proc.send_signal(getattr(signal, signal_name))
    proc.wait(timeout=60)
    err = (workdir / "stderr").read_text()
    assert "Traceback" not in err and conn.execute("SELECT to_regclass('partition_log')").fetchone()[0], err
    if signal_name == "SIGINT":
        assert proc.returncode == 130, err
    # Done or untouched: every partition is attached and logged, and no table is left half made.
    attached = conn.execute(ATTACHED).fetchone()[0]
    logged = conn.execute("SELECT count(*) FROM partition_log WHERE dropped_at IS NULL").fetchone()[0]
    loose = conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                         " WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relispartition"
                         " AND c.relname ~ '^t[0-9]+_'").fetchone()[0]
    assert 0 < attached < 20 * 37, "the signal came mid-run"
    assert attached == logged and loose == 0
    finished = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert conn.execute(ATTACHED).fetchone()[0] == 20 * 37


def waiting_for(conn, table: str) -> bool:
    """Whether a session waits for partman's advisory lock of the table."""
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = 1885434484"
        " AND objid = (('x' || left(md5(format('%%I.%%I', 'public', %s::text)), 8))::bit(32)::int)::oid)",
        (table,)).fetchone()[0]


def test_what_moves_while_tables_wait_their_turn_is_decided_by_each_table_on_its_own(capsys, workdir, db_url, conn):
    """Between plan and apply, while partman waits for their locks: one table's partition is detached by hand (its
    plan is stale), and a row arrives in a future partition of another that an interval change drops (the
    future-data check); a third table's lock stays held. The other 47 converge."""
    import threading
    import time

    stale, future = "t12", "t33"
    for name in TABLES:
        write_spec(workdir / "specs", spec_data(f"public.{name}", interval="quarterly", premake="9 months"),
                   name=f"{name}.yaml")
    assert cli(capsys, db_url).code == 0
    for name in TABLES:
        write_spec(workdir / "specs", spec_data(f"public.{name}", interval="monthly", premake="9 months"),
                   name=f"{name}.yaml")
    holders = {t: held_advisory_lock(db_url, t) for t in (LOCKED, stale, future)}
    moves = {stale: f"ALTER TABLE {stale} DETACH PARTITION {stale}_2027_q1",  # the plan would make 3 more months
             future: f"INSERT INTO {future} (start_time) VALUES ('2027-08-10Z')"}

    def meanwhile() -> None:
        with psycopg.connect(db_url, autocommit=True) as side:
            while moves:
                for table in [t for t in moves if waiting_for(side, t)]:
                    side.execute(moves.pop(table))
                    holders[table].close()  # its lock goes with its session
                time.sleep(0.01)
    helper = threading.Thread(target=meanwhile, daemon=True)
    helper.start()
    try:
        result = run_cli(capsys, "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW,
                         "--auto-approve", "--lock-timeout-ms", "50", "--lock-budget", "10", "--parallelism", "8")
    finally:
        helper.join(timeout=30)
        holders[LOCKED].close()
    assert not moves, "both moved while partman waited"
    assert result.code == 1, result.err
    failures = [line for line in result.err.splitlines() if line.startswith("error:") and line.endswith("]")]
    assert len(failures) == 3, "\n".join(failures)
    assert failures[0].startswith(f"error: public.{LOCKED}: partman's lock") and failures[0].endswith("[PM303]")
    assert failures[1].startswith(f"error: public.{stale} changed since the plan was shown") and failures[1].endswith("[PM302]")
    assert f"public.{future}" in failures[2] and failures[2].endswith("[PM301]")
    monthly = [t for t in TABLES if t not in (LOCKED, stale, future)]
    # The current quarter stays (an interval change never touches it); April to November (premake) are monthly now.
    assert all([n for n, _ in partitions(conn, t)] == [f"{t}_2027_q1"] + [f"{t}_2027_{m:02d}" for m in range(4, 12)]
               for t in monthly), partitions(conn, monthly[0])
    assert conn.execute(f"SELECT count(*) FROM {future}").fetchone()[0] == 1, "the row stays where it arrived"


def test_a_server_with_no_more_connections_to_give_gets_fewer_workers(capsys, workdir, db_url, conn, server):
    import uuid

    role = f"few_{uuid.uuid4().hex[:8]}"
    conn.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 2; GRANT CREATE ON SCHEMA public TO "{role}"')
    try:
        for name in TABLES[:10]:
            write_spec(workdir / "specs", spec_data(f"public.{name}", premake="2 months"), name=f"{name}.yaml")
        result = cli(capsys, psycopg.conninfo.make_conninfo(db_url, user=role), "--parallelism", "4")
        assert result.code == 0, result.err
        assert all(len(partitions(conn, t)) == 3 for t in TABLES[:10])
    finally:
        conn.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_whose_connection_is_lost_fails_that_table_alone_and_goes_on_with_a_new_one(workdir, db_url, conn,
                                                                                             workers):
    """Every worker waits for a lock another session holds when the server ends all of partman's sessions: those
    tables fail on their own (each partition done or untouched), and the rest run on new connections."""
    import subprocess
    import sys
    import time

    for name in TABLES[:20]:
        write_spec(workdir / "specs", spec_data(f"public.{name}", premake="2 months"), name=f"{name}.yaml")
    held = TABLES[:workers]  # the first tables the workers take: each worker waits on one of them
    holders = [held_advisory_lock(db_url, t) for t in held]
    args = [sys.executable, "-m", "partman", "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW,
            "--auto-approve", "--parallelism", str(workers), "--allow-clock-skew", "--lock-budget", "60"]
    errors = (workdir / "stderr").open("w+")
    proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=errors, text=True)
    try:
        seen, deadline = set(), time.monotonic() + 60
        while seen != set(held) and time.monotonic() < deadline and proc.poll() is None:
            seen |= {t for t in held if waiting_for(conn, t)}
            time.sleep(0.005)
        assert seen == set(held), "every worker waits on a held table"
        ended = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                             " WHERE application_name = 'partman' AND pid <> pg_backend_pid()").fetchone()[0]
        assert ended == workers
        proc.wait(timeout=120)
    finally:
        proc.kill()
        for h in holders:
            h.close()
    err = (workdir / "stderr").read_text()
    failures = [line for line in err.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(failures) == workers, err
    assert all("terminating connection" in line and line.endswith("[PM304]") for line in failures), err
    assert all(len(partitions(conn, t)) == 3 for t in TABLES[workers:20]), "the other tables converged"
    assert all(conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is None for t in held), "untouched"
    finished = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert all(len(partitions(conn, t)) == 3 for t in TABLES[:20])


def test_tables_after_a_lost_connection_that_cannot_be_made_again_say_why(workdir, db_url, conn):
    import subprocess
    import sys
    import time
    import uuid

    role = f"gone_{uuid.uuid4().hex[:8]}"
    conn.execute(f'CREATE ROLE "{role}" LOGIN; GRANT CREATE ON SCHEMA public TO "{role}"')
    try:
        for name in TABLES[:4]:
            write_spec(workdir / "specs", spec_data(f"public.{name}", premake="2 months"), name=f"{name}.yaml")
        holder = held_advisory_lock(db_url, TABLES[0])
        url = psycopg.conninfo.make_conninfo(db_url, user=role)
        args = [sys.executable, "-m", "partman", "apply", "specs", "--env", "test", "--database-url", url, "--now", NOW,
                "--auto-approve", "--parallelism", "1", "--allow-clock-skew", "--lock-budget", "60"]
        errors = (workdir / "stderr").open("w+")
        proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=errors, text=True)
        try:
            deadline = time.monotonic() + 60
            while not waiting_for(conn, TABLES[0]) and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.005)
            conn.execute(f'ALTER ROLE "{role}" NOLOGIN')  # no new connection for it from now on
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            proc.wait(timeout=120)
        finally:
            proc.kill()
            holder.close()
        failures = [line for line in (workdir / "stderr").read_text().splitlines() if line.startswith("error:")]
        assert proc.returncode == 1 and len(failures) == 4, failures
        assert all("the connection was lost and a new one was refused" in line and "not permitted to log in" in line
                   for line in failures[1:]), failures
    finally:
        conn.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')


def test_ctrl_c_stops_workers_that_wait_between_lock_attempts(workdir, db_url, conn):
    """Between attempts a worker sleeps, with nothing in flight to cancel: the sleep itself ends, not the budget."""
    import signal
    import subprocess
    import sys
    import time

    for name in TABLES[:4]:
        write_spec(workdir / "specs", spec_data(f"public.{name}", premake="2 months"), name=f"{name}.yaml")
    holders = [held_advisory_lock(db_url, t) for t in TABLES[:2]]
    args = [sys.executable, "-m", "partman", "apply", "specs", "--env", "test", "--database-url", db_url, "--now", NOW,
            "--auto-approve", "--parallelism", "2", "--allow-clock-skew", "--lock-budget", "600"]
    errors = (workdir / "stderr").open("w+")
    proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=errors, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen, deadline = set(), time.monotonic() + 60
    while seen != set(TABLES[:2]) and time.monotonic() < deadline and proc.poll() is None:
        seen |= {t for t in TABLES[:2] if waiting_for(conn, t)}
        time.sleep(0.005)
    # Once the pauses have grown (the sixth is 1.6 to 3.2 s), both workers are seen between attempts, asleep.
    time.sleep(3)
    while time.monotonic() < deadline and proc.poll() is None and conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'partman' AND state = 'idle'"
            " AND query LIKE '%%pg_advisory_lock%%'").fetchone()[0] < 2:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=60)  # the budget is ten times that
    finally:
        proc.kill()
        for h in holders:
            h.close()
    assert code == 130, (workdir / "stderr").read_text()
    assert all(conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is None for t in TABLES[:2])
