"""The journal: an append-only, checksummed, hash-chained log in segment files.

One writer appends records (`Journal.append`), makes them durable in one
write and one fdatasync per batch (`Journal.commit`, durability ``group``),
and only then may the caller acknowledge them. Readers iterate records from
a sequence number or a time (`Journal.read`, `read_journal`). The bytes are
described in `recorder.format`.

Costs: append O(len(payload)) (CRC-32 and one SHA-256); commit one write
and at most one fdatasync; opening reads the headers and footers of closed
segments and scans the live one, O(live segment); read seeks with a sparse
index, O(1024 records) to start, then O(bytes read).

Preallocation (``preallocate`` bytes, `Journal.reserve`): the writer may
keep zeros written and synced ahead of the live segment's end, so a commit
overwrites blocks the file already has and its fdatasync flushes data only,
no size or extent change (ext4 here: fdatasync p50 170 -> 115 us, p99
260-730 -> 180 us, CPU per commit 60 -> 40 us). A zero tail after the last
record of the live segment is free space, not damage: readers stop there,
verification accepts it, and reopening for writing truncates it.

Records hold sealed bids, reserves and identities: the writer creates the
directory 0700 and every file in it 0600.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import hashlib
import mmap
import os
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from recorder import format as fmt
from recorder.format import Record

__all__ = ["Cut", "Journal", "JournalCorrupt", "JournalFailed", "JournalLocked", "Record",
           "RecordTooLarge", "VerifyReport", "read_journal", "verify_journal", "verify_segment",
           "scan_live", "check_closed", "segment_records",
           "DURABILITY_MODES"]

DURABILITY_MODES = ("group", "every", "none")
_pack_body = fmt.RECORD_BODY_HEAD.pack
_pack_u32 = fmt.U32.pack
_sha256 = hashlib.sha256
_crc32 = zlib.crc32
INDEX_EVERY = 128           # records between sparse index entries
READ_BATCH = 4096           # records decoded per scan call while reading, at most
FIRST_READ_BATCH = 16       # ... in the first call, growing 4x a call: a point read scans little
SEGMENT_SUFFIX = ".seg"
INDEX_SUFFIX = ".idx"


class JournalCorrupt(Exception):
    """Damage the journal may not repair by itself: anything in a closed
    segment, a bad header, or segments that do not link up."""

    def __init__(self, segment: str, what: str, reason: str, offset: int | None = None) -> None:
        self.segment = segment
        self.what = what          # "record 57", "header", "footer", ...
        self.reason = reason
        self.offset = offset
        at = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"segment {segment}: {what}{at}: {reason}")


class JournalFailed(Exception):
    """A write or sync failed; the journal accepts and acknowledges nothing more."""


class JournalLocked(Exception):
    """Another writer holds the journal directory."""


class RecordTooLarge(ValueError):
    """The payload exceeds the journal's max_record."""


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (created, renamed, removed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (pwrite: no file position involved)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _all_zero(data: bytes, start: int) -> bool:
    """Whether every byte of ``data`` from ``start`` on is zero. O(len) in C."""
    return data.count(0, start) == len(data) - start


def _read_file(path: Path, offset: int = 0, end: int | None = None) -> bytes:
    """Read ``path[offset:end]`` (to the end of file if ``end`` is None) in one go."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if end is None:
            end = os.fstat(fd).st_size
        size = max(0, end - offset)
        parts = []
        while size > 0:
            chunk = os.pread(fd, min(size, 1 << 30), offset)
            if not chunk:
                break
            parts.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        os.close(fd)


@contextmanager
def _whole_file(path: Path, mapped: bool) -> Iterator[bytes]:
    """Yield the file's bytes: memory-mapped when ``mapped`` (only for files
    that cannot shrink while we look: closed segments, or the live one under
    the writer's lock), else read in one go."""
    if not mapped:
        yield _read_file(path)
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        mm = mmap.mmap(fd, size, prot=mmap.PROT_READ) if size else None
    finally:
        os.close(fd)
    if mm is None:
        yield b""
        return
    try:
        yield mm  # type: ignore[misc]
    finally:
        try:
            mm.close()
        except BufferError:
            pass  # a view is still alive somewhere; the map closes when it dies


class Segment:
    """What the journal knows of one segment file."""

    __slots__ = ("path", "name", "first_seq", "prev_chain", "max_record", "closed",
                 "last_seq", "chain", "size", "index")

    def __init__(self, path: Path, first_seq: int, prev_chain: bytes, max_record: int) -> None:
        self.path = path
        self.name = path.name
        self.first_seq = first_seq
        self.prev_chain = prev_chain
        self.max_record = max_record
        self.closed = False
        self.last_seq = first_seq - 1
        self.chain = prev_chain
        self.size = fmt.HEADER_SIZE     # bytes of header + good records (+ footer if closed)
        self.index: fmt.SegmentIndex | None = None


def _list_segments(path: Path) -> list[tuple[int, Path]]:
    found = []
    for entry in os.listdir(path):
        stem, dot, suffix = entry.partition(".")
        if "." + suffix == SEGMENT_SUFFIX and len(stem) == 20 and stem.isdigit():
            found.append((int(stem), path / entry))
    found.sort()
    return found


def check_closed(path: Path, head: bytes, tail: bytes, size: int, first_seq: int,
                 prev_chain: bytes) -> Segment:
    """Check a closed segment's header and footer, given its first and last
    64 bytes and its size (not its records: `segment_records` does). O(1)."""
    name = path.name
    header = fmt.decode_header(head)
    if isinstance(header, str):
        raise JournalCorrupt(name, "header", header, 0)
    if header.first_seq != first_seq:
        raise JournalCorrupt(name, "header", f"first seq {header.first_seq}, expected {first_seq}", 0)
    if header.prev_chain != prev_chain:
        raise JournalCorrupt(name, "header", "previous chain hash does not match the previous segment", 0)
    if size < fmt.HEADER_SIZE + fmt.FOOTER_SIZE:
        raise JournalCorrupt(name, "footer", "footer missing", size)
    footer = fmt.decode_footer(tail)
    if isinstance(footer, str):
        raise JournalCorrupt(name, "footer", footer, size - fmt.FOOTER_SIZE)
    if footer.count != footer.last_seq - first_seq + 1 or footer.count < 0:
        raise JournalCorrupt(name, "footer", f"count {footer.count} does not match last seq {footer.last_seq}",
                             size - fmt.FOOTER_SIZE)
    seg = Segment(path, first_seq, prev_chain, header.max_record)
    seg.closed = True
    seg.last_seq = footer.last_seq
    seg.chain = footer.chain
    seg.size = size
    return seg


def _check_closed_file(path: Path, first_seq: int, prev_chain: bytes) -> Segment:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, fmt.HEADER_SIZE, 0)
        tail = os.pread(fd, fmt.FOOTER_SIZE, max(0, size - fmt.FOOTER_SIZE))
    finally:
        os.close(fd)
    return check_closed(path, head, tail, size, first_seq, prev_chain)


