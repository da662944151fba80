"""`lotex replay export`: SQLite and CSV round trips (rows = events), LOBSTER files."""

from __future__ import annotations

import csv
import os
import sqlite3
from collections import Counter

import pytest

from exchange import market
from exchange.commands import (CreateInstrument, CreateSession, IssuePaddle, IssueUnits,
                               PlaceOrder, RegisterParty, ReviewCredit, StartCall, Uncross)
from exchange.errors import MAX_INT
from exchange.codec import decode_entry
from gateway.cli import main
from gateway.keys import initialise
from recorder import layout
from recorder.journal import read_journal
from recorder.store import table_of
from exchange.events import EVENT_TYPES
from replay.journaling import open_recording
from replay.lobster import EMPTY_ASK, EMPTY_BID, BookMismatch, OrderBookRebuilder
from replay.sample import record_sample
from replay.source import Source
from tests.integration.replay_fixture import record_random

SEED = int(os.environ.get("LOTEX_REPLAY_SEED", "20260302"))
T0 = 1_772_409_600 * 10**9                # 2026-03-02T00:00:00Z
TABLE = {t.__name__: table_of(t) for t in EVENT_TYPES}


def journal_counts(data_dir, public: bool = False) -> tuple[int, Counter]:
    entries = 0
    counts: Counter = Counter()
    for rec in read_journal(layout.journal_dir(data_dir)):
        entries += 1
        for event in decode_entry(rec.payload).events:
            if public and event.to:
                continue
            counts[type(event).__name__] += 1
    return entries, counts


def operator(data_dir) -> list[str]:
    """The arguments a full export needs: the operator's key of ``data_dir``'s key store."""
    return ["--operator-key", str(data_dir / "clients" / "op.json")]


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("sample")
    record_sample(data)
    initialise(data)
    return data


@pytest.mark.parametrize("public", [False, True])
def test_sqlite_round_trip_has_a_row_per_event(sample_dir, tmp_path, public, capsys):
    db = tmp_path / "out.sqlite"
    args = (["replay", "export", str(sample_dir), "--sqlite", str(db)]
            + (["--public"] if public else operator(sample_dir)))
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    entries, counts = journal_counts(sample_dir, public)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == sum(counts.values())
        by_type = dict(conn.execute("SELECT type, COUNT(*) FROM events GROUP BY type").fetchall())
        assert by_type == dict(counts)
        for name in TABLE:      # one table per kind of event, one row per event of that kind
            assert conn.execute(f'SELECT COUNT(*) FROM "{TABLE[name]}"').fetchone()[0] == \
                counts.get(name, 0), name
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if public:
            assert "commands" not in names
            assert counts["LotSold"] == 0 and counts["BidConfirmed"] == 0
        else:
            assert conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0] == entries
            assert conn.execute("SELECT COUNT(*) FROM rejections").fetchone()[0] == 1
        # the LOBSTER tables: ULR-1 has 8 book messages (see the CSV test)
        assert conn.execute("SELECT COUNT(*) FROM lobster_message WHERE instrument = 'ULR-1'"
                            ).fetchone()[0] == 8
        assert conn.execute("SELECT COUNT(*) FROM lobster_orderbook WHERE instrument = 'ULR-1'"
                            ).fetchone()[0] == 8
    finally:
        conn.close()


