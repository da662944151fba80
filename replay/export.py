"""Export a journal for any SQLite tool or spreadsheet.

``--sqlite FILE``: the recorder's analyst store (`recorder.store.Store`,
schema in README "Analyst store (SQLite)"): one table ``ev_<type>`` per
kind of event with a column per field, ``events`` (every event), and, for a
full store, ``commands`` and ``rejections``; plus its curated tables. Then
two tables per the LOBSTER layout (`replay.lobster`): ``lobster_message``
and ``lobster_orderbook``, keyed by instrument and row number.

``--csv OUTDIR``: the same tables, one CSV file each with a header line
(``events.csv``, ``ev_bid_accepted.csv``, ...), and per continuous
instrument the LOBSTER pair ``lobster/<INSTRUMENT>_message_<N>.csv`` and
``lobster/<INSTRUMENT>_orderbook_<N>.csv`` without header, as LOBSTER
ships them.

``--public`` keeps public events only (no commands, no parties): a store
to share. ``--csv`` writes only into a new or empty directory, so no file of
an earlier (full) export stays beside a public one. O(journal).
"""

from __future__ import annotations

import csv
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Iterator

from exchange.codec import decode_entry
from recorder.format import KIND_ENTRY, Record
from recorder.store import Store
from replay.lobster import MESSAGE_COLUMNS, OrderBookRebuilder, book_columns
from replay.progress import Progress
from replay.source import ReplayError, Source

MAX_LEVELS = 200          # LOBSTER's deepest files; 4 columns a level stay far below SQLite's 2000


class _ProgressReader:
    """A read-only journal for `Store.update` that also feeds the LOBSTER
    rebuilder and a progress bar, so the journal is read once."""

    def __init__(self, source: Source, lobster: OrderBookRebuilder | None) -> None:
        self._journal = source.journal()
        self._lobster = lobster

    @property
    def last_seq(self) -> int:
        return self._journal.last_seq

    def read(self, from_seq: int = 1, *, from_ts: int | None = None,
             verify_chain: bool = False) -> Iterator[Record]:
        bar = Progress("exporting", max(0, self._journal.last_seq - from_seq + 1))
        lobster = self._lobster
        try:
            for rec in self._journal.read(from_seq, from_ts=from_ts, verify_chain=verify_chain):
                if lobster is not None and rec.kind == KIND_ENTRY:
                    lobster.fold(decode_entry(rec.payload))
                yield rec
                bar.advance()
        finally:
            bar.close()


def check_levels(levels: int) -> None:
    """Refuse a LOBSTER depth that is not 1 to `MAX_LEVELS`."""
    if not 1 <= levels <= MAX_LEVELS:
        raise ReplayError(f"--levels must be 1 to {MAX_LEVELS}, not {levels} "
                          f"(--no-lobster skips the LOBSTER files)")


def _check_target(path: Path) -> None:
    """Refuse to overwrite a SQLite file that is not an analyst store."""
    if path.is_dir():
        raise ReplayError(f"{path} is a directory; give a file name for --sqlite")
    if not path.parent.is_dir():
        raise ReplayError(f"no directory {path.parent} to write {path.name} in")
    if not path.exists():
        return
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        raise ReplayError(f"{path} exists and is not a SQLite file; choose another name") from None
    if names and "_meta" not in names:
        raise ReplayError(f"{path} exists and is not a lotex analyst store; choose another name")


def _project(source: Source, db_path: Path, public: bool, lobster_levels: int) -> tuple[Store, OrderBookRebuilder | None, int]:
    lobster = OrderBookRebuilder(lobster_levels, private=not public) if lobster_levels > 0 else None
    store = Store.open(db_path, public=public)
    entries = store.rebuild(_ProgressReader(source, lobster))
    return store, lobster, entries