class LiveScan(NamedTuple):
    """What recovery found in the live segment."""

    segment: Segment          # its valid prefix (closed if a valid footer ends it)
    cut: int | None           # offset to truncate at, or None if nothing follows the prefix
    header_torn: bool         # the header never got written whole (no records can follow)
    reason: str = ""          # why the prefix ends where it does (a `recorder.format` reason)


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an `OSError` that names no file as one naming ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc


def _create_aside(path: Path, offset: int) -> tuple[int, Path]:
    """Create the file for bytes cut from segment ``path`` at ``offset``:
    ``NAME.seg.OFFSET.cut``, or ``NAME.seg.OFFSET.N.cut`` (N = 2, 3, ...)
    if an earlier cut at that offset holds the name: never written over.
    Return its descriptor and path."""
    n = 1
    while True:
        suffix = f"{offset}.cut" if n == 1 else f"{offset}.{n}.cut"
        aside = path.with_name(f"{path.name}.{suffix}")
        try:
            return os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), aside
        except FileExistsError:
            n += 1


class Cut(NamedTuple):
    """What opening the journal moved aside from the live segment's end."""

    segment: str              # the live segment's file name
    offset: int               # where its valid prefix ends, now its size
    bytes: int                # bytes moved aside (zeros at the very end not counted)
    records: int              # good records (by CRC) among them, in sequence
    last_seq: int             # the journal's last seq after the cut
    aside: Path               # the NAME.seg.OFFSET[.N].cut file holding them


def live_header(head: bytes, size: int, path: Path, first_seq: int, prev_chain: bytes) -> Segment | None:
    """Check the live segment's header, given its first bytes and the file
    size; return the (not yet scanned) segment, or None if the header was
    torn while being created (it is synced before any record, so nothing
    follows it). Raises `JournalCorrupt` for a bad header with data after it."""
    header = fmt.decode_header(head)
    if isinstance(header, str):
        if size <= fmt.HEADER_SIZE:
            return None
        raise JournalCorrupt(path.name, "header", header, 0)
    if header.first_seq != first_seq:
        raise JournalCorrupt(path.name, "header", f"first seq {header.first_seq}, expected {first_seq}", 0)
    if header.prev_chain != prev_chain:
        raise JournalCorrupt(path.name, "header", "previous chain hash does not match the previous segment", 0)
    return Segment(path, first_seq, prev_chain, header.max_record)


SECTOR = 512
"""A write torn by a crash leaves whole sectors unwritten (zeros here: the
journal only ever writes over zeros or past its end)."""

FOLLOWING_SEQS = 64
"""How many sequence numbers after a bad record to look for a good one."""


def scan_live(data: bytes, path: Path, first_seq: int, prev_chain: bytes, max_record: int, *,
              cut_damage: bool = False) -> LiveScan:
    """Find the longest valid prefix of the live segment's bytes: stop at the
    first bad length, bad checksum, sequence gap or unfinished record. A
    valid footer right after the prefix means the segment was closed.
    Raises `JournalCorrupt` if the header is bad while records follow it,
    and, unless ``cut_damage``, if a good record follows the first bad one
    with no unwritten sector between them: that is damage to written
    (perhaps acknowledged) records, not the unfinished last write of a crash,
    and cutting there would drop every good record after it.
    Pure; O(len(data))."""
    seg = live_header(data[:fmt.HEADER_SIZE], len(data), path, first_seq, prev_chain)
    if seg is None:
        return LiveScan(Segment(path, first_seq, prev_chain, max_record), None, True)
    index: list[tuple[int, int, int]] = []
    scan = fmt.scan(data, fmt.HEADER_SIZE, len(data), first_seq, prev_chain, seg.max_record,
                    index=index, index_every=INDEX_EVERY, first_seq=first_seq)
    seg.last_seq = scan.next_seq - 1
    seg.chain = scan.chain
    seg.size = scan.pos
    if scan.reason == fmt.BAD_LENGTH and len(data) - scan.pos == fmt.FOOTER_SIZE:
        footer = fmt.decode_footer(data[scan.pos:])
        if (not isinstance(footer, str) and footer.last_seq == seg.last_seq
                and footer.count == scan.count and footer.chain == scan.chain):
            # Closed just before a crash; the next segment was never made.
            seg.closed = True
            seg.size = len(data)
    seg.index = fmt.SegmentIndex(index, scan.max_ts, seg.size)
    cut = scan.pos if scan.pos < len(data) and not seg.closed else None
    if cut is not None and not cut_damage:
        _refuse_damage(data, path, scan.pos, scan.next_seq, scan.reason, seg.max_record)
    return LiveScan(seg, cut, False, scan.reason)


