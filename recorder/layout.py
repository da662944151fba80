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
"""

from __future__ import annotations

import os
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
