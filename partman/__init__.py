"""partman: keeps PostgreSQL range-partitioned tables in the shape their specs declare."""

__version__ = "0.1.0"
