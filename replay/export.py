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
an earlier (full) export stays beside a public one. A full export holds
what only an operator may see (actors, sealed amounts, party names): its
files are made mode 0600 and its directories 0700 (`recorder.layout`), as
the journal is; a public one gets the usual modes. O(journal).

Memory does not grow with the journal: the LOBSTER rows go to their CSV
files as they are made (for SQLite, to a spool file per instrument in a
hidden directory beside the database, copied into the tables at the end in
instrument order, as before). An export that fails or is interrupted removes what it
wrote: no partial file is left looking like a finished export.
"""

from __future__ import annotations

import csv
import marshal
import os
import sqlite3
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterator

from exchange.codec import decode_entry
from recorder.format import KIND_ENTRY, Record
from recorder.layout import private_dir, private_opener
from recorder.store import NotAStore, Store, check_store_file
from replay.lobster import MESSAGE_COLUMNS, OrderBookRebuilder, RowSink, book_columns
from replay.progress import Progress
from replay.source import ReplayError, Source

MAX_LEVELS = 200          # LOBSTER's deepest files; 4 columns a level stay far below SQLite's 2000
MAX_OPEN = 64             # LOBSTER files kept open at once (two per instrument for CSV; >= 2)
SPOOL_CHUNK = 2048        # rows read back from a spool per insert into SQLite


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
    """Refuse to overwrite a SQLite file that is not an analyst store
    (`recorder.store.check_store_file`, as `lotex journal project` does)."""
    if path.is_dir():
        raise ReplayError(f"{path} is a directory; give a file name for --sqlite")
    if not path.parent.is_dir():
        raise ReplayError(f"no directory {path.parent} to write {path.name} in")
    try:
        check_store_file(path)
    except NotAStore as exc:
        raise ReplayError(str(exc)) from None


def _project(source: Source, db_path: Path, public: bool, lobster_levels: int,
             sink: RowSink | None) -> tuple[Store, OrderBookRebuilder | None, int]:
    """Project the journal into the store at ``db_path``, the LOBSTER rows into ``sink``."""
    lobster = (OrderBookRebuilder(lobster_levels, private=not public, sink=sink)
               if lobster_levels > 0 else None)
    store = Store.open(db_path, public=public)
    try:
        entries = store.rebuild(_ProgressReader(source, lobster))
    except BaseException:
        store.close()
        raise
    return store, lobster, entries


def _opener(private: bool) -> Callable[[str, int], int] | None:
    """The ``opener`` for a file of an export: mode 0600 if ``private``."""
    return private_opener if private else None


class _CsvFile:
    """A CSV file written a row at a time, without header."""

    __slots__ = ("handle", "writerow")

    def __init__(self, path: Path, mode: str, private: bool) -> None:
        self.handle = open(path, mode, newline="", opener=_opener(private))
        self.writerow = csv.writer(self.handle, lineterminator="\n").writerow

    def close(self) -> None:
        self.handle.close()


class _SpoolFile:
    """A file of marshalled rows, each after its length (4 bytes), read back
    with `_spooled` (`marshal.load` from a file is ~10x slower than this)."""

    __slots__ = ("handle",)

    def __init__(self, path: Path, mode: str, private: bool) -> None:
        self.handle = open(path, mode + "b", opener=_opener(private))

    def writerow(self, row: tuple) -> None:
        data = marshal.dumps(row)
        self.handle.write(len(data).to_bytes(4, "little") + data)

    def close(self) -> None:
        self.handle.close()


def _spooled(path: Path) -> Iterator[tuple]:
    """Yield the rows of a spool file in the order written. O(rows)."""
    with open(path, "rb") as handle:
        read = handle.read
        while True:
            head = read(4)
            if not head:
                return
            yield marshal.loads(read(int.from_bytes(head, "little")))


class _OpenFiles:
    """Files written row by row, at most `MAX_OPEN` open at once: past that
    the least recently written is closed, and opened again to append when
    its instrument trades again. O(1) a row."""

    def __init__(self, kind: Callable[[Path, str, bool], Any], private: bool) -> None:
        self._kind = kind
        self._private = private
        self._open: OrderedDict[Path, Any] = OrderedDict()
        self.created: list[Path] = []

    def create(self, path: Path) -> None:
        self.created.append(path)
        self._keep(path, self._kind(path, "w", self._private))

    def get(self, path: Path) -> Any:
        file = self._open.get(path)
        if file is None:
            file = self._kind(path, "a", self._private)
            self._keep(path, file)
        else:
            self._open.move_to_end(path)
        return file

    def _keep(self, path: Path, file: Any) -> None:
        self._open[path] = file
        while len(self._open) > max(2, MAX_OPEN):      # an instrument's pair stays open
            self._open.popitem(last=False)[1].close()

    def close(self) -> None:
        while self._open:
            self._open.popitem(last=False)[1].close()


def _file_stem(instrument: str, taken: set[str]) -> str:
    """A file-name stem for ``instrument``: its letters, digits and -_. kept,
    anything else as _, made unique with -2, -3... (two ids such as A/B and
    A_B would otherwise share, and lose, a file)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in instrument)
    stem, k = safe, 1
    while stem in taken:
        k += 1
        stem = f"{safe}-{k}"
    taken.add(stem)
    return stem


