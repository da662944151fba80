"""Record an in-process session into a real journal, as the gateway would.

`RecordingDriver` is an `exchange.driver.Driver` whose every command is
journaled as one ENTRY record (`exchange.codec.Entry`: the envelope and
every event the engine produced for it). Used by the recorded demo session
(`replay.sample`), the replay tests and the replay benchmark. Journal first,
as rule 3 asks: the entry is appended before the events are returned; it
is durable after `commit` (every ``commit_every`` entries and on `close`).
"""

from __future__ import annotations

import os
from typing import Any

from exchange.codec import Entry, encode_entry
from exchange.driver import Driver
from exchange.engine import Engine
from recorder import layout
from recorder.format import KIND_ENTRY
from recorder.journal import Journal
from recorder.recovery import save_snapshot


class RecordingDriver(Driver):
    """A `Driver` that appends one journal ENTRY per command. O(payload) per send."""

    def __init__(self, journal: Any, *, engine: Engine | None = None, start_ts: int = 0,
                 commit_every: int = 1, keep_log: bool = False) -> None:
        super().__init__(engine, start_ts=start_ts, keep_log=keep_log)
        self.journal = journal
        self.commit_every = max(1, commit_every)
        self.events_recorded = 0
        self._pending = 0
        if journal.last_seq != self.seq:
            raise ValueError(f"journal at seq {journal.last_seq}, engine at seq {self.seq}")

    def record(self, env: Any, events: list[Any]) -> None:
        """Append the envelope and its events as one ENTRY; commit every ``commit_every``."""
        seq = self.journal.append(env.ts, KIND_ENTRY, encode_entry(Entry(env, events)))
        if seq != env.seq:
            raise RuntimeError(f"journal gave seq {seq} to envelope {env.seq}")
        self.events_recorded += len(events)
        self._pending += 1
        if self._pending >= self.commit_every:
            self.journal.commit()
            self._pending = 0

    def commit(self) -> None:
        self.journal.commit()
        self._pending = 0

    def snapshot(self, data_dir: str | os.PathLike) -> None:
        """Commit, then write a snapshot of the engine into DATA/snapshots/."""
        self.commit()
        save_snapshot(self.engine, self.journal, layout.snapshot_dir(data_dir))


def open_recording(data_dir: str | os.PathLike, *, start_ts: int = 0, commit_every: int = 1,
                   durability: str = "group", segment_bytes: int = 64 << 20,
                   keep_log: bool = False) -> RecordingDriver:
    """Open (creating) DATA/journal/ for writing and return a driver recording into it.
    The caller closes ``driver.journal``."""
    journal = Journal.open(layout.journal_dir(data_dir), durability=durability,
                           segment_bytes=segment_bytes)
    return RecordingDriver(journal, start_ts=start_ts, commit_every=commit_every,
                           keep_log=keep_log)