def test_export_refuses_to_overwrite_another_database(sample_dir, tmp_path, capsys):
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE precious (x)")
    conn.commit()
    conn.close()
    assert main(["replay", "export", str(sample_dir), "--sqlite", str(other),
                 *operator(sample_dir)]) == 2
    assert "not a lotex analyst store" in capsys.readouterr().err
    # re-exporting over an analyst store replaces it
    db = tmp_path / "store.sqlite"
    assert main(["replay", "export", str(sample_dir), "--sqlite", str(db),
                 *operator(sample_dir)]) == 0
    assert main(["replay", "export", str(sample_dir), "--sqlite", str(db),
                 *operator(sample_dir)]) == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM commands").fetchone()[0] == 77
    conn.close()


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_csv_round_trip_and_the_lobster_pair(sample_dir, tmp_path):
    out = tmp_path / "csv"
    assert main(["replay", "export", str(sample_dir), "--csv", str(out), "--levels", "2",
                 *operator(sample_dir)]) == 0
    entries, counts = journal_counts(sample_dir)
    events = read_csv(out / "events.csv")
    assert events[0][:2] == ["seq", "n"] and len(events) - 1 == sum(counts.values())
    for name, table in TABLE.items():
        assert len(read_csv(out / f"{table}.csv")) - 1 == counts.get(name, 0), name
    assert len(read_csv(out / "commands.csv")) - 1 == entries
    # The units book by hand (OPEN = 3600 s after midnight; prices x 100):
    #  +40m 101 sells 300@5.00 (order of seq 59), +41m 200@5.20 (60), +42m 102 buys
    #  100@4.80 (61), +43m 103 buys 150@5.00: executes 150 of 59, +44m 104 buys 250@5.20:
    #  executes 150 of 59 and 100 of 60, +45m 105 buys 50@4.90 (64), +50m 61 deleted.
    messages = read_csv(out / "lobster" / "ULR-1_message_2.csv")
    assert messages == [
        ["6000.000000000", "1", "59", "300", "50000", "-1"],
        ["6060.000000000", "1", "60", "200", "52000", "-1"],
        ["6120.000000000", "1", "61", "100", "48000", "1"],
        ["6180.000000000", "4", "59", "150", "50000", "-1"],
        ["6240.000000000", "4", "59", "150", "50000", "-1"],
        ["6240.000000000", "4", "60", "100", "52000", "-1"],
        ["6300.000000000", "1", "64", "50", "49000", "1"],
        ["6600.000000000", "3", "61", "100", "48000", "1"],
    ]
    books = read_csv(out / "lobster" / "ULR-1_orderbook_2.csv")
    assert len(books) == len(messages)
    assert books[3] == ["50000", "150", "48000", "100", "52000", "200", "-9999999999", "0"]
    assert books[-1] == ["52000", "100", "49000", "50", "9999999999", "0", "-9999999999", "0"]
    patent = read_csv(out / "lobster" / "PAT-BA_message_2.csv")
    assert [row[1] for row in patent] == ["1", "1", "1", "4", "3", "3", "7"]   # sold, then closed


def test_public_lobster_has_the_same_books_without_order_ids(sample_dir, tmp_path):
    out = tmp_path / "public"
    assert main(["replay", "export", str(sample_dir), "--csv", str(out), "--levels", "2",
                 "--public"]) == 0
    full = tmp_path / "full"
    assert main(["replay", "export", str(sample_dir), "--csv", str(full), "--levels", "2",
                 *operator(sample_dir)]) == 0
    name = "ULR-1_orderbook_2.csv"
    assert read_csv(out / "lobster" / name) == read_csv(full / "lobster" / name)
    messages = read_csv(out / "lobster" / "ULR-1_message_2.csv")
    assert {row[2] for row in messages} == {"0"}
    assert not (out / "commands.csv").exists()
    assert len(read_csv(out / "ev_lot_sold.csv")) == 1          # the header only: private


@pytest.mark.parametrize("offset", [0, 1])
def test_lobster_books_follow_random_streams(tmp_path, offset):
    """Every entry's rebuilt levels agree with the engine's DepthChanged (checked
    inside the rebuilder), and the last book row is the engine's final book."""
    seed = SEED + offset
    record_random(tmp_path, seed, 8_000)
    source = Source.open(tmp_path)
    full, public = OrderBookRebuilder(5), OrderBookRebuilder(5, private=False)
    for _, entry in source.entries():
        try:
            full.fold(entry)
            public.fold(entry)
        except BookMismatch as exc:
            raise AssertionError(f"seed {seed}: {exc}") from None
    engine = source.rebuild()
    state = engine.state
    asks = market.depth(state, "U", "sell", 5)
    bids = market.depth(state, "U", "buy", 5)
    expected = []
    for i in range(5):
        expected += [asks[i][0] * 100, asks[i][1]] if i < len(asks) else [9_999_999_999, 0]
        expected += [bids[i][0] * 100, bids[i][1]] if i < len(bids) else [-9_999_999_999, 0]
    for rebuilder in (full, public):
        assert list(rebuilder.instruments["U"].books[-1]) == expected, f"seed {seed}"
    assert len(full.instruments["U"].messages) > 500, f"seed {seed}"
    kinds = Counter(row[1] for row in full.instruments["U"].messages)
    assert kinds[1] and kinds[3] and kinds[4] and kinds[6] and kinds[7], (seed, kinds)
    crosses, phases = [], []            # the same in both: cross trades, phase rows and books
    for rebuilder in (full, public):
        inst = rebuilder.instruments["U"]
        crosses.append([m[3:5] + m[6:] for m in inst.messages if m[1] == 6])
        phases.append([(m[4:], b) for m, b in zip(inst.messages, inst.books) if m[1] == 7])
    assert crosses[0] == crosses[1] and phases[0] == phases[1], f"seed {seed}"