class _CsvSink:
    """Write each instrument's LOBSTER pair into ``folder`` as its rows are
    made (a `replay.lobster.RowSink`); ``private``: mode 0600 and 0700."""

    def __init__(self, folder: Path, levels: int, private: bool) -> None:
        self.folder = folder
        self.levels = levels
        self.private = private
        self.files = _OpenFiles(_CsvFile, private)
        self.made_folder = False
        self._paths: dict[str, tuple[Path, Path]] = {}
        self._stems: set[str] = set()
        self._last: tuple[str, Any, Any] | None = None

    def instrument(self, instrument: str) -> None:
        if not self.made_folder:
            if self.private:
                private_dir(self.folder)
            else:
                self.folder.mkdir(exist_ok=True)
            self.made_folder = True
        stem = _file_stem(instrument, self._stems)
        paths = (self.folder / f"{stem}_message_{self.levels}.csv",
                 self.folder / f"{stem}_orderbook_{self.levels}.csv")
        for path in paths:
            self.files.create(path)
        self._paths[instrument] = paths
        self._last = None

    def row(self, instrument: str, message: tuple, book: tuple) -> None:
        last = self._last
        if last is None or last[0] != instrument:      # the two files of the last stay open
            messages, books = self._paths[instrument]
            last = self._last = (instrument, self.files.get(messages).writerow,
                                 self.files.get(books).writerow)
        last[1](message[:len(MESSAGE_COLUMNS)])
        last[2](book)


class _SpoolSink:
    """Spool each instrument's rows to a file of its own in ``folder``, to be
    copied into the SQLite tables instrument by instrument at the end (the
    tables' row order is as it was when all rows were kept in memory)."""

    def __init__(self, folder: Path, private: bool) -> None:
        self.folder = folder
        self.files = _OpenFiles(_SpoolFile, private)
        self.paths: dict[str, Path] = {}
        self.rows = 0
        self._last: tuple[str, Any] | None = None

    def instrument(self, instrument: str) -> None:
        path = self.folder / f"{len(self.paths)}.rows"
        self.files.create(path)
        self.paths[instrument] = path
        self._last = None

    def row(self, instrument: str, message: tuple, book: tuple) -> None:
        last = self._last
        if last is None or last[0] != instrument:
            last = self._last = (instrument, self.files.get(self.paths[instrument]).writerow)
        last[1]((message, book))
        self.rows += 1


def _write_lobster_tables(conn: Any, spool: _SpoolSink, levels: int) -> int:
    """Fill the two LOBSTER tables from the spool, a chunk of rows at a time. O(rows)."""
    columns = book_columns(levels)
    insert_book = f"INSERT INTO lobster_orderbook VALUES ({', '.join('?' * (len(columns) + 2))})"
    with conn:
        conn.execute("DROP TABLE IF EXISTS lobster_message")
        conn.execute("DROP TABLE IF EXISTS lobster_orderbook")
        conn.execute("CREATE TABLE lobster_message (instrument TEXT, row INTEGER, time TEXT, "
                     "type INTEGER, order_id INTEGER, size INTEGER, price INTEGER, "
                     "direction INTEGER, seq INTEGER, ts INTEGER, PRIMARY KEY (instrument, row))")
        conn.execute("CREATE TABLE lobster_orderbook (instrument TEXT, row INTEGER, "
                     + ", ".join(f"{c} INTEGER" for c in columns)
                     + ", PRIMARY KEY (instrument, row))")
        for instrument, path in spool.paths.items():
            messages: list[tuple] = []
            books: list[tuple] = []
            for n, (message, book) in enumerate(_spooled(path), 1):
                messages.append((instrument, n, *message))
                books.append((instrument, n, *book))
                if len(messages) >= SPOOL_CHUNK:
                    _insert_lobster_rows(conn, insert_book, messages, books)
            _insert_lobster_rows(conn, insert_book, messages, books)
    return spool.rows


