"""An in-memory journal with the file journal's interface and hashes.

For tests and what-if runs that need a journal but no disk. What survives a
"crash" (dropping the `MemoryJournal` without `close`) is what was
committed, kept in a `MemoryStorage` that a later `MemoryJournal.open`
reads. Record framing and the chain hash are the file journal's, so the same
appends give the same ``head_hash`` on either backend.
"""

from __future__ import annotations

import bisect
from typing import Iterator

from recorder import format as fmt
from recorder.format import Record
from recorder.journal import DURABILITY_MODES, JournalCorrupt, JournalFailed, RecordTooLarge


class MemoryStorage:
    """The committed records of a memory journal (what a crash keeps)."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.fail_syncs = False    # set to make the next commit fail (tests)


class MemoryJournal:
    """Journal interface over a list. append O(len(payload)); commit O(batch);
    read O(log n) to start by seq, O(n) by time."""

    def __init__(self, storage: MemoryStorage, durability: str, max_record: int) -> None:
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {DURABILITY_MODES}, not {durability!r}")
        self.storage = storage
        self.durability = durability
        self.max_record = max_record
        self.readonly = False
        self._pending: list[Record] = []
        self._failed: BaseException | None = None
        self._closed = False
        last = storage.records[-1] if storage.records else None
        self._last_seq = last.seq if last else 0
        self._head = last.chain if last else fmt.GENESIS
        self._durable_seq = self._last_seq

    @classmethod
    def open(cls, storage: MemoryStorage | None = None, *, durability: str = "group",
             max_record: int = 1 << 20) -> "MemoryJournal":
        return cls(storage if storage is not None else MemoryStorage(), durability, max_record)

    @classmethod
    def open_readonly(cls, storage: MemoryStorage) -> "MemoryJournal":
        journal = cls(storage, "none", fmt.HARD_MAX_RECORD)
        journal.readonly = True
        return journal

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def durable_seq(self) -> int:
        return self._durable_seq

    @property
    def head_hash(self) -> str:
        return self._head.hex()

    def append(self, ts: int, kind: int, payload: bytes) -> int:
        if self._failed is not None:
            raise JournalFailed(f"journal failed earlier: {self._failed}")
        if self._closed or self.readonly:
            raise ValueError("journal is closed" if self._closed else "journal is read-only")
        if len(payload) > self.max_record:
            raise RecordTooLarge(f"record of {len(payload)} bytes exceeds max_record {self.max_record}")
        seq = self._last_seq + 1
        _, chain = fmt.encode_record(seq, ts, kind, payload, self._head)
        self._pending.append(Record(seq, ts, kind, bytes(payload), chain))
        self._last_seq = seq
        self._head = chain
        if self.durability == "every":
            self._flush()
        return seq

    def append_many(self, kind: int, records: list[tuple[int, bytes]]) -> int:
        """Append ``(ts, payload)`` records of one ``kind``; return the last seq."""
        for ts, payload in records:
            self.append(ts, kind, payload)
        return self._last_seq

    def commit(self) -> int:
        if self._failed is not None:
            raise JournalFailed(f"journal failed earlier: {self._failed}")
        if self._pending:
            self._flush()
        return self._durable_seq

    def _flush(self) -> None:
        if self.storage.fail_syncs and self.durability != "none":
            self._failed = OSError("injected sync failure")
            self._pending.clear()
            raise JournalFailed("journal sync failed; nothing more is accepted")
        self.storage.records.extend(self._pending)
        self._pending.clear()
        self._durable_seq = self._last_seq

    def read(self, from_seq: int = 1, *, from_ts: int | None = None,
             verify_chain: bool = False) -> Iterator[Record]:
        records = self.storage.records
        start = bisect.bisect_left(records, max(1, from_seq), key=lambda r: r.seq)
        if from_ts is not None:
            while start < len(records) and records[start].ts < from_ts:
                start += 1
        chain = records[start - 1].chain if start > 0 else fmt.GENESIS
        for rec in records[start:]:
            if verify_chain:
                _, chain = fmt.encode_record(rec.seq, rec.ts, rec.kind, rec.payload, chain)
                if chain != rec.chain:
                    raise JournalCorrupt("memory", f"record {rec.seq}", fmt.BAD_CHAIN)
            yield rec

    def close(self) -> None:
        if not self._closed:
            if self._pending and self._failed is None:
                self.commit()
            self._closed = True
