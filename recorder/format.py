"""The journal's bytes: segment header, record framing, footer, index file.

Pure functions over buffers; the file handling lives in `recorder.journal`.
All integers are little-endian. A segment file is::

    header   64 bytes  magic "LOTEXJNL", version u32, max_record u32,
                       first_seq u64, prev_chain 32 bytes (chain head before
                       this segment), reserved u32, crc u32 of bytes 0..60
    record*            see below, seq = first_seq, first_seq + 1, ...
    footer   64 bytes  only in a closed segment: magic "LOTEXEND",
                       last_seq u64, count u64, chain 32 bytes (head after the
                       last record), reserved u32, crc u32 of bytes 0..60

A record is ``32 + length + 32`` bytes::

    crc      u32   CRC-32 (zlib) of every byte of the record after this field
    length   u32   payload length, at most the segment's max_record
    seq      u64
    ts       i64   ns UTC
    kind     u32   1 = ENTRY (msgpack of exchange.codec.Entry)
    reserved u32   0
    payload  length bytes
    chain    32    SHA-256(previous chain || bytes 4 .. 32+length of this record)

The chain starts from 32 zero bytes (`GENESIS`). A footer can never be
mistaken for a record: its bytes 4..8 read as a length above `HARD_MAX_RECORD`.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import NamedTuple

import msgspec

SEGMENT_MAGIC = b"LOTEXJNL"
FOOTER_MAGIC = b"LOTEXEND"
INDEX_MAGIC = b"LOTEXIDX"
SNAPSHOT_MAGIC = b"LOTEXSNP"
VERSION = 1
GENESIS = bytes(32)
HASH_SIZE = 32

KIND_ENTRY = 1
"""Record kind of an `exchange.codec.Entry`: one command and all its events."""

HARD_MAX_RECORD = 1 << 30
"""No configuration may allow a larger payload (keeps footers unambiguous)."""

HEADER = struct.Struct("<8sIIQ32sII")      # 64 bytes
FOOTER = struct.Struct("<8sQQ32sII")       # 64 bytes
RECORD_HEAD = struct.Struct("<IIQqII")     # 32 bytes: crc, length, seq, ts, kind, reserved
RECORD_BODY_HEAD = struct.Struct("<IQqII")  # the 28 bytes after crc
U32 = struct.Struct("<I")
HEADER_SIZE = HEADER.size
FOOTER_SIZE = FOOTER.size
RECORD_OVERHEAD = RECORD_HEAD.size + HASH_SIZE  # 64

assert HEADER_SIZE == 64 and FOOTER_SIZE == 64 and RECORD_HEAD.size == 32

# Why a scan stopped.
CLEAN = "clean"                  # consumed every byte up to `end`
INCOMPLETE = "incomplete"        # a record runs past `end` (torn write or short buffer)
BAD_LENGTH = "bad length"        # length above max_record (or a footer)
BAD_CHECKSUM = "bad checksum"
BAD_SEQUENCE = "bad sequence"
BAD_CHAIN = "bad chain"
LIMIT = "limit"                  # stopped after `limit` records as asked


class Record(msgspec.Struct, frozen=True, gc=False):
    """One journal record as read back: its place, time, kind, payload and
    the chain hash over it and everything before it."""

    seq: int
    ts: int
    kind: int
    payload: bytes
    chain: bytes

    @property
    def chain_hex(self) -> str:
        return self.chain.hex()


class Scan(NamedTuple):
    """Where a scan stopped and the state after the last good record."""

    pos: int          # offset just after the last good record
    next_seq: int     # sequence the next record must carry
    chain: bytes      # chain hash after the last good record
    count: int        # good records scanned
    max_ts: int       # largest ts seen (or the value passed in)
    reason: str       # CLEAN, INCOMPLETE, LIMIT or a BAD_* reason


def encode_record(seq: int, ts: int, kind: int, payload: bytes, prev_chain: bytes) -> tuple[bytes, bytes]:
    """Frame one record; return (record bytes, its chain hash). O(len(payload))."""
    body = RECORD_BODY_HEAD.pack(len(payload), seq, ts, kind, 0) + payload
    chain = hashlib.sha256(prev_chain + body).digest()
    return U32.pack(zlib.crc32(chain, zlib.crc32(body))) + body + chain, chain


U64 = struct.Struct("<Q")


def find_record(buf: bytes, start: int, end: int, first_seq: int, count: int,
                max_record: int) -> tuple[int, int] | None:
    """Return (offset, seq) of the first record in ``buf[start:end]`` whose
    CRC holds and whose seq is one of ``first_seq .. first_seq + count - 1``,
    or None: a search by each seq's bytes, not a walk of the framing, so it
    finds records after bytes that no longer frame. O(count x (end - start))
    in C's `bytes.find`."""
    found: tuple[int, int] | None = None
    mv = memoryview(buf)
    for seq in range(first_seq, first_seq + count):
        needle = U64.pack(seq)
        at = buf.find(needle, start + 8, end)
        while at >= 0 and (found is None or at - 8 < found[0]):
            pos = at - 8
            if pos + RECORD_HEAD.size > end:
                break
            crc, length, _, _, _, _ = RECORD_HEAD.unpack_from(buf, pos)
            nxt = pos + RECORD_OVERHEAD + length
            if length <= max_record and nxt <= end and zlib.crc32(mv[pos + 4:nxt]) == crc:
                found = (pos, seq)
                break
            at = buf.find(needle, at + 1, end)
    return found