def record_call_auction(data_dir) -> Source:
    """A units book in a call: 101 sells 10@1.00, 102 buys 6@1.02, 103 buys
    8@1.01; the uncross trades 6 and 4 at one price, 103 keeps 4@1.01."""
    d = open_recording(data_dir, start_ts=T0)
    try:
        d.ok(CreateSession(session="S", name="s", currency="USD"), ts=T0)
        paddles = []
        for i in range(3):
            party = d.ok(RegisterParty(name=f"p{i}"), actor="b1", role="broker")[0].party
            d.ok(ReviewCredit(party=party, approved=True, credit_limit=MAX_INT,
                              agreement_version="v"))
            paddles.append(d.ok(IssuePaddle(session="S", party=party))[0].paddle)
        d.ok(CreateInstrument(session="S", instrument="U", kind="units"))
        d.ok(IssueUnits(session="S", instrument="U", paddle=paddles[0], qty=100))
        d.ok(StartCall(session="S", instrument="U"))
        for paddle, side, qty, price in ((paddles[0], "sell", 10, 100), (paddles[1], "buy", 6, 102),
                                         (paddles[2], "buy", 8, 101)):
            d.ok(PlaceOrder(session="S", instrument="U", paddle=paddle, order=1, side=side,
                            qty=qty, price=price, tif="gtc"), actor="b1", role="broker")
        d.ok(Uncross(session="S", instrument="U"))
        d.commit()
    finally:
        d.journal.close()
    return Source.open(data_dir)


def test_a_call_auctions_trades_are_cross_rows_in_both_exports(tmp_path):
    """Write each uncross trade once, as type 6, in the full and the public export."""
    source = record_call_auction(tmp_path)
    full, public = kept_lobster(source, 2, public=False), kept_lobster(source, 2, public=True)
    crosses = {}
    for name, rebuilder in (("full", full), ("public", public)):
        messages = rebuilder.instruments["U"].messages
        crosses[name] = [(m[1], m[2], m[3], m[5]) for m in messages if m[1] in (4, 6)]
    assert [row[0] for row in crosses["full"]] == [6, 6]
    assert crosses["full"] == crosses["public"]
    assert sum(row[2] for row in crosses["full"]) == 10          # the auction's volume, once


def test_a_phase_row_follows_the_book_changes_of_its_run(tmp_path):
    """Write an uncross's phase row after its level changes, the matched book, in both exports."""
    source = record_call_auction(tmp_path)
    matched = (EMPTY_ASK, 0, 10_100, 4, EMPTY_ASK, 0, EMPTY_BID, 0)
    for public in (False, True):
        inst = kept_lobster(source, 2, public=public).instruments["U"]
        rows = list(zip(inst.messages, inst.books))
        assert rows[-1][0][1] == 7 and rows[-1][0][4] == 1, public     # resumption, last
        assert rows[-1][1] == matched, public


# --------------------------------------------------------------------------
# streaming: the same bytes as when every row was kept, in bounded memory
# --------------------------------------------------------------------------

def kept_lobster(source, levels: int, public: bool) -> OrderBookRebuilder:
    """Every row kept in memory, as the export did before it streamed."""
    rebuilder = OrderBookRebuilder(levels, private=not public)
    for _, entry in source.entries():
        rebuilder.fold(entry)
    return rebuilder


def kept_files(rebuilder: OrderBookRebuilder, levels: int) -> dict[str, bytes]:
    """The LOBSTER CSV files as the export wrote them from the rows kept."""
    files = {}
    for instrument in rebuilder.instruments:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in instrument)
        messages, books = [], []
        for message, book in rebuilder.rows(instrument):
            messages.append(",".join(map(str, message[:6])) + "\n")
            books.append(",".join(map(str, book)) + "\n")
        files[f"{safe}_message_{levels}.csv"] = "".join(messages).encode()
        files[f"{safe}_orderbook_{levels}.csv"] = "".join(books).encode()
    return files


def kept_tables(rebuilder: OrderBookRebuilder) -> tuple[list[tuple], list[tuple]]:
    """The rows of the two LOBSTER tables, in rowid order, as they were inserted."""
    messages, books = [], []
    for instrument in rebuilder.instruments:
        for n, (message, book) in enumerate(rebuilder.rows(instrument), 1):
            messages.append((len(messages) + 1, instrument, n, *message))
            books.append((len(books) + 1, instrument, n, *book))
    return messages, books


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("random")
    record_random(data, SEED, 2_000)
    initialise(data)
    return data


