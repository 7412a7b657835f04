"""partman as a process that runs one command and exits: the garbage collector set for that, and the exit.

partman's values (partitions, bounds, log ranges) hold no cycles, and a large read makes hundreds of thousands of
them. At the default threshold (a collection every 700 new objects) the collector walks them over and over; at
exit the interpreter frees them one by one. Both cost a plan over 30,000 partitions about a tenth of its time
(bench/plan_scale.py). So what is alive when the command starts is kept for good (gc.freeze), a collection waits
for a million new objects (cycles, an exception's traceback, are still collected), and a command that ended
with nothing left running leaves at once (os._exit) once its output is flushed."""

from __future__ import annotations

import gc
import os
import sys
import threading

YOUNG_THRESHOLD = 1_000_000


def for_one_command() -> None:
    """Only for the program itself: in-process callers (tests) keep the interpreter's settings."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def leave(code: int) -> None:
    """Exit with code. At once when only this thread is left and nothing waits on the interpreter's exit hooks:
    the embedded dev database's library registers one (partman.embedded) to stop a server it started."""
    if threading.active_count() == 1 and "partman.embedded" not in sys.modules:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed pipe or stream: the ordinary exit reports it as it would
            sys.exit(code)
        os._exit(code)
    sys.exit(code)
