"""Where a lotex server keeps its files (one data directory)::

    DATA/journal/      segment files NNNNNNNNNNNNNNNNNNNN.seg (named by first seq),
                       their rebuildable .idx files, LOCK, and *.cut files
                       (bytes recovery moved aside after an unfinished write)
    DATA/snapshots/    NNNNNNNNNNNNNNNNNNNN.snap (named by the seq they cover)
    DATA/gateway/      NNNNNNNNNNNNNNNNNNNN.snap: the gateway's feed state (Market
                       seqs, ring, public view) at that seq, so a restart reads
                       the journal after it only (rebuildable from the journal);
                       in both, aside-YYYYMMDDTHHMMSSZ/ holds snapshots beyond the
                       end of a journal cut on purpose (`lotex journal repair`)
    DATA/analyst.sqlite  the analyst store (a projection, rebuildable)

Whatever holds private data (the journal, snapshots, a full analyst store or
export: sealed bids, reserves, identities) is its owner's only: files 0600
(`private_opener`), directories 0700 (`private_dir`), whatever the umask.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

JOURNAL = "journal"
SNAPSHOTS = "snapshots"
GATEWAY_SNAPSHOTS = "gateway"
STORE = "analyst.sqlite"


def journal_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / JOURNAL


def snapshot_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / SNAPSHOTS


def gateway_snapshot_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / GATEWAY_SNAPSHOTS


def store_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / STORE


def find_journal(path: str | os.PathLike) -> Path:
    """Accept a data directory or a journal directory; return the journal's."""
    path = Path(path)
    return path / JOURNAL if (path / JOURNAL).is_dir() else path


def holds_journal(journal: Path) -> bool:
    """Tell whether ``journal`` is a directory with at least one segment file."""
    return journal.is_dir() and any(journal.glob("*.seg"))


def private_opener(path: str | os.PathLike, flags: int) -> int:
    """An ``opener`` for `open` (or a plain ``os.open``): a new file is made
    mode 0600; an existing one loses its group's and others' permissions.
    Raises `OSError` if that cannot be done (a file of another user's)."""
    fd = os.open(path, flags, 0o600)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            os.fchmod(fd, mode & 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_file(path: str | os.PathLike) -> None:
    """Create ``path`` empty with mode 0600 if it is missing, or take the
    group's and others' permissions off it, before another library (SQLite:
    its -journal, -wal and -shm files take the database's mode) opens it."""
    os.close(private_opener(path, os.O_RDONLY | os.O_CREAT))


def private_dir(path: str | os.PathLike) -> Path:
    """Make the directory ``path`` its owner's only: create it with mode 0700
    (missing parents get the usual mode), or take the group's and others'
    permissions off an existing one."""
    path = Path(path)
    os.makedirs(path, mode=0o700, exist_ok=True)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        os.chmod(path, mode & 0o700)
    return path