def _written_end(data: bytes, pos: int) -> int:
    """Return the offset after the last non-zero byte from ``pos`` on (``pos`` if none)."""
    return pos + len(bytes(data[pos:]).rstrip(b"\0"))


def records_after(data: bytes, pos: int, next_seq: int, max_record: int) -> int:
    """Count the good records (by CRC, each run in sequence, from ``next_seq``
    on) in the bytes after the bad record at ``pos``: what a cut there drops.
    O(len(data) - pos)."""
    end = min(len(data), _written_end(data, pos) + 4096)    # a record may end in zero bytes
    count, start = 0, pos + 1
    while True:
        found = fmt.find_record(data, start, end, next_seq, FOLLOWING_SEQS, max_record)
        if found is None:
            return count
        scan = fmt.scan(data, found[0], end, found[1], fmt.GENESIS, max_record)
        count += scan.count
        start, next_seq = scan.pos, scan.next_seq


def _refuse_damage(data: bytes, path: Path, pos: int, next_seq: int, reason: str,
                   max_record: int) -> None:
    """Raise `JournalCorrupt` if a good record follows the bad bytes at
    ``pos``, unless a whole sector of zeros lies between or the bad record
    starts a last write torn in its first sector (`_torn_first_sector`).
    O(len(data) - pos)."""
    written = _written_end(data, pos)           # the zeros after: no record
    if written == pos:
        return
    end = min(len(data), written + 4096)      # a record may end in zero bytes
    later = fmt.find_record(data, pos + 1, end, next_seq, FOLLOWING_SEQS, max_record)
    if later is None:
        return
    if _zero_sector_between(data, pos, later[0]):
        return                         # an unwritten sector: the last write, torn
    if _torn_first_sector(data, pos, later, end, max_record):
        return
    raise JournalCorrupt(path.name, f"record {next_seq}",
                         f"{reason}, but good records follow it (seq {later[1]} at offset "
                         f"{later[0]}): damage to written records, not an unfinished write; "
                         f"nothing was cut", pos)


