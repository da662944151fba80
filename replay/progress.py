"""A progress bar for long replays: rich on a terminal, nothing when piped.

The bar goes to stderr and only when stderr is a terminal, so output piped
into a file or another program is exactly the report. Updating is O(1) and
batched (the bar is redrawn at most a few times a second by rich itself;
`advance` only adds to a counter and hands it over every `STEP` records).
The total is what will be read: a reading that stops at a seq or a time
counts to there, not to the journal's end.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterator

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


def last_read(journal: Any, upto_seq: int | None = None, upto_ts: int | None = None) -> int:
    """Return the seq of the last record a reading up to ``upto_seq`` and up
    to the time ``upto_ts`` takes in. O(log segments + one segment) with a time."""
    last = journal.last_seq if upto_seq is None else min(upto_seq, journal.last_seq)
    if upto_ts is not None:
        records = journal.read(1, from_ts=upto_ts + 1)
        try:
            past = next(iter(records), None)        # the first record after the time
        finally:
            getattr(records, "close", lambda: None)()
        if past is not None:
            last = min(last, past.seq - 1)
    return last


class CountingJournal:
    """A read-only journal that drives a progress bar while it is read
    (`recorder.recovery.rebuild`, `recorder.store.Store.update`), counting
    to ``upto_seq`` / ``upto_ts`` when the reader stops there. Call `finish`."""

    def __init__(self, journal: Any, label: str, *, upto_seq: int | None = None,
                 upto_ts: int | None = None) -> None:
        self._journal = journal
        self._label = label
        self._upto = (upto_seq, upto_ts)
        self._bar: Progress | None = None

    @property
    def last_seq(self) -> int:
        return self._journal.last_seq

    def read(self, from_seq: int = 1, *, from_ts: int | None = None) -> Iterator[Any]:
        self.finish()
        upto_seq, upto_ts = self._upto
        last = self._journal.last_seq if upto_seq is None else min(upto_seq, self._journal.last_seq)
        if upto_ts is not None and wanted(last - from_seq + 1):    # else no bar: skip the look-up
            last = last_read(self._journal, last, upto_ts)
        self._bar = bar = Progress(self._label, max(0, last - from_seq + 1))
        for rec in self._journal.read(from_seq, from_ts=from_ts):
            yield rec
            bar.advance()

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
