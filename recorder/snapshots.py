"""Snapshots: the engine's state as of a journal sequence number.

A snapshot file ``NNNNNNNNNNNNNNNNNNNN.snap`` (the seq it covers, zero
padded) is::

    magic "LOTEXSNP", version u32, reserved u32, seq u64, ts i64 (engine
    time), length u64, chain 32 bytes (journal chain hash at seq, or zeros),
    SHA-256 of the data 32 bytes, crc u32 of the 104 bytes before; data

Written atomically (temporary file, fsync, rename, fsync of the directory);
a damaged or half-written snapshot is skipped in favour of an older one, so
recovery replays more of the journal but never trusts bad bytes. The data is
a pickle of the engine state: the directory must be as trusted as the code.
Snapshot files are 0600 and a directory created here 0700 (the state holds
sealed bids, reserves and identities).

A snapshot of a seq the journal no longer holds (it was cut below it) is
never used or kept over a valid one: `set_aside` moves it into a dated
``aside-...`` directory beside the others (0700), and `write_snapshot` does
so with any above the seq it writes (the journal's end).
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
import zlib
from pathlib import Path
from typing import NamedTuple

from recorder.format import SNAPSHOT_MAGIC, VERSION
from recorder.journal import fsync_dir

HEAD = struct.Struct("<8sIIQqQ32s32s")     # 104 bytes, then crc u32
HEAD_SIZE = HEAD.size + 4
SUFFIX = ".snap"
KEEP = 3


class Snapshot(NamedTuple):
    seq: int
    data: bytes
    ts: int
    chain: bytes   # journal chain hash after record ``seq`` (zeros if unknown)


def snapshot_name(seq: int) -> str:
    return f"{seq:020d}{SUFFIX}"


def write_snapshot(directory: str | os.PathLike, seq: int, data: bytes, *, ts: int = 0,
                   chain: bytes = bytes(32), keep: int = KEEP) -> Path:
    """Write a snapshot covering journal records up to ``seq`` (the journal's
    end) atomically, set aside any above it (the journal was cut below them)
    and keep only the newest ``keep``. Return its path. O(len(data))."""
    if len(chain) != 32:
        raise ValueError("chain must be 32 bytes")
    directory = Path(directory)
    if not directory.exists():
        os.makedirs(directory, mode=0o700)     # engine state: sealed bids, reserves
        fsync_dir(directory.parent)
    head = HEAD.pack(SNAPSHOT_MAGIC, VERSION, 0, seq, ts, len(data), chain, hashlib.sha256(data).digest())
    target = directory / snapshot_name(seq)
    tmp = directory / f".{target.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(head + struct.pack("<I", zlib.crc32(head)) + data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    fsync_dir(directory)
    set_aside(directory, seq)
    _prune(directory, keep)
    return target


def _listed(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for name in os.listdir(directory):
        stem = name[:-len(SUFFIX)]
        if name.endswith(SUFFIX) and len(stem) == 20 and stem.isdigit():
            found.append((int(stem), directory / name))
    found.sort()
    return found


def _prune(directory: Path, keep: int) -> None:
    listed = _listed(directory)
    old = listed[:-keep] if keep > 0 else []
    for _, path in old:
        path.unlink(missing_ok=True)
    for name in os.listdir(directory):
        if name.startswith(".") and name.endswith(".tmp"):
            (directory / name).unlink(missing_ok=True)   # left by a crash mid-write
            old.append((0, directory / name))
    if old:
        fsync_dir(directory)


def set_aside(directory: str | os.PathLike, above: int) -> list[Path]:
    """Move the snapshots of ``directory`` with a seq above ``above`` (the
    journal's end: they no longer belong to it) into a new
    ``aside-YYYYMMDDTHHMMSSZ`` directory in it (0700); return where they went.
    O(snapshots)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    beyond = [path for seq, path in _listed(directory) if seq > above]
    if not beyond:
        return []
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(1, 1000):
        aside = directory / (f"aside-{stamp}" if n == 1 else f"aside-{stamp}-{n}")
        try:
            os.mkdir(aside, 0o700)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free aside directory name in {directory}")
    moved = []
    for path in beyond:
        os.replace(path, aside / path.name)
        moved.append(aside / path.name)
    fsync_dir(aside)
    fsync_dir(directory)
    return moved


def newest_seq(directory: str | os.PathLike) -> int:
    """Return the seq of the newest snapshot in ``directory`` whose head is
    intact (magic, version, checksum, name; the data is not read), or 0.
    O(snapshots)."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    for seq, path in reversed(_listed(directory)):
        try:
            with open(path, "rb") as f:
                head = f.read(HEAD_SIZE)
        except OSError:
            continue
        if len(head) < HEAD_SIZE or \
                zlib.crc32(head[:HEAD.size]) != struct.unpack_from("<I", head, HEAD.size)[0]:
            continue
        magic, version, _, found, *_ = HEAD.unpack_from(head, 0)
        if magic == SNAPSHOT_MAGIC and version == VERSION and found == seq:
            return seq
    return 0


def read_snapshot(path: str | os.PathLike) -> Snapshot | None:
    """Return the snapshot in ``path``, or None if it is damaged or incomplete."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None
    if len(raw) < HEAD_SIZE or zlib.crc32(raw[:HEAD.size]) != struct.unpack_from("<I", raw, HEAD.size)[0]:
        return None
    magic, version, _, seq, ts, length, chain, digest = HEAD.unpack_from(raw, 0)
    data = raw[HEAD_SIZE:]
    if magic != SNAPSHOT_MAGIC or version != VERSION or len(data) != length:
        return None
    if hashlib.sha256(data).digest() != digest or Path(path).name != snapshot_name(seq):
        return None
    return Snapshot(seq, data, ts, chain)


def find_snapshot(directory: str | os.PathLike, *, upto_seq: int | None = None,
                  upto_ts: int | None = None) -> Snapshot | None:
    """Return the newest intact snapshot with seq <= ``upto_seq`` and engine
    time <= ``upto_ts`` (either may be None), or None. O(snapshots)."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    for seq, path in reversed(_listed(directory)):
        if upto_seq is not None and seq > upto_seq:
            continue
        snap = read_snapshot(path)
        if snap is None or (upto_ts is not None and snap.ts > upto_ts):
            continue
        return snap
    return None


def latest_snapshot(directory: str | os.PathLike, *, upto_seq: int | None = None,
                    upto_ts: int | None = None) -> tuple[int, bytes] | None:
    """Return (seq, data) of the newest intact snapshot (see `find_snapshot`)."""
    snap = find_snapshot(directory, upto_seq=upto_seq, upto_ts=upto_ts)
    return None if snap is None else (snap.seq, snap.data)
