"""partman's modules byte-compiled before anything is timed, as `pip install` leaves an installed package.

An editable install compiles nothing, and where PYTHONDONTWRITEBYTECODE is set (as on the machine these figures
come from) no run ever writes a .pyc: every timed process would compile each module again, about 70 ms that a
user's installed partman does not pay. psycopg, the peer on the other side of each ratio, is compiled already."""

from __future__ import annotations

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def byte_compile() -> None:
    compileall.compile_dir(ROOT / "partman", quiet=1)