def encode_header(first_seq: int, prev_chain: bytes, max_record: int) -> bytes:
    head = HEADER.pack(SEGMENT_MAGIC, VERSION, max_record, first_seq, prev_chain, 0, 0)[:60]
    return head + U32.pack(zlib.crc32(head))


class Header(NamedTuple):
    first_seq: int
    prev_chain: bytes
    max_record: int


def decode_header(data: bytes) -> Header | str:
    """Return the header, or a sentence saying what is wrong with it."""
    if len(data) < HEADER_SIZE:
        return "header incomplete"
    magic, version, max_record, first_seq, prev_chain, _, crc = HEADER.unpack_from(data, 0)
    if zlib.crc32(memoryview(data)[:60]) != crc:
        return "header bad checksum"
    if magic != SEGMENT_MAGIC:
        return "header bad magic"
    if version != VERSION:
        return f"header version {version} unknown"
    if max_record > HARD_MAX_RECORD:
        return "header max_record too large"
    return Header(first_seq, prev_chain, max_record)


def encode_footer(last_seq: int, count: int, chain: bytes) -> bytes:
    head = FOOTER.pack(FOOTER_MAGIC, last_seq, count, chain, 0, 0)[:60]
    return head + U32.pack(zlib.crc32(head))


class Footer(NamedTuple):
    last_seq: int
    count: int
    chain: bytes


def decode_footer(data: bytes | memoryview) -> Footer | str:
    """Return the footer, or a sentence saying what is wrong with it."""
    if len(data) != FOOTER_SIZE:
        return "footer missing"
    magic, last_seq, count, chain, _, crc = FOOTER.unpack_from(data, 0)
    if magic != FOOTER_MAGIC:
        return "footer missing"
    if zlib.crc32(memoryview(data)[:60]) != crc:
        return "footer bad checksum"
    return Footer(last_seq, count, chain)