def _zero_sector_between(data: bytes, pos: int, later: int) -> bool:
    """Whether a whole sector of zeros lies between ``pos`` and ``later``. O(later - pos)."""
    first_sector = -(-pos // SECTOR) * SECTOR
    return any(not any(data[sector:sector + SECTOR])
               for sector in range(first_sector, later - SECTOR + 1, SECTOR))


TORN_SPAN_MIN = fmt.U32.size
"""Zero bytes from a bad record's start to a sector boundary that show the
sector unwritten: at least the record's CRC field (one corrupted byte cannot
zero a span of them unless the others were zero already)."""


def _zeros_to_sector_end(data: bytes, pos: int) -> bool:
    """Whether every byte from ``pos`` to the next sector boundary is zero,
    at least `TORN_SPAN_MIN` of them."""
    boundary = (pos // SECTOR + 1) * SECTOR
    return boundary - pos >= TORN_SPAN_MIN and not any(data[pos:boundary])


def _torn_first_sector(data: bytes, pos: int, later: tuple[int, int], end: int,
                       max_record: int) -> bool:
    """Whether the bad record at ``pos`` starts a last write torn in its first
    sector: every byte from ``pos`` to the next sector boundary is zero (that
    sector as it was before the write: the valid prefix's end, then zeros), and
    the good records from ``later`` on are the file's last, broken only where a
    sector shows unwritten (zeros to a sector boundary, or a whole zero
    sector): the rest of that one write. A flipped or overwritten byte in the
    middle never zeroes the rest of a sector from a record's start, and a break
    without an unwritten sector after it is damage. What the bytes cannot tell
    from a torn write, a disk that lost an acknowledged sector's write, they
    cannot tell for a whole zero sector either: ``durable_upto`` guards it.
    O(breaks x (end - pos))."""
    if not _zeros_to_sector_end(data, pos):
        return False
    found: tuple[int, int] | None = later
    while found is not None:
        run = fmt.scan(data, found[0], end, found[1], fmt.GENESIS, max_record)
        found = fmt.find_record(data, run.pos + 1, end, run.next_seq, FOLLOWING_SEQS, max_record)
        if found is not None and not (_zeros_to_sector_end(data, run.pos)
                                      or _zero_sector_between(data, run.pos, found[0])):
            return False
    return True


class _IndexMiss(Exception):
    """The index pointed at bytes that are not the record it promised."""


def segment_records(data: bytes, seg: Segment, *, end: int, start_seq: int, start_pos: int,
                    from_seq: int, verify_chain: bool, to_the_end: bool,
                    stopped: list[tuple[int, int, str]] | None = None) -> Iterator[list[Record]]:
    """Yield batches of the good records of one segment's bytes between
    ``start_pos`` (a record boundary holding ``start_seq``) and ``end``.
    With ``to_the_end`` every byte up to ``end`` must be good records (and,
    for a closed segment, exactly up to its last seq), else `JournalCorrupt`
    names the first bad record; without it reading stops quietly at the
    first bad one (a live segment seen by a reader) and appends (offset, seq,
    reason) of where it stopped to ``stopped``. Pure; O(bytes read)."""
    closed, last_seq, end_chain = seg.closed, seg.last_seq, seg.chain   # as they are now, not after a roll
    pos, next_seq, chain = start_pos, start_seq, seg.prev_chain
    skip, batch = max(0, from_seq - start_seq), FIRST_READ_BATCH
    while True:
        out: list[Record] = []
        scan = fmt.scan(data, pos, end, next_seq, chain, seg.max_record, verify_chain=verify_chain,
                        out=out, skip_below=from_seq, limit=skip + batch)
        skip, batch = 0, min(batch * 4, READ_BATCH)
        if scan.count == 0 and scan.reason != fmt.CLEAN and pos == start_pos != fmt.HEADER_SIZE:
            raise _IndexMiss(seg.name)
        if out:
            yield out
        pos, next_seq, chain = scan.pos, scan.next_seq, scan.chain
        if scan.reason != fmt.LIMIT:
            break
    if not to_the_end:
        if stopped is not None:
            stopped.append((pos, next_seq, scan.reason))
        return
    if scan.reason != fmt.CLEAN or (closed and next_seq != last_seq + 1):
        raise JournalCorrupt(seg.name, f"record {next_seq}",
                             scan.reason if scan.reason != fmt.CLEAN else "records missing", pos)
    if verify_chain and chain != end_chain:
        raise JournalCorrupt(seg.name, "footer" if closed else f"record {next_seq - 1}",
                             "chain hash does not match the records", pos)


class Journal:
    """A directory of segment files with one writer (or a read-only view).

    Use `Journal.open(path)` to write and `Journal.open_readonly(path)` or
    `read_journal(path)` to read. Not thread-safe: one thread appends and
    commits; readers use their own instance.
    """

    def __init__(self, path: Path, durability: str, segment_bytes: int, max_record: int,
                 readonly: bool) -> None:
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be one of {DURABILITY_MODES}, not {durability!r}")
        if not 0 <= max_record <= fmt.HARD_MAX_RECORD:
            raise ValueError(f"max_record must be within 0..{fmt.HARD_MAX_RECORD}")
        if segment_bytes < fmt.HEADER_SIZE + fmt.FOOTER_SIZE:
            raise ValueError("segment_bytes too small")
        self.path = path
        self.durability = durability
        self.segment_bytes = segment_bytes
        self.max_record = max_record
        self.readonly = readonly
        self._segments: list[Segment] = []     # closed ones, then the live one
        self._fd = -1
        self._lock_fd = -1
        self._closed = False
        self._failed: BaseException | None = None
        self._buf: list[bytes] = []
        self._buf_bytes = 0
        self._last_seq = 0
        self._written_seq = 0
        self._durable_seq = 0
        self._head = fmt.GENESIS
        self._live_index: list[tuple[int, int, int]] = []
        self._live_first = 1
        self._live_max_ts = -(1 << 63)
        self._unscanned: Segment | None = None    # read-only: live segment not scanned yet
        self.preallocate = 0
        self.cut_damage = False
        self.durable_upto = 0        # records known durable: never cut below (see `open`)
        self.cut: Cut | None = None  # what opening moved aside, if anything
        self._allocated = 0          # bytes in the live segment's file (records + zeros)

    # ---------------------------------------------------------------- open

    @classmethod
    def open(cls, path: str | os.PathLike, *, durability: str = "group",
             segment_bytes: int = 64 << 20, max_record: int = 1 << 20,
             preallocate: int = 0, cut_damage: bool = False,
             durable_upto: int = 0) -> "Journal":
        """Open (creating if needed) the journal at ``path`` for writing.

        Recovers the live segment: keeps the longest valid prefix, moves the
        rest aside to ``NAME.seg.OFFSET.cut`` (numbered ``.N.cut`` if taken;
        a tail of zeros is simply cut off; `cut` says what was moved),
        truncates and syncs; an `OSError` there (a full disk) names its file
        and leaves the segment as it was. Raises `JournalCorrupt` for damage
        in a closed segment's header or footer, for a bad record of the live
        segment that good records follow (not a torn last write; with
        ``cut_damage`` it is cut like one, good records after it included),
        for a journal that would end before ``durable_upto`` (records known
        durable, e.g. by a snapshot of that seq: their loss is damage, never
        a torn write; ignored with ``cut_damage``), changing nothing, and
        `JournalLocked` if another writer has the directory. ``preallocate``: bytes of zeros `reserve`
        keeps ahead of the live segment's end (0: none).
        """
        if preallocate < 0:
            raise ValueError("preallocate must be >= 0")
        journal = cls(Path(path), durability, segment_bytes, max_record, readonly=False)
        journal.preallocate = preallocate
        journal.cut_damage = cut_damage
        journal.durable_upto = durable_upto
        try:
            journal._open_writer()
        except BaseException:
            journal._release()
            raise
        return journal

    @classmethod
    def open_readonly(cls, path: str | os.PathLike) -> "Journal":
        """Open the journal at ``path`` for reading only; never changes a byte.

        The live segment's valid prefix is read as it is; an unfinished
        record at its end is left alone (the writer truncates it on open).
        """
        journal = cls(Path(path), "none", 64 << 20, fmt.HARD_MAX_RECORD, readonly=True)
        if not journal.path.is_dir():
            raise FileNotFoundError(errno.ENOENT, "no journal directory", str(path))
        journal._load()
        return journal

    def _open_writer(self) -> None:
        created = not self.path.exists()
        os.makedirs(self.path, mode=0o700, exist_ok=True)     # entries hold sealed bids
        if created:
            fsync_dir(self.path.parent)
        self._lock_fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JournalLocked(f"{self.path} is open for writing by another process") from None
        self._load()
        if not self._segments:
            self._refuse_short(segment_name(1), 0, None, "")
        live = self._segments[-1] if self._segments else None
        if live is None:
            self._create_segment(1, fmt.GENESIS)
        elif live.closed:
            self._write_index(live)
            self._create_segment(live.last_seq + 1, live.chain)
        else:
            if live.max_record != self.max_record:
                if live.last_seq >= live.first_seq:
                    self._fd = os.open(live.path, os.O_WRONLY)
                    self._allocated = live.size
                    self._roll()
                else:
                    self._segments.pop()
                    self._create_segment(live.first_seq, live.prev_chain)
            else:
                self._fd = os.open(live.path, os.O_WRONLY)
                self._allocated = live.size
        self._written_seq = self._durable_seq = self._last_seq

    def _load(self) -> None:
        """Read the segment list; check closed segments' headers and footers;
        scan the live one (and, when writing, repair its tail)."""
        listed = _list_segments(self.path)
        segments: list[Segment] = []
        next_seq, chain = 1, fmt.GENESIS
        for i, (first, seg_path) in enumerate(listed):
            if first != next_seq:
                raise JournalCorrupt(seg_path.name, "header",
                                     f"segment starts at seq {first}, expected {next_seq}", 0)
            if i < len(listed) - 1:
                seg = _check_closed_file(seg_path, first, chain)
            elif self.readonly:
                seg = self._live_unscanned(seg_path, first, chain)
            else:
                seg = self._recover_live(seg_path, first, chain)
            segments.append(seg)
            next_seq, chain = seg.last_seq + 1, seg.chain
        self._segments = segments
        self._last_seq = next_seq - 1
        self._head = chain

    def _live_unscanned(self, path: Path, first_seq: int, prev_chain: bytes) -> Segment:
        """A read-only view checks the live header now and scans the records
        only when asked where they end (`_settle`); `read` scans them anyway."""
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            head = os.pread(fd, fmt.HEADER_SIZE, 0)
        finally:
            os.close(fd)
        seg = live_header(head, size, path, first_seq, prev_chain)
        if seg is None:
            seg = Segment(path, first_seq, prev_chain, self.max_record)
        self._unscanned = seg
        return seg

    def _settle(self) -> None:
        """Scan the live segment of a read-only view if not done yet."""
        seg = self._unscanned
        if seg is None:
            return
        self._unscanned = None
        scanned = self._recover_live(seg.path, seg.first_seq, seg.prev_chain)
        self._segments[-1] = scanned
        self._last_seq = scanned.last_seq
        self._head = scanned.chain

    def _recover_live(self, path: Path, first_seq: int, prev_chain: bytes) -> Segment:
        with _whole_file(path, mapped=not self.readonly) as data:
            found = scan_live(data, path, first_seq, prev_chain, self.max_record,
                              cut_damage=self.cut_damage)
            seg = found.segment
            if not self.readonly:
                self._refuse_short(path.name, seg.last_seq, found.cut, found.reason)
            tail = data[found.cut:] if found.cut is not None and not self.readonly else None
            records = (records_after(data, found.cut, seg.last_seq + 1, seg.max_record)
                       if tail is not None and not _all_zero(tail, 0) else 0)
        if self.readonly:
            return seg
        self._live_first = seg.first_seq
        if found.header_torn:
            self._rewrite_header(seg)
        elif not seg.closed:
            assert seg.index is not None
            self._live_index = seg.index.entries
            self._live_max_ts = seg.index.max_ts
        if tail is not None:
            aside = self._cut_tail(path, tail, seg.size)
            if aside is not None:
                self.cut = Cut(path.name, seg.size, _written_end(tail, 0), records,
                               seg.last_seq, aside)
        return seg

    def _refuse_short(self, name: str, last_seq: int, cut: int | None, reason: str) -> None:
        """Raise `JournalCorrupt` if the journal would end at ``last_seq``
        (cut at ``cut``, or not cut) before ``durable_upto``, unless
        ``cut_damage``."""
        if self.cut_damage or last_seq >= self.durable_upto:
            return
        known = (f"seq {self.durable_upto} is known durable (a snapshot of it was written "
                 f"only once every record up to it was)")
        fix = ("nothing was cut; restore the journal from a backup, or `lotex journal "
               "repair` cuts it on purpose when no better copy exists")
        if cut is not None:
            raise JournalCorrupt(name, f"record {last_seq + 1}",
                                 f"{reason}: recovery would cut the journal here, ending it at "
                                 f"seq {last_seq}, but {known}: damage to acknowledged records, "
                                 f"not an unfinished write; {fix}", cut)
        raise JournalCorrupt(name, "end", f"the journal ends at seq {last_seq}, but {known}: "
                             f"records are missing; {fix}")

    def _cut_tail(self, path: Path, tail: bytes, keep: int) -> Path | None:
        """Move the bytes after the valid prefix aside (unless they are all
        zeros: preallocated space) and truncate; return the aside file, if
        any. The segment is cut only once the aside file is whole and durable
        (its bytes and its name); one that cannot be written whole is
        removed. Raises `OSError` naming the file it failed on. O(tail)."""
        aside = None
        if not _all_zero(tail, 0):
            fd, aside = _create_aside(path, keep)
            try:
                with _naming(aside):
                    try:
                        _write_all(fd, tail, 0)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                with _naming(self.path):
                    fsync_dir(self.path)
            except OSError:
                try:
                    aside.unlink()
                except OSError:
                    pass          # left behind: a later cut at this offset takes the next name
                raise
        with _naming(path):
            fd = os.open(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, keep)
                os.fsync(fd)
            finally:
                os.close(fd)
        return aside

    def _rewrite_header(self, seg: Segment) -> None:
        fd = os.open(seg.path, os.O_WRONLY | os.O_TRUNC)
        try:
            _write_all(fd, fmt.encode_header(seg.first_seq, seg.prev_chain, self.max_record), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        seg.max_record = self.max_record

    # ---------------------------------------------------------------- write

    @property
    def last_seq(self) -> int:
        """Sequence number of the last record appended (0 if none)."""
        self._settle()
        return self._last_seq

    @property
    def durable_seq(self) -> int:
        """Sequence number of the last record made durable per the mode."""
        return self._durable_seq

    @property
    def head_hash(self) -> str:
        """Hex SHA-256 chain hash after the last record appended."""
        self._settle()
        return self._head.hex()

    def append(self, ts: int, kind: int, payload: bytes) -> int:
        """Frame a record and buffer it; return its seq. Not durable until
        `commit` (in ``every`` mode it is written and synced here). O(len(payload))."""
        seq = self._frame(kind, ((ts, payload),))
        if self.durability == "every":
            self._flush(sync=True)
        return seq

    def append_many(self, kind: int, records: list[tuple[int, bytes]]) -> int:
        """Append ``(ts, payload)`` records of one ``kind`` in order, exactly as
        that many `append` calls would (same bytes, same index); return the
        last seq. The group-commit writer's call. O(total payload)."""
        if self.durability == "every":
            for ts, payload in records:
                self.append(ts, kind, payload)
            return self._last_seq
        return self._frame(kind, records)

    def _frame(self, kind: int, records: Iterable[tuple[int, bytes]]) -> int:
        """Frame records and buffer them; return the last seq. Per record one
        CRC-32 and one SHA-256 (`recorder.format.encode_record`, inlined); the
        checks run once and the loop uses locals."""
        if self._failed is not None or self._closed or self.readonly:
            if self._failed is not None:
                raise JournalFailed(f"journal failed earlier: {self._failed}") from self._failed
            raise ValueError("journal is closed" if self._closed else "journal is read-only")
        max_record = self.max_record
        pack_body, sha256, crc32, pack_u32 = _pack_body, _sha256, _crc32, _pack_u32
        overhead = fmt.RECORD_OVERHEAD
        add = self._buf.append
        live_size = self._segments[-1].size
        live_first = self._live_first
        live_index = self._live_index
        seq, head = self._last_seq, self._head
        buf_bytes, max_ts = self._buf_bytes, self._live_max_ts
        try:
            for ts, payload in records:
                size = len(payload)
                if size > max_record:
                    raise RecordTooLarge(f"record of {size} bytes exceeds max_record {max_record}")
                seq += 1
                body = pack_body(size, seq, ts, kind, 0) + payload
                chain = sha256(head + body).digest()
                if (seq - live_first) % INDEX_EVERY == 0:
                    live_index.append((seq, live_size + buf_bytes, max_ts))
                if ts > max_ts:
                    max_ts = ts
                add(pack_u32(crc32(chain, crc32(body))))
                add(body)
                add(chain)
                buf_bytes += size + overhead
                head = chain
        finally:                      # what was framed stays buffered, as with append
            self._last_seq, self._head = seq, head
            self._buf_bytes, self._live_max_ts = buf_bytes, max_ts
        return seq

    def commit(self) -> int:
        """Write everything buffered in one write and make it durable per the
        mode (group: one fdatasync); return the last durable seq.
        A failed write or sync raises `JournalFailed`, now and ever after."""
        if self._failed is not None:
            raise JournalFailed(f"journal failed earlier: {self._failed}") from self._failed
        if self._buf:
            self._flush(sync=self.durability != "none")
        return self._durable_seq

    def _flush(self, sync: bool) -> None:
        data = b"".join(self._buf)
        self._buf.clear()
        self._buf_bytes = 0
        live = self._segments[-1]
        try:
            _write_all(self._fd, data, live.size)
            if sync:
                os.fdatasync(self._fd)
        except OSError as exc:
            self._fail(exc)
        live.size += len(data)
        if live.size > self._allocated:
            self._allocated = live.size
        live.last_seq = self._last_seq
        live.chain = self._head
        self._written_seq = self._durable_seq = self._last_seq
        if live.size >= self.segment_bytes:
            self._roll()

    def reserve(self) -> int:
        """Keep ``preallocate`` bytes of zeros written and synced ahead of the
        live segment's end: once an eighth of them has been written over,
        write zeros towards ``preallocate`` ahead again (never past the
        segment's size limit), a quarter of it at most per call, and
        fdatasync them. Call it when a pause is cheapest (after the replies of
        a commit went out); the bounded step keeps the pause short (256 KiB:
        ~0.3 ms here, 1 MiB: ~0.7-1.2 ms, a fresh segment's 2 MiB at once:
        ~3 ms). Return the bytes written. A failure stops preallocation (the
        journal itself goes on: zeros written are free space) and raises the
        `OSError`. O(bytes written)."""
        if (not self.preallocate or self._fd < 0 or self._failed is not None
                or self.durability == "none"):     # nothing is synced: nothing to gain
            return 0
        size = self._segments[-1].size
        target = min(size + self.preallocate, max(self.segment_bytes, size))
        start = self._allocated
        if target - start < max(self.preallocate // 8, 1):
            return 0
        target = min(target, start + max(self.preallocate // 4, 1))
        zeros = bytes(min(target - start, 1 << 20))
        try:
            offset = start
            while offset < target:
                _write_all(self._fd, zeros[:target - offset], offset)
                offset += min(len(zeros), target - offset)
                self._allocated = offset
            os.fdatasync(self._fd)
        except OSError:
            self.preallocate = 0
            raise
        return target - start

    def _fail(self, exc: BaseException) -> None:
        self._failed = exc
        raise JournalFailed(f"journal write or sync failed; nothing more is accepted: {exc}") from exc

    def _roll(self) -> None:
        """Close the live segment with a footer and start the next one."""
        live = self._segments[-1]
        try:
            if self._allocated > live.size:     # preallocated zeros: the footer ends the file
                os.ftruncate(self._fd, live.size)
            _write_all(self._fd, fmt.encode_footer(live.last_seq, live.last_seq - live.first_seq + 1, live.chain),
                       live.size)
            os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = -1
            fsync_dir(self.path)
        except OSError as exc:
            self._fail(exc)
        live.closed = True
        live.size += fmt.FOOTER_SIZE
        live.index = fmt.SegmentIndex(self._live_index, self._live_max_ts, live.size)
        self._write_index(live)
        self._create_segment(live.last_seq + 1, live.chain)

    def _create_segment(self, first_seq: int, prev_chain: bytes) -> None:
        seg = Segment(self.path / segment_name(first_seq), first_seq, prev_chain, self.max_record)
        try:
            fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self._fd = fd
            self._allocated = fmt.HEADER_SIZE
            _write_all(fd, fmt.encode_header(first_seq, prev_chain, self.max_record), 0)
            os.fdatasync(fd)
            fsync_dir(self.path)
        except OSError as exc:
            self._fail(exc)
        seg.index = None
        self._segments.append(seg)
        self._live_index = []
        self._live_first = first_seq
        self._live_max_ts = -(1 << 63)

    def _write_index(self, seg: Segment) -> None:
        """Write a closed segment's index beside it. Best effort: the index is
        rebuilt from the log whenever it is missing or does not match."""
        if seg.index is None:
            return
        target = seg.path.with_suffix(INDEX_SUFFIX)
        tmp = target.with_name(target.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, fmt.encode_index(seg.first_seq, seg.last_seq, seg.index), 0)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError:
            pass

    def close(self) -> None:
        """Commit what is buffered (unless failed), drop the preallocated
        zeros and release the directory."""
        if self._closed:
            return
        try:
            if self._buf and self._failed is None:
                self.commit()
            size = self._segments[-1].size if self._segments else 0
            if self._fd >= 0 and self._failed is None and self._allocated > size:
                try:
                    os.ftruncate(self._fd, size)
                    os.fsync(self._fd)
                except OSError:
                    pass      # zeros left behind are free space; the next open cuts them
        finally:
            self._closed = True
            self._release()

    def _release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- read

    def segments(self) -> list[Segment]:
        """The segments known, oldest first (the last one is live unless closed)."""
        self._settle()
        return list(self._segments)

    def read(self, from_seq: int = 1, *, from_ts: int | None = None,
             verify_chain: bool = False) -> Iterator[Record]:
        """Yield records in order from seq ``from_seq`` and, if ``from_ts`` is
        given, from the first record at or after that time on (every record
        after it too). Checks every CRC and sequence number; with
        ``verify_chain`` also every chain hash (reads from a segment start).
        Damage in a closed segment raises `JournalCorrupt`; a read-only view
        stops at the end of the live segment's valid prefix. The writer's own
        view holds what `commit` wrote, not what is still buffered.
        O(log segments + 128 records) to start, then O(bytes read)."""
        from_seq = max(1, from_seq)
        waiting_ts = from_ts is not None
        segments = self._segments          # a roll while we read appends to it: we follow
        n = max(0, bisect.bisect_right(segments, from_seq, key=lambda s: s.first_seq) - 1)
        while n < len(segments):
            seg = segments[n]
            live = n == len(segments) - 1 and not seg.closed
            size_seen = seg.size
            if seg.closed and seg.last_seq < from_seq:
                n += 1
                continue
            index = self._index_of(seg, live)
            if waiting_ts and index is not None and index.max_ts < from_ts:
                n += 1
                continue
            start_seq, start_pos = seg.first_seq, fmt.HEADER_SIZE
            if not verify_chain and index is not None and index.entries:
                start_seq, start_pos = _seek(index, from_seq, from_ts if waiting_ts else None)
            for batch in self._read_segment(seg, live, start_seq, start_pos, from_seq, verify_chain):
                from_seq = batch[-1].seq + 1
                if waiting_ts:
                    for i, rec in enumerate(batch):
                        if rec.ts >= from_ts:
                            waiting_ts = False
                            yield from batch[i:]
                            break
                else:
                    yield from batch
            if live and not self.readonly and (seg.closed or seg.size != size_seen):
                continue        # the writer added to this segment while we read: read on from from_seq
            n += 1

    def _index_of(self, seg: Segment, live: bool) -> fmt.SegmentIndex | None:
        if live:
            if self.readonly:
                return seg.index
            return fmt.SegmentIndex(self._live_index, self._live_max_ts, seg.size)
        if seg.index is None:
            seg.index = self._load_index(seg)
        return seg.index

    def _load_index(self, seg: Segment) -> fmt.SegmentIndex:
        """Return the segment's index from its file, or rebuild it from the log."""
        try:
            data = (seg.path.with_suffix(INDEX_SUFFIX)).read_bytes()
            index = fmt.decode_index(data, seg.first_seq, seg.last_seq, seg.size)
            if index is not None:
                return index
        except OSError:
            pass
        return self.rebuild_index(seg)

    def rebuild_index(self, seg: Segment) -> fmt.SegmentIndex:
        """Scan a closed segment and write its index anew (the log wins). O(segment)."""
        entries: list[tuple[int, int, int]] = []
        with _whole_file(seg.path, mapped=True) as data:
            scan = fmt.scan(data, fmt.HEADER_SIZE, seg.size - fmt.FOOTER_SIZE, seg.first_seq, seg.prev_chain,
                            seg.max_record, index=entries, index_every=INDEX_EVERY, first_seq=seg.first_seq)
        if scan.reason != fmt.CLEAN or scan.next_seq != seg.last_seq + 1:
            raise JournalCorrupt(seg.name, f"record {scan.next_seq}", scan.reason, scan.pos)
        seg.index = fmt.SegmentIndex(entries, scan.max_ts, seg.size)
        if not self.readonly:
            self._write_index(seg)
        return seg.index

    def _read_segment(self, seg: Segment, live: bool, start_seq: int, start_pos: int, from_seq: int,
                      verify_chain: bool) -> Iterator[list[Record]]:
        shrinkable = live and self.readonly     # a writer may yet truncate its tail
        stopped: list[tuple[int, int, str]] = []
        with _whole_file(seg.path, mapped=not shrinkable) as data:
            if not live:
                end = seg.size - fmt.FOOTER_SIZE
            elif self.readonly:
                end = len(data)                 # follow the writer's appends
            else:
                end = seg.size
            try:
                yield from segment_records(data, seg, end=end, start_seq=start_seq, start_pos=start_pos,
                                           from_seq=from_seq, verify_chain=verify_chain,
                                           to_the_end=not shrinkable, stopped=stopped)
            except _IndexMiss:
                # The index pointed where the log does not agree: the log wins.
                if not live:
                    self.rebuild_index(seg)
                stopped.clear()
                yield from segment_records(data, seg, end=end, start_seq=seg.first_seq,
                                           start_pos=fmt.HEADER_SIZE, from_seq=from_seq,
                                           verify_chain=verify_chain, to_the_end=not shrinkable,
                                           stopped=stopped)
            if stopped and stopped[-1][2] != fmt.CLEAN:
                try:                            # zeros after the prefix (the usual) end here
                    _refuse_damage(data, seg.path, *stopped[-1], seg.max_record)
                except JournalCorrupt:
                    self._damage_or_race(seg, *stopped[-1])

    def _damage_or_race(self, seg: Segment, pos: int, next_seq: int, reason: str) -> None:
        """A reader stopped at a bad record of the live segment that good
        records seemed to follow: raise `JournalCorrupt` if, in the file read
        afresh, that record is still bad and good records follow it
        (`_refuse_damage`). A writer's write seen half copied is whole by
        then. O(segment)."""
        data = _read_file(seg.path)
        if fmt.scan(data, pos, len(data), next_seq, fmt.GENESIS, seg.max_record, limit=1).count:
            return                          # good now: the writer was writing it
        _refuse_damage(data, seg.path, pos, next_seq, reason, seg.max_record)


def _seek(index: fmt.SegmentIndex, from_seq: int, from_ts: int | None) -> tuple[int, int]:
    """Return (seq, offset) of the index entry to start reading from. O(log n)."""
    entries = index.entries
    i = bisect.bisect_right(entries, from_seq, key=lambda e: e[0]) - 1
    if from_ts is not None:
        # entries' "largest ts before" is non-decreasing: find the last below from_ts
        j = bisect.bisect_left(entries, from_ts, key=lambda e: e[2]) - 1
        i = max(i, j)
    i = max(i, 0)
    return entries[i][0], entries[i][1]


def read_journal(path: str | os.PathLike, from_seq: int = 1, *, from_ts: int | None = None,
                 verify_chain: bool = False) -> Iterator[Record]:
    """Iterate the records of the journal at ``path`` without changing it."""
    return Journal.open_readonly(path).read(from_seq, from_ts=from_ts, verify_chain=verify_chain)


class VerifyReport(NamedTuple):
    """What `verify_journal` found: all good."""

    count: int
    last_seq: int
    head_hash: str
    segments: int


def verify_segment(data: bytes, name: str, first_seq: int, prev_chain: bytes, *,
                   last: bool) -> tuple[int, bytes, int]:
    """Check every byte of one segment: header, each record's CRC, sequence
    and chain hash, and the footer (required unless ``last``; an unfinished
    record at the end is damage too). Return (next seq, chain, record count)
    or raise `JournalCorrupt` naming the first bad part. O(len(data))."""
    header = fmt.decode_header(data)
    if isinstance(header, str):
        raise JournalCorrupt(name, "header", header, 0)
    if header.first_seq != first_seq:
        raise JournalCorrupt(name, "header", f"first seq {header.first_seq}, expected {first_seq}", 0)
    if header.prev_chain != prev_chain:
        raise JournalCorrupt(name, "header", "previous chain hash does not match the previous segment", 0)
    scan = fmt.scan(data, fmt.HEADER_SIZE, len(data), first_seq, prev_chain, header.max_record,
                    verify_chain=True)
    if last and scan.reason != fmt.CLEAN and _all_zero(data, scan.pos):
        return scan.next_seq, scan.chain, scan.count      # preallocated space
    if scan.reason == fmt.BAD_LENGTH and len(data) - scan.pos == fmt.FOOTER_SIZE:
        footer = fmt.decode_footer(memoryview(data)[scan.pos:])
        if isinstance(footer, str):
            raise JournalCorrupt(name, "footer", footer, scan.pos)
        if footer.last_seq != scan.next_seq - 1 or footer.count != scan.count:
            raise JournalCorrupt(name, "footer", f"says last seq {footer.last_seq} and {footer.count} records; "
                                 f"the segment holds {scan.count} records to seq {scan.next_seq - 1}", scan.pos)
        if footer.chain != scan.chain:
            raise JournalCorrupt(name, "footer", "chain hash does not match the records", scan.pos)
        return scan.next_seq, scan.chain, scan.count
    if scan.reason == fmt.CLEAN and last:
        return scan.next_seq, scan.chain, scan.count
    reason = scan.reason if scan.reason != fmt.CLEAN else "footer missing"
    if scan.reason == fmt.INCOMPLETE:
        reason = "incomplete (an unfinished write; opening the journal for writing truncates it)"
    raise JournalCorrupt(name, f"record {scan.next_seq}", reason, scan.pos)


def verify_journal(path: str | os.PathLike) -> VerifyReport:
    """Check every checksum, sequence number and chain hash of the journal
    at ``path``, without changing it. Raise `JournalCorrupt` naming the
    first bad segment and record. O(journal size), one segment in memory."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no journal directory", str(path))
    listed = _list_segments(path)
    next_seq, chain, count = 1, fmt.GENESIS, 0
    for i, (first, seg_path) in enumerate(listed):
        if first != next_seq:
            raise JournalCorrupt(seg_path.name, "header", f"segment starts at seq {first}, expected {next_seq}", 0)
        last = i == len(listed) - 1
        with _whole_file(seg_path, mapped=not last) as data:
            next_seq, chain, n = verify_segment(data, seg_path.name, first, chain, last=last)
        count += n
    return VerifyReport(count, next_seq - 1, chain.hex(), len(listed))