def _write_lobster_tables(conn: Any, lobster: OrderBookRebuilder, levels: int) -> int:
    columns = book_columns(levels)
    with conn:
        conn.execute("DROP TABLE IF EXISTS lobster_message")
        conn.execute("DROP TABLE IF EXISTS lobster_orderbook")
        conn.execute("CREATE TABLE lobster_message (instrument TEXT, row INTEGER, time TEXT, "
                     "type INTEGER, order_id INTEGER, size INTEGER, price INTEGER, "
                     "direction INTEGER, seq INTEGER, ts INTEGER, PRIMARY KEY (instrument, row))")
        conn.execute("CREATE TABLE lobster_orderbook (instrument TEXT, row INTEGER, "
                     + ", ".join(f"{c} INTEGER" for c in columns)
                     + ", PRIMARY KEY (instrument, row))")
        rows = 0
        for instrument in lobster.instruments:
            messages, books = [], []
            for n, (message, book) in enumerate(lobster.rows(instrument), 1):
                messages.append((instrument, n, *message))
                books.append((instrument, n, *book))
            conn.executemany("INSERT INTO lobster_message VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             messages)
            conn.executemany(f"INSERT INTO lobster_orderbook VALUES ({', '.join('?' * (len(columns) + 2))})",
                             books)
            rows += len(messages)
    return rows


def to_sqlite(source: Source, path: str | os.PathLike, *, public: bool = False,
              lobster_levels: int = 10) -> list[str]:
    """Write the analyst store (and the LOBSTER tables) to ``path``; return
    report lines. A new file that cannot be finished is removed."""
    path = Path(path)
    if lobster_levels:
        check_levels(lobster_levels)
    _check_target(path)
    new = not path.exists()
    try:
        return _write_sqlite(source, path, public, lobster_levels)
    except BaseException as exc:
        if new:
            for leftover in (path, path.with_name(path.name + "-journal"),
                             path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
        if isinstance(exc, sqlite3.Error):
            raise ReplayError(f"cannot write {path}: {exc}") from None
        raise


def _write_sqlite(source: Source, path: Path, public: bool, lobster_levels: int) -> list[str]:
    store, lobster, entries = _project(source, path, public, lobster_levels)
    try:
        events = store.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        report = [f"wrote {path}: {entries} entries, {events} events "
                  f"({'public only' if public else 'full'}), {len(store.db.table_names())} tables"]
        if lobster is not None:
            rows = _write_lobster_tables(store.db.conn, lobster, lobster_levels)
            report.append(f"LOBSTER tables: {rows} messages for {len(lobster.instruments)} "
                          f"instruments, {lobster_levels} levels")
    finally:
        store.close()
    return report


def to_csv(source: Source, outdir: str | os.PathLike, *, public: bool = False,
           lobster_levels: int = 10) -> list[str]:
    """Write one CSV per table and the LOBSTER pairs into ``outdir`` (new or
    empty); return report lines."""
    outdir = Path(outdir)
    if lobster_levels:
        check_levels(lobster_levels)
    if outdir.exists() and not outdir.is_dir():
        raise ReplayError(f"{outdir} is a file; give a directory for --csv")
    if outdir.is_dir() and any(outdir.iterdir()):
        raise ReplayError(f"{outdir} is not empty; export into a new or empty directory "
                          f"(files of an earlier export must not stay beside this one)")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        return _write_csv(source, outdir, public, lobster_levels)
    except (sqlite3.Error, OSError) as exc:
        raise ReplayError(f"cannot write into {outdir}: {exc}") from None


def _write_csv(source: Source, outdir: Path, public: bool, lobster_levels: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="lotex-export-") as tmp:
        store, lobster, entries = _project(source, Path(tmp) / "store.sqlite", public,
                                           lobster_levels)
        try:
            tables = 0
            for name in sorted(store.db.table_names()):
                if name.startswith("_"):
                    continue
                cursor = store.db.execute(f'SELECT * FROM "{name}" ORDER BY rowid')
                with open(outdir / f"{name}.csv", "w", newline="", encoding="utf-8") as out:
                    writer = csv.writer(out, lineterminator="\n")
                    writer.writerow([d[0] for d in cursor.description])
                    writer.writerows(cursor)
                tables += 1
            events = store.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        finally:
            store.close()
    report = [f"wrote {tables} tables to {outdir}: {entries} entries, {events} events "
              f"({'public only' if public else 'full'})"]
    if lobster is not None and lobster.instruments:
        folder = outdir / "lobster"
        folder.mkdir(exist_ok=True)
        for instrument in lobster.instruments:
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in instrument)
            with open(folder / f"{safe}_message_{lobster_levels}.csv", "w", newline="") as m, \
                 open(folder / f"{safe}_orderbook_{lobster_levels}.csv", "w", newline="") as b:
                messages = csv.writer(m, lineterminator="\n")
                books = csv.writer(b, lineterminator="\n")
                for message, book in lobster.rows(instrument):
                    messages.writerow(message[:len(MESSAGE_COLUMNS)])
                    books.writerow(book)
        report.append(f"LOBSTER files for {len(lobster.instruments)} instruments in {folder} "
                      f"({lobster_levels} levels)")
    return report