def scan(buf: bytes, pos: int, end: int, next_seq: int, chain: bytes, max_record: int, *,
         verify_chain: bool = False, out: list[Record] | None = None, skip_below: int = 0,
         limit: int = -1, index: list[tuple[int, int, int]] | None = None,
         index_every: int = 1024, first_seq: int = 1, max_ts: int = -(1 << 63)) -> Scan:
    """Check records in ``buf[pos:end]`` until the first that is not good.

    A record is good when its length is at most ``max_record``, it ends by
    ``end``, its CRC holds, its seq is ``next_seq`` (then +1 each), and, with
    ``verify_chain``, its stored chain hash equals SHA-256 of the previous
    chain and its bytes. Good records with seq >= ``skip_below`` are appended
    to ``out`` as `Record`s; every ``index_every``-th record (counted from
    ``first_seq``) adds ``(seq, offset, largest ts before it)`` to ``index``.
    O(bytes scanned); a left fold, so a scan may resume at any record boundary
    with the state a previous scan returned there.
    """
    crc32 = zlib.crc32
    sha256 = hashlib.sha256
    unpack = RECORD_HEAD.unpack_from
    mv = memoryview(buf)
    count = 0
    last_end = -1
    reason = CLEAN
    stop = end - RECORD_OVERHEAD
    while pos <= stop:
        if count == limit:
            reason = LIMIT
            break
        crc, length, seq, ts, kind, _ = unpack(buf, pos)
        if length > max_record:
            reason = BAD_LENGTH
            break
        nxt = pos + RECORD_OVERHEAD + length
        if nxt > end:
            reason = INCOMPLETE
            break
        if crc32(mv[pos + 4:nxt]) != crc:
            reason = BAD_CHECKSUM
            break
        if seq != next_seq:
            reason = BAD_SEQUENCE
            break
        if verify_chain:
            stored = buf[nxt - 32:nxt]
            if sha256(chain + mv[pos + 4:nxt - 32]).digest() != stored:
                reason = BAD_CHAIN
                break
            chain = stored
        if index is not None and (seq - first_seq) % index_every == 0:
            index.append((seq, pos, max_ts))
        if ts > max_ts:
            max_ts = ts
        if out is not None and seq >= skip_below:
            out.append(Record(seq, ts, kind, buf[pos + 32:nxt - 32], buf[nxt - 32:nxt]))
        next_seq = seq + 1
        count += 1
        last_end = nxt
        pos = nxt
    else:
        if pos < end:
            reason = INCOMPLETE
    if not verify_chain and last_end >= 0:
        chain = bytes(mv[last_end - 32:last_end])
    return Scan(pos, next_seq, chain, count, max_ts, reason)


# --------------------------------------------------------------------------
# index files: a sparse, rebuildable map seq/ts -> offset of a closed segment
# --------------------------------------------------------------------------

INDEX_HEAD = struct.Struct("<8sIIQQQq")   # magic, version, entries, first_seq, last_seq, seg_size, max_ts
INDEX_ENTRY = struct.Struct("<QQq")       # seq, offset, largest ts before it


class SegmentIndex(NamedTuple):
    """Sparse index of one segment: entries (seq, offset, largest ts before
    the record) in seq order, the segment's largest ts and size."""

    entries: list[tuple[int, int, int]]
    max_ts: int
    size: int


def encode_index(first_seq: int, last_seq: int, index: SegmentIndex) -> bytes:
    parts = [INDEX_HEAD.pack(INDEX_MAGIC, VERSION, len(index.entries), first_seq, last_seq,
                             index.size, index.max_ts)]
    parts.extend(INDEX_ENTRY.pack(*entry) for entry in index.entries)
    data = b"".join(parts)
    return data + U32.pack(zlib.crc32(data))


def decode_index(data: bytes, first_seq: int, last_seq: int, seg_size: int) -> SegmentIndex | None:
    """Return the index if it is intact and describes exactly this segment."""
    if len(data) < INDEX_HEAD.size + 4 or zlib.crc32(memoryview(data)[:-4]) != U32.unpack_from(data, len(data) - 4)[0]:
        return None
    magic, version, n, first, last, size, max_ts = INDEX_HEAD.unpack_from(data, 0)
    if (magic != INDEX_MAGIC or version != VERSION or (first, last, size) != (first_seq, last_seq, seg_size)
            or len(data) != INDEX_HEAD.size + n * INDEX_ENTRY.size + 4):
        return None
    entries = [INDEX_ENTRY.unpack_from(data, INDEX_HEAD.size + i * INDEX_ENTRY.size) for i in range(n)]
    return SegmentIndex(entries, max_ts, size)
