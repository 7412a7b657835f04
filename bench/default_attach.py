"""Attaching a partition beside a large default partition: how long ACCESS EXCLUSIVE on the default is held.

A plain ATTACH scans the whole default, under ACCESS EXCLUSIVE on it, to prove none of its rows belong to the
new range. partman first validates a CHECK constraint excluding the range (the scan, under SHARE UPDATE
EXCLUSIVE: writers go on), so the ATTACH itself skips the scan. Measured: the ATTACH statement alone (the time
the strong lock is held) and the whole, for a default of --rows rows.

    .venv/bin/python bench/default_attach.py [--servers pg18,pg15] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import time

import psycopg

from _servers import servers


def setup(c, rows: int) -> None:
    c.execute("DROP TABLE IF EXISTS ev")
    c.execute("CREATE TABLE ev (id bigint, at timestamptz NOT NULL, v text) PARTITION BY RANGE (at)")
    c.execute("CREATE TABLE ev_default PARTITION OF ev DEFAULT")
    c.execute("INSERT INTO ev SELECT g, '2030-01-01Z'::timestamptz + g * interval '1 second', 'x' FROM generate_series(1, %s) g", (rows,))
    c.execute("VACUUM ANALYZE ev_default")
    c.execute("CREATE TABLE ev_new (LIKE ev INCLUDING ALL)")


def timed(c, statement: str) -> float:
    t0 = time.perf_counter()
    c.execute(statement)
    return time.perf_counter() - t0


RANGE = "FROM ('2027-01-01Z') TO ('2027-02-01Z')"
CHECK = "CHECK (NOT (at IS NOT NULL AND at >= '2027-01-01Z' AND at < '2027-02-01Z'))"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--servers", default="pg18,pg15")
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    for label, cluster in servers(args.servers):
        with psycopg.connect(cluster.url(), autocommit=True) as c:
            setup(c, args.rows)
            plain = timed(c, f"ALTER TABLE ev ATTACH PARTITION ev_new FOR VALUES {RANGE}")
            c.execute("ALTER TABLE ev DETACH PARTITION ev_new")
            add = timed(c, f"ALTER TABLE ev_default ADD CONSTRAINT partman_attach_x {CHECK} NOT VALID")
            validate = timed(c, "ALTER TABLE ev_default VALIDATE CONSTRAINT partman_attach_x")
            attach = timed(c, f"ALTER TABLE ev ATTACH PARTITION ev_new FOR VALUES {RANGE}")
            drop = timed(c, "ALTER TABLE ev_default DROP CONSTRAINT partman_attach_x")
        print(f"\n{label}: default partition of {args.rows:,} rows")
        print(f"  plain ATTACH: ACCESS EXCLUSIVE on the default for {plain * 1000:8.1f} ms (the scan)")
        print(f"  partman: ADD CHECK NOT VALID {add * 1000:.1f} ms, VALIDATE {validate * 1000:.1f} ms (SHARE UPDATE EXCLUSIVE),"
              f" ATTACH {attach * 1000:.1f} ms, DROP CHECK {drop * 1000:.1f} ms")
        print(f"  ACCESS EXCLUSIVE held {plain / (add + attach + drop):.0f}x shorter ({(add + attach + drop) * 1000:.1f} ms in all)")


if __name__ == "__main__":
    main()
