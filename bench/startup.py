"""Start-up: `partman --help` and `partman validate specs/` against `python -c "import psycopg"`.

Each command runs --runs times in a fresh process; medians are compared. Goal: <= 1.5x.

    .venv/bin/python bench/startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _compiled import byte_compile

ROOT = Path(__file__).resolve().parent.parent


def median_of(cmd: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    byte_compile()
    base = median_of([sys.executable, "-c", "import psycopg"], args.runs)
    print(f"python -c 'import psycopg'     {base * 1000:6.0f} ms (median of {args.runs})")
    for name, cmd in (("partman --help", ["--help"]), ("partman validate specs/", ["validate", "specs/"])):
        took = median_of([sys.executable, "-m", "partman", *cmd], args.runs)
        print(f"{name:<30} {took * 1000:6.0f} ms   ratio {took / base:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
