"""The one recovery path: latest snapshot, then the journal after it.

Server start-up and every analyst's replay call `rebuild`. It loads the
newest intact snapshot at or before the target (checking it belongs to this
journal), then applies each ENTRY record after it through `Engine.apply`,
exactly as the engine first did. ``on_entry(entry, new_events)`` lets replay
tools compare what the engine says now with what it said then.

A snapshot is written only once the journal holds its seq durably, so the
writer's start passes the newest one's seq (`snapshot_floor`) to
`Journal.open`, which refuses to start on a journal ending before it rather
than cut acknowledged records; snapshots beyond the end of a journal cut on
purpose (`lotex journal repair`, durability ``none``) are moved aside
(`set_aside_snapshots`).

Data directory layout: see `recorder.layout` (DATA/journal/, DATA/snapshots/).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Protocol, Iterator

from exchange.codec import Entry, decode_entry, decode_entry_envelope, encode
from exchange.engine import Engine
from recorder import layout
from recorder.format import KIND_ENTRY, Record
from recorder.journal import Journal
from recorder.snapshots import find_snapshot, newest_seq, set_aside, write_snapshot

OnEntry = Callable[[Entry, list[Any]], None]


class JournalReader(Protocol):
    @property
    def last_seq(self) -> int: ...

    def read(self, from_seq: int = 1, *, from_ts: int | None = None) -> Iterator[Record]: ...


class RecoveryError(Exception):
    """The snapshot and the journal do not fit together, or a record is not
    the entry its place says it is."""


class ReplayDiverged(RecoveryError):
    """Replaying an entry produced events other than those journaled."""

    def __init__(self, seq: int, journaled: list[Any], replayed: list[Any]) -> None:
        self.seq = seq
        self.journaled = journaled
        self.replayed = replayed
        super().__init__(f"replaying seq {seq} gave other events than the journal holds")


def rebuild(data_dir: str | os.PathLike | None = None, *, journal_dir: str | os.PathLike | None = None,
            snapshot_dir: str | os.PathLike | None = None, journal: JournalReader | None = None,
            upto_seq: int | None = None, upto_ts: int | None = None, use_snapshot: bool = True,
            on_entry: OnEntry | None = None, check_events: bool = False) -> Engine:
    """Rebuild the engine as of ``upto_seq`` / ``upto_ts`` (default: the end).

    Give a data directory, or ``journal_dir`` (and ``snapshot_dir``), or an
    open ``journal`` (any backend; e.g. the server's own writer after it
    recovered). Replay stops before the first entry past ``upto_seq`` or
    with ``env.ts`` past ``upto_ts``. ``check_events`` raises
    `ReplayDiverged` when an entry's events differ byte for byte from the
    journaled ones. O(snapshot + entries replayed). Without ``on_entry`` and
    ``check_events`` only the envelopes are decoded (the events are re-made).
    """
    if journal is None:
        if journal_dir is None:
            if data_dir is None:
                raise TypeError("rebuild needs data_dir, journal_dir or journal")
            journal_dir = layout.journal_dir(data_dir)
        journal = Journal.open_readonly(journal_dir)
    if snapshot_dir is None and data_dir is not None:
        snapshot_dir = layout.snapshot_dir(data_dir)
    target = journal.last_seq if upto_seq is None else min(upto_seq, journal.last_seq)

    engine = Engine()
    start = 1
    snap = None
    if use_snapshot and snapshot_dir is not None and target > 0:
        snap = find_snapshot(snapshot_dir, upto_seq=target, upto_ts=upto_ts)
    if snap is not None:
        engine = Engine.restore(snap.data)
        if engine.state.last_seq != snap.seq:
            raise RecoveryError(f"snapshot {snap.seq} holds a state of seq {engine.state.last_seq}")
        start = snap.seq + 1

    records = journal.read(snap.seq if snap is not None else 1)
    if snap is not None:
        covered = next(iter(records), None)
        if covered is None or covered.seq != snap.seq:
            raise RecoveryError(f"the journal has no record {snap.seq} for the snapshot to follow")
        if any(snap.chain) and covered.chain != snap.chain:
            raise RecoveryError(f"snapshot {snap.seq} does not belong to this journal (chain hash differs)")
    apply = engine.apply
    whole = check_events or on_entry is not None   # else the journaled events go unread
    for rec in records:
        seq = rec.seq
        if seq < start:
            continue
        if seq > target:
            break
        if rec.kind != KIND_ENTRY:
            continue
        if whole:
            entry = decode_entry(rec.payload)
            env = entry.env
        else:
            env = decode_entry_envelope(rec.payload)
        if upto_ts is not None and env.ts > upto_ts:
            break
        if env.seq != seq:
            raise RecoveryError(f"record {seq} holds the envelope of seq {env.seq}")
        events = apply(env)
        if check_events and encode(events) != encode(entry.events):
            raise ReplayDiverged(seq, entry.events, events)
        if on_entry is not None:
            on_entry(entry, events)
    return engine


def snapshot_floor(data_dir: str | os.PathLike) -> int:
    """Return the newest seq an engine or gateway snapshot of ``data_dir``
    covers (0: none): the journal held every record up to it durably when it
    was written (durability group or every). O(snapshots)."""
    return max(newest_seq(layout.snapshot_dir(data_dir)),
               newest_seq(layout.gateway_snapshot_dir(data_dir)))


def set_aside_snapshots(data_dir: str | os.PathLike, last_seq: int) -> list[os.PathLike]:
    """Move the engine and gateway snapshots of ``data_dir`` beyond the
    journal's end ``last_seq`` into a dated aside directory beside them;
    return where they went. O(snapshots)."""
    return [*set_aside(layout.snapshot_dir(data_dir), last_seq),
            *set_aside(layout.gateway_snapshot_dir(data_dir), last_seq)]


def save_snapshot(engine: Engine, journal: JournalReader, snapshot_dir: str | os.PathLike, *,
                  keep: int = 3) -> os.PathLike:
    """Snapshot the engine; it must have applied exactly the journal's
    durable records (call after a commit). O(state)."""
    seq = engine.state.last_seq
    durable = getattr(journal, "durable_seq", journal.last_seq)
    if seq != journal.last_seq or durable < seq:
        raise RecoveryError(f"engine at seq {seq} but journal at {journal.last_seq} (durable {durable})")
    head = getattr(journal, "head_hash", "")
    chain = bytes.fromhex(head) if head else bytes(32)
    return write_snapshot(snapshot_dir, seq, engine.snapshot(), ts=engine.state.now, chain=chain, keep=keep)
