"""A consistent copy of a data directory, taken while the server runs or not.

The copy is what a crash at one moment would have left, cleaned up: every
entry journaled up to some sequence number and nothing after it, with
snapshots that all lie within that journal. It is made in an order that
keeps it so while the server goes on writing:

1. the configuration and the key store (``config.toml`` or ``config.json``,
   ``keys/``, ``clients/``; not ``endpoints.json``, which names the running
   server: clients pointed at the copy must not reach it), the key store
   under the flock on ``keys/LOCK`` that `lotex keys` takes to change it, so
   ``users.json`` and the key files are of one moment;
2. the engine's and the gateway's snapshots: each was written after the
   journal held its sequence number, so the journal copied after them holds
   it too (a snapshot the server prunes meanwhile is skipped);
3. the journal's segments in order, the closed ones as they are (they no
   longer change) and the live one up to where it is read; then the copy's
   journal is opened as a restart would open it, which cuts an unfinished
   last record (and anything read after one still being written), writes
   the indexes, and is verified whole. It must reach the last entry the
   journal held when the backup began (so every command acknowledged before
   then is in it) and the newest snapshot copied (so `lotex serve` starts on
   it): every record up to either was whole in the source before the copy
   read it, so a cut below them is damage to the source's journal, never a
   write the copy caught half done. Such a journal, or one with a bad record
   anywhere else, is refused (`SourceDamaged`: nothing is copied; `lotex
   journal verify` names the record); the source is never changed, so what
   the copy cut above them (records written after the copy passed) is still
   there.

The copy is made in a hidden directory beside the destination (inside it,
if it is an existing empty directory such as a mount point) and moved into
place when whole, so a failed or interrupted backup leaves none. One killed
outright leaves its hidden ``.partial-PID`` directory; the next backup to
the same destination removes it once no process of this machine has that
PID (inside an existing destination only if such directories are all it
holds).

The analyst store and the logs are not copied: the store is rebuilt from the
journal (`lotex journal project`). A server started on the copy recovers as
from its own data directory.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple

from recorder import layout
from recorder.format import HARD_MAX_RECORD
from recorder.journal import Journal, JournalCorrupt, fsync_dir, verify_journal

CONFIG_FILES = ("config.toml", "config.json")   # not endpoints.json: the live server's
KEY_DIRS = ("keys", "clients")
CHUNK = 1 << 20


class BackupError(Exception):
    """The backup cannot be made (the reason in a sentence)."""


class SourceDamaged(BackupError):
    """The source's journal is damaged: a bad record that a restart would
    refuse, or one below what the journal held when the backup began or
    below a snapshot (records known whole). Nothing was copied."""


class BackupReport(NamedTuple):
    last_seq: int
    head_hash: str
    segments: int
    snapshots: int
    bytes: int
    cut_bytes: int = 0        # cut from the copy's end: written while it was read
    cut_records: int = 0      # ... the good records among them (still in the source)


def _copy_file(source: Path, target: Path) -> int:
    """Copy ``source`` as it reads now (it may still grow), keeping its mode;
    return the bytes copied, 0 if it is gone."""
    try:
        src = open(source, "rb")
    except FileNotFoundError:
        return 0
    copied = 0
    with src, open(target, "xb") as dst:
        os.fchmod(dst.fileno(), os.fstat(src.fileno()).st_mode & 0o777)
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            copied += len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return copied


def _copy_snapshots(source: Path, target: Path) -> tuple[int, int]:
    if not source.is_dir():
        return 0, 0
    target.mkdir(mode=0o700)
    count = size = 0
    for path in sorted(source.glob("*.snap")):
        copied = _copy_file(path, target / path.name)
        if copied:
            count, size = count + 1, size + copied
        else:
            (target / path.name).unlink(missing_ok=True)   # pruned while we copied
    return count, size


def backup(data: str | os.PathLike, dest: str | os.PathLike) -> BackupReport:
    """Copy the data directory ``data`` into ``dest`` (new or empty) as a
    consistent image; return what it holds. The copy is made beside ``dest``
    and renamed to it when whole: a failed backup leaves no ``dest``.
    O(bytes of the directory)."""
    data, dest = Path(data), Path(dest)
    journal = layout.journal_dir(data)
    if not layout.holds_journal(journal):
        raise BackupError(f"no lotex journal in {data}")
    if dest.exists() and not dest.is_dir():
        raise BackupError(f"{dest} exists and is not a directory")
    if dest.resolve().is_relative_to(data.resolve()):
        raise BackupError(f"{dest} is inside {data}")
    if data.resolve().is_relative_to(dest.resolve()):
        raise BackupError(f"{data} is inside {dest}")
    _remove_stale_partials(dest, data)
    if dest.exists() and any(dest.iterdir()):
        left = sorted(entry.name for entry in dest.iterdir() if _partial_pid(entry, ".partial-"))
        raise BackupError(f"{dest} exists and is not an empty directory"
                          + (f" (it holds {', '.join(left)}: a backup into it still "
                             f"running, or one whose PID another process has now)"
                             if left else ""))
    # what the journal held before the copy began: at least this is in the copy
    least = _journal_end(data, journal)
    if dest.exists():                # an empty directory (a mount point, a link): fill it
        partial = dest / f".partial-{os.getpid()}"
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    partial.mkdir(mode=0o700)
    try:
        report = _copy(data, journal, partial, least)
        if partial.parent == dest:
            for part in sorted(partial.iterdir(), key=lambda part: part.name == "journal"):
                os.rename(part, dest / part.name)     # the journal last: none, or all
            partial.rmdir()
            os.chmod(dest, 0o700)                     # it holds sealed bids and keys
        else:
            os.rename(partial, dest)
        fsync_dir(dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return report


_PID = re.compile(r"[1-9][0-9]{0,8}")    # as os.getpid() is written, ASCII only


def _partial_pid(entry: Path, prefix: str) -> int:
    """The PID in the name of a directory a backup of this user made
    (``PREFIXpid``, mode 0700, not a link), else 0."""
    pid = entry.name[len(prefix):]
    if not entry.name.startswith(prefix) or not _PID.fullmatch(pid):
        return 0
    try:
        info = entry.lstat()
    except OSError:
        return 0
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid()
            or stat.S_IMODE(info.st_mode) != 0o700):
        return 0
    return int(pid)


def _stale(pid: int) -> bool:
    """No process of this machine has ``pid`` (a backup that was killed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:                       # alive, another user's
        return False
    return False


def _remove_stale_partials(dest: Path, data: Path) -> None:
    """Remove what backups to ``dest`` killed outright left: the hidden
    ``.DEST.partial-PID`` directories beside it, and inside an existing
    ``dest`` its ``.partial-PID`` ones, but only if they are all it holds
    (anything else there and ``dest`` is refused untouched). Only PIDs no
    process of this machine has now: a backup from another machine to a
    shared disk is not seen. Never ``data`` or a directory holding it.
    O(entries of the two directories)."""
    beside = f".{dest.name}.partial-"
    source = data.resolve()
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        pid = _partial_pid(entry, beside)
        if pid and _stale(pid) and not source.is_relative_to(entry.resolve()):
            shutil.rmtree(entry, ignore_errors=True)
    if not dest.is_dir():
        return
    inside = list(dest.iterdir())
    pids = [_partial_pid(entry, ".partial-") for entry in inside]
    if inside and all(pids) and all(_stale(pid) for pid in pids):
        for entry in inside:
            shutil.rmtree(entry, ignore_errors=True)


def _damaged(data: Path, bad: JournalCorrupt | str) -> SourceDamaged:
    return SourceDamaged(f"the journal of {data} is damaged ({bad}); nothing was copied: "
                         f"`lotex journal verify {data}` names the bad record")


def _journal_end(data: Path, journal: Path) -> int:
    """The last seq of the source's journal as a reader sees it now. A bad
    record that good ones follow is damage; read twice, so that a record
    caught while the server was writing it is not taken for it. O(live
    segment)."""
    for attempt in (1, 2):
        try:
            before = Journal.open_readonly(journal)
            try:
                return before.last_seq
            finally:
                before.close()
        except JournalCorrupt as bad:
            if attempt == 2:
                raise _damaged(data, bad) from None
    raise AssertionError("unreachable")


KEY_STORE_LOCK = "LOCK"          # under keys/: `lotex keys` holds it while it writes
_KEY_STORE_SCRATCH = shutil.ignore_patterns(KEY_STORE_LOCK, ".*.tmp")   # not the store's


@contextmanager
def _key_store_locked(data: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``DATA/keys/LOCK`` (made 0600 if missing),
    the lock every key-store change (`lotex keys add|rotate|revoke`) takes
    around its read-modify-write: a rotation writes the user's key file and
    then ``users.json``, and a copy of the two taken between them would hold
    a key pair its own store refuses. Blocks while such a change runs; no
    lock if there is no ``keys/`` or it is on a read-only file system
    (nothing writes there then)."""
    keys, fd = data / "keys", -1
    if keys.is_dir():
        lock = keys / KEY_STORE_LOCK
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            try:                        # one we may only read locks as well
                fd = os.open(lock, os.O_RDONLY)
            except OSError:
                if exc.errno != errno.EROFS:
                    raise BackupError(f"cannot lock the key store ({lock}): "
                                      f"{exc.strerror}") from None
    try:
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd >= 0:
            os.close(fd)                # releases the lock


def _copy(data: Path, journal: Path, target: Path, least: int) -> BackupReport:
    size = 0
    for name in CONFIG_FILES:
        if (data / name).is_file():
            size += _copy_file(data / name, target / name)
    with _key_store_locked(data):     # users.json and the key files of one moment
        for name in KEY_DIRS:
            if (data / name).is_dir():
                shutil.copytree(data / name, target / name, ignore=_KEY_STORE_SCRATCH)
    snapshots = 0
    for name in (layout.SNAPSHOTS, layout.GATEWAY_SNAPSHOTS):
        count, copied = _copy_snapshots(data / name, target / name)
        snapshots, size = snapshots + count, size + copied
    copy = layout.journal_dir(target)
    copy.mkdir(mode=0o700)
    for path in sorted(journal.glob("*.seg")):
        size += _copy_file(path, copy / path.name)
    # Every record up to `whole` was whole in the source before the copy read
    # it: up to `least` by the read before the copy began, up to the newest
    # snapshot because one is written only once the journal holds its seq.
    from recorder.recovery import snapshot_floor
    newest = snapshot_floor(target)
    whole = max(least, newest)
    # Recover the live segment's tail as a restart would. A record read while
    # the server was still writing it may sit before records written after:
    # cut there too, but only above `whole` (what follows was written after
    # the copy passed, and the source still holds it).
    try:
        recovered = Journal.open(copy, max_record=HARD_MAX_RECORD, cut_damage=True)
        cut = recovered.cut
        recovered.close()
        report = verify_journal(copy)
    except JournalCorrupt as bad:     # a closed segment's: they never change
        raise _damaged(data, bad) from None
    if report.last_seq < whole:
        where = (f"a bad record at seq {report.last_seq + 1}" if cut is not None
                 else f"it ends at seq {report.last_seq}")
        if report.last_seq < newest:
            raise _damaged(data, f"{where}, but a snapshot of seq {newest} shows the "
                                 f"journal held every record up to it")
        if cut is not None:
            raise _damaged(data, f"{where}, but the journal held seq {least} whole when "
                                 f"the backup began")
        raise BackupError(f"the copy's journal ends at seq {report.last_seq}, before the "
                          f"{least} the journal held when the backup began (was it cut "
                          f"meanwhile?): nothing was copied")
    for aside in copy.glob("*.cut"):     # written after the copy passed: still in the source
        aside.unlink()
    return BackupReport(last_seq=report.last_seq, head_hash=report.head_hash,
                        segments=report.segments, snapshots=snapshots, bytes=size,
                        cut_bytes=cut.bytes if cut is not None else 0,
                        cut_records=cut.records if cut is not None else 0)