def _insert_lobster_rows(conn: Any, insert_book: str, messages: list[tuple],
                         books: list[tuple]) -> None:
    conn.executemany("INSERT INTO lobster_message VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", messages)
    conn.executemany(insert_book, books)
    messages.clear()
    books.clear()


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
    # the spool beside the database, not in the system's temporary directory
    # (often memory, where the LOBSTER rows would undo the bounded memory)
    with tempfile.TemporaryDirectory(prefix=".lotex-export-", dir=path.parent) as tmp:
        spool = _SpoolSink(Path(tmp), not public) if lobster_levels else None
        try:
            store, lobster, entries = _project(source, path, public, lobster_levels, spool)
        finally:
            if spool is not None:
                spool.files.close()
        try:
            events = store.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            report = [f"wrote {path}: {entries} entries, {events} events "
                      f"({'public only' if public else 'full'}), {len(store.db.table_names())} tables"]
            if lobster is not None and spool is not None:
                rows = _write_lobster_tables(store.db.conn, spool, lobster_levels)
                report.append(f"LOBSTER tables: {rows} messages for {len(lobster.instruments)} "
                              f"instruments, {lobster_levels} levels")
        finally:
            store.close()
    return report


def to_csv(source: Source, outdir: str | os.PathLike, *, public: bool = False,
           lobster_levels: int = 10) -> list[str]:
    """Write one CSV per table and the LOBSTER pairs into ``outdir`` (new or
    empty; for a full export made or tightened to mode 0700, its files 0600);
    return report lines. On failure or interruption, remove what was written
    (and ``outdir`` if this made it)."""
    outdir = Path(outdir)
    if lobster_levels:
        check_levels(lobster_levels)
    if outdir.exists() and not outdir.is_dir():
        raise ReplayError(f"{outdir} is a file; give a directory for --csv")
    if outdir.is_dir() and any(outdir.iterdir()):
        raise ReplayError(f"{outdir} is not empty; export into a new or empty directory "
                          f"(files of an earlier export must not stay beside this one)")
    made = [folder for folder in (outdir, *outdir.parents) if not folder.exists()]
    written: list[Path] = []
    try:
        if public:
            outdir.mkdir(parents=True, exist_ok=True)
        else:
            private_dir(outdir)
        return _write_csv(source, outdir, public, lobster_levels, written)
    except BaseException as exc:
        _remove(written, made)
        if isinstance(exc, (sqlite3.Error, OSError)):
            raise ReplayError(f"cannot write into {outdir}: {exc}") from None
        raise


def _remove(files: list[Path], folders: list[Path]) -> None:
    """Remove ``files``, then each of ``folders`` (deepest first) left empty."""
    for path in reversed(files):
        try:
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def _write_csv(source: Source, outdir: Path, public: bool, lobster_levels: int,
               written: list[Path]) -> list[str]:
    """Write the export into ``outdir``, listing in ``written`` each path made."""
    folder = outdir / "lobster"
    sink = _CsvSink(folder, lobster_levels, not public) if lobster_levels else None
    with tempfile.TemporaryDirectory(prefix="lotex-export-") as tmp:
        try:
            store, lobster, entries = _project(source, Path(tmp) / "store.sqlite", public,
                                               lobster_levels, sink)
        finally:
            if sink is not None:
                sink.files.close()
                if sink.made_folder:
                    written.append(folder)
                written.extend(sink.files.created)
        try:
            tables = 0
            for name in sorted(store.db.table_names()):
                if name.startswith("_"):
                    continue
                cursor = store.db.execute(f'SELECT * FROM "{name}" ORDER BY rowid')
                written.append(outdir / f"{name}.csv")
                with open(outdir / f"{name}.csv", "w", newline="", encoding="utf-8",
                          opener=_opener(not public)) as out:
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
        report.append(f"LOBSTER files for {len(lobster.instruments)} instruments in {folder} "
                      f"({lobster_levels} levels)")
    return report
