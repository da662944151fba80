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
(`private_opener`), directories 0700 (`private_dir`), whatever the umask;
`private_tree` tightens an existing tree so (a restore's loose modes).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Container

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


def private_tree(path: str | os.PathLike, public: Container[str] = ()) -> None:
    """Take the group's and others' permissions off the directory ``path``
    and every directory and file under it (0755 -> 0700, 0644 -> 0600), but
    the files named in ``public`` (paths relative to ``path``). Symlinks are
    neither followed nor changed, so nothing outside is touched; a missing
    ``path`` stays missing. O(entries)."""
    if not os.path.lexists(path):
        return
    for top, _, names, top_fd in os.fwalk(path, follow_symlinks=False):
        _tighten(top_fd)
        for name in names:
            if os.path.relpath(os.path.join(top, name), path) in public:
                continue
            info = os.stat(name, dir_fd=top_fd, follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or not info.st_mode & 0o077:
                continue
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=top_fd)
            try:
                _tighten(fd)
            finally:
                os.close(fd)


def _tighten(fd: int) -> None:
    """Take the group's and others' permissions off the regular file or
    directory open as ``fd``."""
    info = os.fstat(fd)
    mode = stat.S_IMODE(info.st_mode)
    if (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)) and mode & 0o077:
        os.fchmod(fd, mode & 0o700)