@pytest.mark.parametrize("public", [False, True])
@pytest.mark.parametrize("journal", ["sample", "random"])
def test_streamed_lobster_export_is_byte_identical_to_the_kept_rows(
        sample_dir, random_dir, tmp_path, monkeypatch, journal, public):
    """The files and tables written row by row hold the bytes and rows the
    export wrote from rows kept in memory; with one pair of files open at a
    time the two books' files are closed and appended to again, to the same bytes."""
    from replay import export as ex
    data = sample_dir if journal == "sample" else random_dir
    source = Source.open(data)
    kept = kept_lobster(source, 3, public)
    assert kept.instruments and any(kept.instruments[i].messages for i in kept.instruments)
    monkeypatch.setattr(ex, "MAX_OPEN", 2)
    monkeypatch.setattr(ex, "SPOOL_CHUNK", 7)
    ex.to_csv(source, tmp_path / "csv", public=public, lobster_levels=3)
    written = {path.name: path.read_bytes() for path in (tmp_path / "csv" / "lobster").iterdir()}
    assert written == kept_files(kept, 3), (journal, public, SEED)
    db = tmp_path / "out.sqlite"
    ex.to_sqlite(source, db, public=public, lobster_levels=3)
    conn = sqlite3.connect(db)
    try:
        tables = tuple(conn.execute(f"SELECT rowid, * FROM {name} ORDER BY rowid").fetchall()
                       for name in ("lobster_message", "lobster_orderbook"))
    finally:
        conn.close()
    assert tables == kept_tables(kept), (journal, public, SEED)


def test_instruments_whose_file_names_clash_keep_a_pair_each():
    """Two ids that make the same file name (A/B, A_B) get a pair each; the
    second no longer overwrites the first."""
    from replay import export as ex
    taken: set[str] = set()
    assert [ex._file_stem(i, taken) for i in ("A/B", "A_B", "A_B-2", "ULR-1")] == \
        ["A_B", "A_B-2", "A_B-2-2", "ULR-1"]


def test_lobster_export_memory_does_not_grow_with_the_journal(tmp_path, monkeypatch):
    """The Python heap's peak over an export of 4N commands is about that of
    N (200 levels: each row kept would be ~7 KB); the journal is read a small
    segment and the store written a small batch at a time, so the rows alone
    could make a difference. Each size is exported twice and its lower peak
    kept: one peak can hold a one-off allocation of the process's own (after
    many tests, the interned-strings table grew by 1.8 MB as a path was made)."""
    import tracemalloc

    import recorder.store
    from replay import export as ex
    monkeypatch.setattr(recorder.store, "BATCH", 100)
    peaks: dict[int, int] = {}
    for run, commands in enumerate((500, 500, 2_000, 2_000)):   # the first warms caches up
        data = tmp_path / f"j{commands}"
        if not data.exists():
            record_random(data, SEED, commands, segment_bytes=1 << 16)
        out = tmp_path / f"out{commands}-{run}"
        tracemalloc.start()
        try:
            ex.to_csv(Source.open(data), out, lobster_levels=200)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        peaks[commands] = min(peak, peaks.get(commands, peak))
        rows = len(read_csv(out / "lobster" / "U_message_200.csv"))
        assert rows > commands // 10, (commands, rows, SEED)
    assert peaks[2_000] < peaks[500] + (1 << 20), (peaks, SEED)


@pytest.mark.parametrize("exists", [False, True])
def test_an_interrupted_csv_export_leaves_nothing(random_dir, tmp_path, monkeypatch, capsys,
                                                  exists):
    """Ctrl-C in the middle of an export (the LOBSTER files half written):
    exit 130, and what it wrote is gone; a directory it did not make stays, empty."""
    from replay import export as ex

    class Interrupted(ex.Progress):
        def advance(self, n: int = 1) -> None:
            counted[0] += n
            if counted[0] == 1_500:
                raise KeyboardInterrupt

    counted = [0]
    monkeypatch.setattr(ex, "Progress", Interrupted)
    out = tmp_path / "made" / "csv"
    if exists:
        out.mkdir(parents=True)
    assert main(["replay", "export", str(random_dir), "--csv", str(out),
                 *operator(random_dir)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert counted[0] == 1_500
    if exists:
        assert out.is_dir() and not any(out.iterdir())
    else:
        assert not (tmp_path / "made").exists()


def test_project_refuses_to_leave_an_exports_lobster_tables_stale(sample_dir, tmp_path, capsys):
    """`journal project` into a `replay export --sqlite` file: the LOBSTER tables
    would not follow the new entries; it is refused, --rebuild drops them."""
    from replay import export as ex
    db = tmp_path / "export.sqlite"
    ex.to_sqlite(Source.open(sample_dir), db, lobster_levels=3)
    before = sqlite3.connect(db).execute("SELECT count(*) FROM lobster_message").fetchone()[0]
    assert before > 0
    assert main(["journal", "project", str(sample_dir), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "LOBSTER tables of `lotex replay export`" in err
    assert sqlite3.connect(db).execute("SELECT count(*) FROM lobster_message").fetchone()[0] == before
    assert main(["journal", "project", str(sample_dir), "--db", str(db), "--rebuild"]) == 0
    names = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not any(n.startswith("lobster_") for n in names) and "events" in names
