"""How many partitions one transaction may create: bounded by the server's shared lock table.

Every relation a transaction creates or attaches stays locked until it commits: the new table, its TOAST
table and index, and each of its indexes. The shared lock table holds max_locks_per_transaction ×
(max_connections + max_prepared_transactions) locks for every session together; one transaction that takes
more than its share fails with "out of shared memory" and, retried whole, fails again. So creates go in
batches, each its own committed, logged transaction, sized to take at most a quarter of the table."""

from __future__ import annotations

from psycopg import Connection

from .model import TableRef

SHARE_OF_LOCK_TABLE = 4  # a batch takes at most 1/4 of the shared lock table, leaving the rest to the application
MAX_BATCH = 500  # beyond this, a batch's single commit gains nothing and its rollback on a timeout costs more

# The lock table's slots and the parent's indexes (%(s)s.%(n)s): asked alone (size) or inside catalog.under_lock.
SIZE = """
SELECT current_setting('max_locks_per_transaction')::int
       * (current_setting('max_connections')::int + current_setting('max_prepared_transactions')::int),
       (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(s)s AND c.relname = %(n)s)
"""


def locks_per_partition(indexes: int) -> int:
    """The relations one create locks until commit: the table, its TOAST table and TOAST index, each index
    (and, while attaching, the parent's matching index, held once for the batch: counted anyway)."""
    return 3 + 2 * indexes


def size(conn: Connection, parent: TableRef) -> int:
    return size_of(*conn.execute(SIZE, {"s": parent.schema, "n": parent.name}).fetchone())


def size_of(slots: int, indexes: int) -> int:
    """Creates per transaction, from SIZE's answer."""
    return max(1, min(MAX_BATCH, slots // SHARE_OF_LOCK_TABLE // locks_per_partition(indexes)))
