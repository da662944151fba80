"""The determinism audit (`lotex replay check`): same journal, same events, byte for byte.

Journals from seeded random command streams must pass; a record whose event
was changed and re-framed with a valid CRC and chain must fail in the engine
comparison, naming the record; a raw flipped byte must fail in the journal
layer, naming the record too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from collections import deque

import pytest

from exchange.codec import encode
from gateway.cli import main
from recorder import layout
from recorder.format import KIND_ENTRY
from recorder.journal import Journal, read_journal
from replay.audit import check
from replay.sample import record_sample
from replay.source import Source
from tests.integration.replay_fixture import record_random

SEED = int(os.environ.get("LOTEX_REPLAY_SEED", "20260302"))


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("sample")
    record_sample(data)
    return data


def test_the_sample_session_replays_byte_identical(sample_dir, capsys):
    audit = check(Source.open(sample_dir))
    assert audit.ok, audit
    records = list(read_journal(layout.journal_dir(sample_dir)))
    digest = hashlib.sha256()
    events = 0
    from exchange.codec import decode_entry
    for rec in records:
        entry = decode_entry(rec.payload)
        digest.update(encode(entry.events))
        events += len(entry.events)
    assert (audit.entries, audit.events, audit.digest) == (len(records), events, digest.hexdigest())
    assert main(["replay", "check", str(sample_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok {len(records)} entries, {events} events") and digest.hexdigest() in out


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_random_streams_replay_byte_identical(tmp_path, offset):
    seed = SEED + offset
    counts = record_random(tmp_path, seed, 10_000, snapshot_every=2_500, segment_bytes=512 << 10)
    source = Source.open(tmp_path)
    assert len(list(layout.journal_dir(tmp_path).glob("*.seg"))) > 1, "several segments"
    audit = check(source)
    assert audit.ok, f"seed {seed}: {audit.corrupt or audit.difference.describe()}"
    assert (audit.entries, audit.events) == (counts["entries"], counts["events"]), f"seed {seed}"
    # the snapshot path and the journal-only path reach the same state
    with_snapshots = source.rebuild()
    journal_only = source.rebuild(use_snapshot=False)
    assert plain(with_snapshots.state) == plain(journal_only.state), f"seed {seed}"
    assert with_snapshots.state.last_seq == counts["entries"]


def plain(obj, depth=0):
    """The value of an object graph as builtins (dicts, lists, tuples, scalars),
    whatever sharing of references pickling gave it."""
    assert depth < 60
    if isinstance(obj, (int, str, bytes, float, bool, type(None))):
        return obj
    if isinstance(obj, dict):
        return [(plain(k, depth + 1), plain(v, depth + 1)) for k, v in obj.items()]
    if isinstance(obj, (list, tuple, deque)) or type(obj).__name__ in ("SortedList",
                                                                        "SortedKeyList"):
        return [plain(v, depth + 1) for v in obj]
    if type(obj).__name__ in ("SortedDict",):
        return [(plain(k, depth + 1), plain(v, depth + 1)) for k, v in obj.items()]
    fields = getattr(obj, "__struct_fields__", None) or getattr(obj, "__slots__", None)
    values = ({name: getattr(obj, name) for name in fields if hasattr(obj, name)}
              if fields else dict(vars(obj)))
    if hasattr(obj, "__dict__") and fields:
        values.update(vars(obj))
    return (type(obj).__name__, [(k, plain(v, depth + 1)) for k, v in values.items()])


def _reframe(src, dst, change):
    """Copy a journal record by record into a new one, passing each payload
    through ``change(seq, payload)``: every CRC and chain hash is valid."""
    out = Journal.open(layout.journal_dir(dst))
    for rec in read_journal(layout.journal_dir(src)):
        assert out.append(rec.ts, rec.kind, change(rec.seq, rec.payload)) == rec.seq
    out.close()


def test_a_changed_event_byte_reframed_validly_fails_in_the_engine_comparison(sample_dir, tmp_path,
                                                                            capsys):
    # entry 43: 102 bids on L-ENG; its events CreditChanged, BidConfirmed, BidAccepted.
    # Change the BidAccepted's paddle 102 (msgpack fixint 0x66) to 103: one byte.
    def change(seq, payload):
        if seq != 43:
            return payload
        at = payload.rindex(b"\xa6paddle\x66")
        assert payload.index(b"BidAccepted") < at
        return payload[:at + 7] + b"\x67" + payload[at + 8:]

    _reframe(sample_dir, tmp_path, change)
    audit = check(Source.open(tmp_path))
    assert audit.corrupt == ""                        # the journal layer finds nothing wrong
    assert audit.difference is not None
    assert (audit.difference.seq, audit.difference.command, audit.difference.index) == \
        (43, "PlaceBid", 2)
    assert audit.entries == 42                         # every entry before it was identical
    described = audit.difference.describe()
    assert "record 43" in described and '"paddle":103' in described and '"paddle":102' in described
    assert main(["replay", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL after 42 identical entries: record 43 (PlaceBid")


def test_a_dropped_event_reframed_validly_is_caught(sample_dir, tmp_path):
    from exchange.codec import Entry, decode_entry, encode_entry

    def change(seq, payload):
        if seq != 70:
            return payload
        entry = decode_entry(payload)
        return encode_entry(Entry(entry.env, entry.events[:-1]))

    _reframe(sample_dir, tmp_path, change)
    audit = check(Source.open(tmp_path))
    assert audit.difference is not None and audit.difference.seq == 70


def _record_offset(segment: bytes, seq: int) -> tuple[int, int]:
    """(offset, payload length) of record ``seq`` in a segment's bytes."""
    pos = 64
    while True:
        _, length, at_seq = struct.unpack_from("<IIQ", segment, pos)
        if at_seq == seq:
            return pos, length
        pos += 64 + length


def test_a_raw_flipped_byte_fails_in_the_journal_layer(sample_dir, tmp_path, capsys):
    shutil.copytree(sample_dir, tmp_path / "copy")
    (segment,) = layout.journal_dir(tmp_path / "copy").glob("*.seg")
    data = bytearray(segment.read_bytes())
    pos, length = _record_offset(bytes(data), 43)
    data[pos + 32 + length // 2] ^= 0x01
    segment.write_bytes(bytes(data))
    audit = check(Source.open(tmp_path / "copy"))
    assert not audit.ok and audit.difference is None
    assert "record 43" in audit.corrupt and "checksum" in audit.corrupt
    assert main(["replay", "check", str(tmp_path / "copy")]) == 1
    assert "record 43" in capsys.readouterr().out


def test_check_of_a_directory_without_a_journal(tmp_path, capsys):
    assert main(["replay", "check", str(tmp_path)]) == 2
    assert "no lotex journal" in capsys.readouterr().err
    assert KIND_ENTRY == 1
