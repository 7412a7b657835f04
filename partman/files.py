"""Files partman writes (saved plans, Prometheus metrics): atomically, and failing in one line naming the path."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

from .errors import PartmanError


def write_atomically(path: Path, body: str, *, mode: Optional[int] = None) -> None:
    """A reader never sees half a file: write beside it, then rename over it."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.absolute().parent)
        with os.fdopen(fd, "w") as f:
            f.write(body)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        where = exc.filename if exc.filename and exc.filename != tmp else path
        raise PartmanError(f"cannot write {path}: {exc.strerror or exc} ({where})" if str(where) != str(path)
                           else f"cannot write {path}: {exc.strerror or exc}") from None
