"""A progress bar for long replays: rich on a terminal, nothing when piped.

The bar goes to stderr and only when stderr is a terminal, so output piped
into a file or another program is exactly the report. Updating is O(1) and
batched (the bar is redrawn at most a few times a second by rich itself;
`advance` only adds to a counter and hands it over every `STEP` records).
"""

from __future__ import annotations

import os
import sys
from typing import Any

STEP = 4096
MIN_TOTAL = 50_000      # below this a replay is quick; no bar


def wanted(total: int) -> bool:
    """Show a bar: stderr is a terminal, the job is long, LOTEX_PROGRESS is not 0."""
    if os.environ.get("LOTEX_PROGRESS", "") == "0":
        return False
    stream = sys.stderr
    return total >= MIN_TOTAL and hasattr(stream, "isatty") and stream.isatty()


class Progress:
    """Count records; draw a rich bar when `wanted`."""

    __slots__ = ("_bar", "_task", "_pending")

    def __init__(self, label: str, total: int) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._pending = 0
        if wanted(total):
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar,
                                       TextColumn, TimeRemainingColumn)
            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)

    def advance(self, n: int = 1) -> None:
        if self._bar is None:
            return
        self._pending += n
        if self._pending >= STEP:
            self._bar.advance(self._task, self._pending)
            self._pending = 0

    def close(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, self._pending)
            self._bar.stop()
            self._bar = None
