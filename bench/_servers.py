"""Throwaway servers for the benchmarks: the same clusters the tests use (tests/pgcluster.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pgcluster import Cluster, debian_bindir, embedded_bindir  # noqa: E402


def servers(which: str = "pg18,pg15"):
    """Yield (label, started cluster) for each server asked for that is installed; stops each afterwards."""
    for label in which.split(","):
        bindir = embedded_bindir() if label == "pg18" else debian_bindir()
        if bindir is None:
            print(f"{label}: binaries not found, not measured")
            continue
        cluster = Cluster(bindir, label).start()
        try:
            yield label, cluster
        finally:
            cluster.stop()
