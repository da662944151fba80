"""The determinism audit: re-run every recorded command, compare every byte.

`check(source)` does two things, each naming the first record that fails:

1. the journal layer's own check (`recorder.journal.verify_journal`): every
   record's CRC, sequence number and SHA-256 chain, every segment's header
   and footer. A flipped byte anywhere fails here.
2. the engine check: every ENTRY goes through a fresh engine on the one
   recovery path (`recorder.recovery.rebuild` with ``use_snapshot=False``
   and its ``on_entry`` hook), and the entry re-encoded with the events the
   engine produces now must equal the recorded record payload byte for
   byte (envelope and events). A record that was altered and re-framed with
   a valid CRC and chain passes step 1 and fails here.

On success it reports the number of entries and events and a SHA-256 over
the replayed events (the msgpack of each entry's event list, in order), so
two parties can compare audits of the same journal. O(journal).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterator

import msgspec

from exchange.codec import DecodeError, Entry, encode, encode_entry
from recorder.format import Record
from recorder.journal import JournalCorrupt, verify_journal
from recorder.recovery import RecoveryError, rebuild
from replay.progress import Progress
from replay.source import Source


@dataclass
class Difference:
    """The first record whose replay is not what was recorded."""

    seq: int
    ts: int
    command: str
    index: int                 # the first differing event; -1: the events agree, other bytes differ
    recorded: list[Any]
    replayed: list[Any]

    def describe(self) -> str:
        where = f"record {self.seq} ({self.command} at ts {self.ts})"
        if self.index < 0:
            return (f"{where}: the events agree but the record's bytes are not the canonical "
                    f"encoding of its envelope and events")
        rec = self.recorded[self.index] if self.index < len(self.recorded) else None
        new = self.replayed[self.index] if self.index < len(self.replayed) else None
        return (f"{where}, event {self.index} of {len(self.recorded)} recorded / "
                f"{len(self.replayed)} replayed: recorded {_show(rec)}, replayed {_show(new)}")


def _show(event: Any) -> str:
    if event is None:
        return "nothing"
    return msgspec.json.encode(event).decode()


@dataclass
class Audit:
    """What `check` found."""

    entries: int = 0
    events: int = 0
    records: int = 0
    digest: str = ""
    head_hash: str = ""
    last_seq: int = 0
    corrupt: str = ""                  # the journal layer's complaint, if any
    difference: Difference | None = None

    @property
    def ok(self) -> bool:
        return not self.corrupt and self.difference is None


class _Diverged(Exception):
    def __init__(self, difference: Difference) -> None:
        self.difference = difference


class _RecordingReader:
    """A read-only journal that remembers the record `rebuild` is at, so the
    hook can compare with its raw payload."""

    def __init__(self, source: Source) -> None:
        self._journal = source.journal()
        self.current: Record | None = None
        self.records = 0

    @property
    def last_seq(self) -> int:
        return self._journal.last_seq

    def read(self, from_seq: int = 1, *, from_ts: int | None = None) -> Iterator[Record]:
        bar = Progress("checking", max(0, self._journal.last_seq - from_seq + 1))
        try:
            for rec in self._journal.read(from_seq, from_ts=from_ts, verify_chain=True):
                self.current = rec
                self.records += 1
                yield rec
                bar.advance()
        finally:
            bar.close()


def check(source: Source) -> Audit:
    """Verify the journal, then re-run it through a fresh engine (see the module doc)."""
    audit = Audit()
    try:
        report = verify_journal(source.journal_dir)
    except JournalCorrupt as bad:
        audit.corrupt = str(bad)
        return audit
    audit.head_hash = report.head_hash
    audit.last_seq = report.last_seq
    reader = _RecordingReader(source)
    digest = hashlib.sha256()

    def compare(entry: Entry, events: list[Any]) -> None:
        rec = reader.current
        assert rec is not None and rec.seq == entry.env.seq
        replayed = encode_entry(Entry(entry.env, events))
        if replayed != rec.payload:
            raise _Diverged(_difference(rec, entry, events))
        digest.update(encode(events))
        audit.entries += 1
        audit.events += len(events)

    try:
        rebuild(journal=reader, use_snapshot=False, on_entry=compare)
    except _Diverged as diverged:
        audit.difference = diverged.difference
    except JournalCorrupt as bad:
        audit.corrupt = str(bad)
    except RecoveryError as bad:
        audit.corrupt = f"record {_at(reader)}: {bad}"
    except DecodeError as bad:
        audit.corrupt = f"record {_at(reader)}: its payload is not an entry of this schema: {bad}"
    audit.records = reader.records
    audit.digest = digest.hexdigest()
    return audit


def _at(reader: _RecordingReader) -> str:
    return str(reader.current.seq) if reader.current is not None else "?"


def _difference(rec: Record, entry: Entry, events: list[Any]) -> Difference:
    recorded = list(entry.events)
    command = type(entry.env.cmd).__name__
    for index in range(max(len(recorded), len(events))):
        a = recorded[index] if index < len(recorded) else None
        b = events[index] if index < len(events) else None
        if a is None or b is None or encode(a) != encode(b):
            return Difference(seq=rec.seq, ts=rec.ts, command=command, index=index,
                              recorded=recorded, replayed=events)
    return Difference(seq=rec.seq, ts=rec.ts, command=command, index=-1, recorded=recorded,
                      replayed=events)
