"""Golden tests of replay on the recorded demo session (`replay.sample`).

Every expected figure is computed by hand from the session's script (see
the table in replay/sample.py): OTBA increments of $30,000, 10 % premium,
15 % commission, display rate 6.6402 CNY per USD, paddles 101-105.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from exchange.commands import CreateLot, CreateSession, IssuePaddle, LotTerms, PlaceBid, \
    RegisterParty, ReviewCredit, ScheduleLot, VetLot
from gateway.cli import main
from gateway.keys import KeyStore, initialise
from replay import comparables as co
from replay import history as hi
from replay import results as re_
from replay import state as st
from replay.access import AccessDenied, operator_viewer
from replay.chart import draw
from replay.journaling import open_recording
from replay.sample import HOUR, MINUTE, OPEN, T0, record_sample
from replay.source import ReplayError, Source, format_time, parse_time, zone


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    data = tmp_path_factory.mktemp("sample")
    session = record_sample(data)
    initialise(data)                       # the server's key store: op, b1, b2, viewer
    return session


@pytest.fixture(scope="module")
def source(sample):
    return Source.open(sample.data_dir)


@pytest.fixture(scope="module")
def operator(sample):
    return operator_viewer(f"{sample.data_dir}/clients/op.json", sample.data_dir)


def by_serial(rows):
    return {row["serial"]: row for row in rows}


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------

EXPECTED_RESULTS = {
    # serial: (outcome, how, paddle, hammer, premium, total, commission, net)
    "L-ENG": ("sold", "auction", 104, 15_000_000, 1_500_000, 16_500_000, 2_250_000, 12_750_000),
    "L-SF": ("sold", "auction", 103, 3_100_000, 310_000, 3_410_000, 465_000, 2_635_000),
    "L-SS": ("sold", "auction", 104, 4_200_000, 420_000, 4_620_000, 630_000, 3_570_000),
    "L-DUT": ("sold", "auction", 105, 8_500_000, 850_000, 9_350_000, 1_275_000, 7_225_000),
    "L-PASS": ("sold in negotiation", "negotiated", 103, 7_000_000, 700_000, 7_700_000,
               1_050_000, 5_950_000),
    "L-NOBID": ("passed", None, None, None, None, None, None, None),
    "L-BA": ("sold", "book", 104, 20_000_000, 2_000_000, 22_000_000, 3_000_000, 17_000_000),
}


def test_results_table_matches_the_hand_computed_figures(source):
    columns, rows = re_.results(source)
    lots = by_serial(rows)
    assert list(lots) == list(EXPECTED_RESULTS) + ["TOTAL"]
    for serial, expected in EXPECTED_RESULTS.items():
        row = lots[serial]
        got = tuple(row.get(k) for k in ("outcome", "how", "paddle", "hammer", "premium", "total",
                                         "commission", "net"))
        assert got == expected, serial
    assert lots["L-NOBID"]["reason"] == "no_bids"
    # display: 150,000.00 USD x 6.6402 = 996,030.00 CNY; 165,000.00 -> 1,095,633.00
    assert (lots["L-ENG"]["display_hammer"], lots["L-ENG"]["display_total"]) == (99_603_000,
                                                                                 109_563_300)
    total = lots["TOTAL"]
    assert (total["hammer"], total["premium"], total["total"], total["commission"],
            total["net"]) == (57_800_000, 5_780_000, 63_580_000, 8_670_000, 49_130_000)
    assert "buyer" not in columns


def test_results_for_an_operator_name_the_parties(source, operator):
    columns, rows = re_.results(source, operator)
    lots = by_serial(rows)
    assert "buyer" in columns
    assert lots["L-ENG"]["buyer"] == "Cobalt Licensing LLC (party 12)"
    assert lots["L-ENG"]["seller"] == "Helios Imaging Ltd (party 3)"


def test_results_cli_text_and_json(sample, capsys):
    assert main(["replay", "results", sample.data_dir]) == 0
    out = capsys.readouterr().out
    assert "sold in negotiation" in out and "150,000.00" in out and "578,000.00" in out
    assert main(["replay", "results", sample.data_dir, "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["serial"] == "L-ENG" and rows[0]["hammer"] == 15_000_000


# --------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------

def test_state_after_the_english_lot_stands_at_90k(sample, source):
    view = st.state_at(source, seq=sample.marks["english_at_90k"])
    lots = by_serial(view.lots())
    eng = lots["L-ENG"]
    assert (eng["status"], eng["price"], eng["leader"], eng["bids"], eng["reserve_met"]) == \
        ("open", 9_000_000, 102, 3, True)
    assert lots["L-DUT"]["price"] == 9_000_000                  # 100k - 2 steps of 5k
    # sealed: no price; 3 live bids as the feed counted them (102 revised its bid: still one)
    assert lots["L-SF"]["bids"] == 3 and lots["L-SF"].get("price") is None
    assert lots["L-PASS"]["reserve_met"] is False
    assert "reserve" not in eng and "live_bids" not in lots["L-SF"]          # public view
    books = by_serial([dict(r, serial=r["instrument"]) for r in view.books()])
    assert books["ULR-1"]["trades"] == 0 and books["ULR-1"]["bid"] is None


def test_state_for_an_operator_shows_reserve_proxy_and_sealed_bids(sample, source, operator):
    view = st.state_at(source, seq=sample.marks["english_at_90k"], viewer=operator)
    lots = by_serial(view.lots())
    assert (lots["L-ENG"]["reserve"], lots["L-ENG"]["leader_max"]) == (6_000_000, 12_000_000)
    assert lots["L-SF"]["live_bids"] == "103:3100000 105:2800000 102:3000000"


def test_state_at_a_time_in_the_book_phase(source):
    view = st.state_at(source, at=OPEN + 45 * MINUTE + 30 * 10**9)
    lots = by_serial(view.lots())
    assert (lots["L-DUT"]["status"], lots["L-DUT"]["price"], lots["L-DUT"]["leader"]) == \
        ("sold", 8_500_000, 105)
    books = {row["instrument"]: row for row in view.books()}
    ulr = books["ULR-1"]
    assert (ulr["bid"], ulr["bid_qty"], ulr["ask"], ulr["ask_qty"], ulr["spread"]) == \
        (490, 50, 520, 100, 30)
    assert (ulr["last_price"], ulr["trades"]) == (520, 3)
    assert ulr["bids"] == "490x50(1) 480x100(1)" and ulr["asks"] == "520x100(1)"
    assert books["PAT-BA"]["ask"] is None                        # the seller's ask comes at +46m


def test_state_at_a_recorded_moment_includes_its_entry(source):
    before = by_serial(st.state_at(source, at=OPEN + 10 * MINUTE - 1).lots())
    at = by_serial(st.state_at(source, at=OPEN + 10 * MINUTE).lots())
    assert before["L-DUT"]["price"] == 10_000_000 and at["L-DUT"]["price"] == 9_500_000
    assert before["L-ENG"]["price"] == 3_000_000 and at["L-ENG"]["price"] == 6_000_000


def test_state_after_the_first_closes_from_the_snapshot_equals_a_full_replay(sample, source):
    seq = sample.marks["first_closes"]
    assert sample.snapshot_seq == seq
    view = st.state_at(source, seq=seq)
    full = st.StateView(source.rebuild(upto_seq=seq, use_snapshot=False), view.viewer, 5)
    assert view.lots() == full.lots() and view.books() == full.books()
    lots = by_serial(view.lots())
    assert (lots["L-SF"]["status"], lots["L-SF"]["price"], lots["L-SF"]["leader"]) == \
        ("sold", 3_100_000, 103)
    assert (lots["L-SS"]["price"], lots["L-SS"]["leader"]) == (4_200_000, 104)
    assert lots["L-PASS"]["status"] == "passed" and lots["L-NOBID"]["status"] == "passed"
    assert lots["L-BA"]["status"] == "sold" and lots["L-BA"]["price"] == 20_000_000


def test_state_at_a_time_fires_only_the_timers_a_later_entry_fired(tmp_path):
    """A lot closing at T+1h: with nothing recorded after it, as of T+2h it is
    still open (the journal ends); a later entry proves the clock passed the close."""
    d = open_recording(tmp_path, start_ts=T0)
    d.ok(CreateSession(session="S", name="s"))
    seller = d.ok(RegisterParty(name="seller"), actor="b1", role="broker")[0].party
    buyer = d.ok(RegisterParty(name="buyer"), actor="b1", role="broker")[0].party
    for party in (seller, buyer):
        d.ok(ReviewCredit(party=party, approved=True, credit_limit=10**9, agreement_version="v"))
        d.ok(IssuePaddle(session="S", party=party))
    d.ok(CreateLot(serial="X", session="S", seller=seller, terms=LotTerms(
        title="x", starting_bid=1_000, opens_at=T0, closes_at=T0 + HOUR)), actor="b1",
        role="broker")
    d.ok(VetLot(serial="X", score=1, approved=True))
    d.ok(ScheduleLot(serial="X"))
    d.ok(PlaceBid(serial="X", paddle=102, amount=5_000), actor="b1", role="broker",
         ts=T0 + MINUTE)
    d.commit()
    source = Source.open(tmp_path)
    assert by_serial(st.state_at(source, seq=d.seq).lots())["X"]["status"] == "open"
    assert by_serial(st.state_at(source, at=T0 + HOUR - 1).lots())["X"]["status"] == "open"
    ended = st.state_at(source, at=T0 + 2 * HOUR)
    assert by_serial(ended.lots())["X"]["status"] == "open" and ended.past_end
    d.tick(T0 + 3 * HOUR)
    d.journal.close()
    after = by_serial(st.state_at(source, at=T0 + 2 * HOUR).lots())["X"]
    assert (after["status"], after["price"], after["leader"]) == ("sold", 1_000, 102)


def test_state_cli(sample, capsys):
    assert main(["replay", "state", sample.data_dir, "--seq", str(sample.marks["english_at_90k"]),
                 "--lot", "L-ENG"]) == 0
    out = capsys.readouterr().out
    assert "state after journal entry 55" in out and "90,000.00" in out and "L-SF" not in out
    assert main(["replay", "state", sample.data_dir, "--at", "2026-03-02T09:45:30",
                 "--tz", "Asia/Shanghai", "--lot", "ULR-1", "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["instrument"], r["bid"], r["ask"]) for r in rows] == [("ULR-1", 490, 520)]
    assert main(["replay", "state", sample.data_dir, "--seq", "5", "--lot", "NOPE"]) == 2
    assert main(["replay", "state", sample.data_dir, "--at", "yesterday"]) == 2
    assert "cannot read the time" in capsys.readouterr().err


# --------------------------------------------------------------------------
# history
# --------------------------------------------------------------------------

def test_public_history_of_the_english_lot(source):
    columns, rows = hi.history(source, "L-ENG", tz=zone("Asia/Shanghai"))
    assert "party" not in columns
    bids = [(r["paddle"], r["amount"]) for r in rows if r["event"] == "bid"]
    assert bids == [(102, 3_000_000), (103, 6_000_000), (102, 9_000_000), (103, 12_000_000),
                    (104, 15_000_000)]
    first = next(r for r in rows if r["event"] == "bid")
    assert first["time"] == "2026-03-02T09:05:00+08:00"
    assert (first["display_amount"], first["display_currency"]) == (19_920_600, "CNY")  # ¥199,206
    extended = [r["detail"] for r in rows if r["event"] == "close extended"]
    assert extended == ["closes 2026-03-02T11:10:00+08:00, hard end 2026-03-02T12:00:00+08:00",
                        "closes 2026-03-02T11:20:00+08:00, hard end 2026-03-02T12:00:00+08:00"]
    award = next(r for r in rows if r["event"] == "awarded")
    assert (award["paddle"], award["amount"], award["display_amount"]) == (104, 15_000_000,
                                                                           99_603_000)
    # nothing private: no proxy maximum (102's 45,000.00), no reserve, no refusal
    amounts = {r.get("amount") for r in rows}
    assert 4_500_000 not in amounts and 6_000_000 in amounts
    assert not any("private" in r["event"] for r in rows)
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)


def test_operator_history_has_identities_proxies_and_refusals(source, operator):
    columns, rows = hi.history(source, "L-ENG", viewer=operator)
    assert columns[-1] == "party"
    made = [(r["paddle"], r["amount"]) for r in rows if r["event"] == "bid as made (private)"]
    assert made == [(102, 4_500_000), (103, 6_000_000), (102, 12_000_000), (103, 12_000_000),
                    (104, 15_000_000)]
    refused = [r for r in rows if r["event"] == "refused (private)"]
    assert len(refused) == 1 and refused[0]["paddle"] == 105 and refused[0]["amount"] == 10_000_000
    assert "below_increment" in refused[0]["detail"]
    assert refused[0]["party"] == "Delta Semiconductor KK (party 15, broker b3)"
    sold = next(r for r in rows if r["event"] == "sold (private)")
    assert "buyer party 12" in sold["detail"]


def test_sealed_history_reveals_amounts_only_at_the_close(source):
    _, rows = hi.history(source, "L-SF")
    counts = [r["detail"] for r in rows if r["event"] == "sealed bids"]
    assert counts == ["1 live", "2 live", "3 live"]       # a revision tells the public nothing
    revealed = [(r["paddle"], r["amount"]) for r in rows if r["event"] == "sealed bid revealed"]
    assert revealed == [(103, 3_100_000), (102, 3_000_000), (105, 2_800_000)]
    close = OPEN + HOUR
    assert all(r["ts"] >= close for r in rows if r.get("amount") and r["event"] != "scheduled"
               and r["event"] != "opened")


def test_book_history_of_the_units_instrument(source):
    _, rows = hi.history(source, "ULR-1")
    trades = [(r["paddle"], r["qty"], r["amount"]) for r in rows if r["event"] == "trade"]
    assert trades == [(103, 150, 500), (104, 150, 500), (104, 100, 520)]
    quotes = [(r["bid"], r["ask"]) for r in rows if r["event"] == "quote"]
    assert quotes == [(0, 500), (480, 500), (480, 500), (480, 520), (490, 520)]


def test_history_of_the_bid_ask_lot_includes_its_book(source):
    _, rows = hi.history(source, "L-BA")
    events = [r["event"] for r in rows]
    assert "book created" in events and "trade" in events and events.count("awarded") == 1


def test_history_errors_and_cli(sample, source, capsys):
    with pytest.raises(ReplayError):
        hi.history(source, "NOPE")
    assert main(["replay", "history", sample.data_dir, "--lot", "NOPE"]) == 2
    assert main(["replay", "history", sample.data_dir, "--lot", "L-ENG", "--tz", "Mars/Olympus"]) == 2
    capsys.readouterr()
    assert main(["replay", "history", sample.data_dir, "--lot", "L-ENG", "--tz",
                 "Europe/Zurich"]) == 0
    out = capsys.readouterr().out
    assert "2026-03-02T02:05:00+01:00" in out and "199,206.00" in out and "party" not in out
    assert main(["replay", "history", sample.data_dir, "--lot", "L-ENG", "--operator-key",
                 f"{sample.data_dir}/clients/op.json"]) == 0
    out = capsys.readouterr().out
    assert "Cobalt Licensing LLC" in out and "below_increment" in out


def test_history_in_another_currency_needs_a_display_rate(source):
    with pytest.raises(ReplayError, match="no display rate from USD to EUR"):
        hi.history(source, "L-ENG", currency="EUR")
    with pytest.raises(ReplayError, match="not a currency code"):
        hi.history(source, "L-ENG", currency="cny")
    _, rows = hi.history(source, "L-ENG", currency="CNY")
    assert any(r.get("display_currency") == "CNY" for r in rows)


# --------------------------------------------------------------------------
# who may see identities
# --------------------------------------------------------------------------

def test_operator_key_checks(sample, tmp_path, capsys):
    data = sample.data_dir
    with pytest.raises(AccessDenied, match="not an operator"):
        operator_viewer(f"{data}/clients/b1.json", data)
    with pytest.raises(AccessDenied, match="no key store"):
        operator_viewer(f"{data}/clients/op.json", None)
    forged = json.loads(Path(data, "clients", "op.json").read_text())
    forged["secret_key"] = json.loads(Path(data, "clients", "b1.json").read_text())["secret_key"]
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    with pytest.raises(AccessDenied, match="does not match"):
        operator_viewer(tmp_path / "forged.json", data)
    # an operator of another exchange: a valid key pair the key store does not hold
    other = tmp_path / "other"
    initialise(other)
    with pytest.raises(AccessDenied, match="not the one"):
        operator_viewer(other / "clients" / "op.json", data)
    # a revoked operator
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    KeyStore(copy).revoke("op", force=True)
    with pytest.raises(AccessDenied, match="revoked"):
        operator_viewer(copy / "clients" / "op.json", copy)
    assert main(["replay", "results", str(copy), "--operator-key",
                 str(copy / "clients" / "op.json")]) == 2
    assert "revoked" in capsys.readouterr().err
    # a journal copied without its key store: name the key store explicitly
    bare = tmp_path / "bare"
    shutil.copytree(f"{data}/journal", bare / "journal")
    assert main(["replay", "results", str(bare), "--operator-key",
                 f"{data}/clients/op.json"]) == 2
    assert main(["replay", "results", str(bare), "--operator-key", f"{data}/clients/op.json",
                 "--key-store", data]) == 0
    assert "Cobalt Licensing LLC" in capsys.readouterr().out


# --------------------------------------------------------------------------
# comparables
# --------------------------------------------------------------------------

def test_comparables_by_family_with_the_book_activity(source):
    found = co.comparables(source, "family", "F-100")
    assert [(r["serial"], r["price"], r["total"]) for r in found.lots] == [
        ("L-ENG", 15_000_000, 16_500_000), ("L-SS", 4_200_000, 4_620_000),
        ("L-BA", 20_000_000, 22_000_000)]
    assert found.lots[0]["matched"] == "US-9000001 CN-1000001"
    (day,) = found.activity
    assert (day["instrument"], day["period"], day["trades"], day["volume"], day["vwap"],
            day["min_spread"], day["spread"]) == ("PAT-BA", "2026-03-02", 1, 1, 20_000_000,
                                                  2_000_000, None)


def test_comparables_by_field_status_jurisdiction_and_number(source):
    assert [r["serial"] for r in co.comparables(source, "field", "Printing").lots] == \
        ["L-ENG", "L-SS", "L-PASS", "L-BA"]
    pending = co.comparables(source, "status", "pending").lots
    assert [(r["serial"], r["matched"], r["outcome"]) for r in pending] == [
        ("L-ENG", "CN-1000001", "sold"), ("L-PASS", "US-9000004", "sold in negotiation")]
    assert [r["serial"] for r in co.comparables(source, "jurisdiction", "cn").lots] == ["L-ENG"]
    assert [r["serial"] for r in co.comparables(source, "patent", "us 9000002").lots] == ["L-SF"]
    assert co.comparables(source, "patent", "US-1").lots == []


def test_comparables_activity_by_hour_in_a_zone(source):
    found = co.comparables(source, "patent", "US-9000005", bucket="hour", tz=zone("Asia/Shanghai"))
    assert [r["period"] for r in found.activity] == ["2026-03-02T09:00+0800"]


def test_only_comparables_keep_every_quote_and_trade_of_the_books(source):
    """Keep each book's quotes and trades only in a catalogue asked to (comparables)."""
    from replay.catalogue import Catalogue
    bare = Catalogue().fold_all(source.entries())
    kept = Catalogue(keep_series=True).fold_all(source.entries())
    assert list(bare.instruments) == list(kept.instruments) == ["ULR-1", "PAT-BA"]
    assert all(not i.quotes and not i.trades for i in bare.instruments.values())
    assert [len(i.trades) for i in kept.instruments.values()] == [3, 1]
    assert all(i.quotes for i in kept.instruments.values())
    assert [i.phase for i in bare.instruments.values()] == \
        [i.phase for i in kept.instruments.values()]


def test_comparables_cli(sample, capsys):
    assert main(["replay", "comparables", sample.data_dir, "--field", "printing"]) == 0
    out = capsys.readouterr().out
    assert "4 lots" in out and "PAT-BA" in out and "20,000.00" in out
    assert main(["replay", "comparables", sample.data_dir, "--status", "pending",
                 "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["serial"] for r in rows] == ["L-ENG", "L-PASS"]


# --------------------------------------------------------------------------
# chart, sample, times
# --------------------------------------------------------------------------

def test_chart_draws_every_bid(sample, source, tmp_path, capsys):
    out = tmp_path / "eng.png"
    # price steps: opening + 5 bids + award = 7; 5 bid marks; 1 award mark
    assert draw(source, "L-ENG", out) == 13
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000
    assert main(["replay", "chart", sample.data_dir, "--lot", "ULR-1", "--out",
                 str(tmp_path / "ulr.png")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "ulr.png").read_bytes()[:4] == b"\x89PNG"


def test_sample_cli_refuses_an_existing_journal(sample, tmp_path, capsys):
    assert main(["replay", "sample", sample.data_dir]) == 2
    assert main(["replay", "sample", str(tmp_path / "new")]) == 0
    assert "77 entries" in capsys.readouterr().out


def test_times_parse_and_print_exactly():
    assert parse_time("2026-03-02T09:05:00+08:00") == OPEN + 5 * MINUTE
    assert parse_time("2026-03-02T01:05:00") == OPEN + 5 * MINUTE
    assert parse_time("2026-03-02T09:05:00", zone("Asia/Shanghai")) == OPEN + 5 * MINUTE
    assert parse_time("2026-03-02T01:05:00.000000001Z") == OPEN + 5 * MINUTE + 1
    assert parse_time("2026-03-02T01:05:00.25+00:00") == OPEN + 5 * MINUTE + 250_000_000
    assert parse_time(str(T0)) == T0
    assert format_time(T0 + 1) == "2026-03-02T00:00:00.000000001Z"
    assert format_time(T0, zone("America/New_York")) == "2026-03-01T19:00:00-05:00"


# --------------------------------------------------------------------------
# progress bar: on a terminal only
# --------------------------------------------------------------------------

class FakeTerminal:
    """A stderr that says it is a terminal and keeps what is written."""

    def __init__(self):
        self.parts = []

    def write(self, text):
        self.parts.append(text)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return True

    @property
    def text(self):
        return "".join(self.parts)


def test_progress_bar_only_on_a_terminal(monkeypatch):
    from replay import progress
    monkeypatch.delenv("LOTEX_PROGRESS", raising=False)
    assert not progress.wanted(10**6)                  # pytest's stderr is not a terminal
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert progress.wanted(10**6) and not progress.wanted(10)
    bar = progress.Progress("replaying", 100_000)
    for _ in range(100_000):
        bar.advance()
    bar.close()
    assert "replaying" in terminal.text
    monkeypatch.setenv("LOTEX_PROGRESS", "0")
    assert not progress.wanted(10**6)


class CountedBar:
    """A progress bar that records its label, its total and how far it went."""

    bars: list["CountedBar"] = []

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        CountedBar.bars.append(self)

    def advance(self, n: int = 1) -> None:
        self.done += n

    def close(self) -> None:
        pass


@pytest.fixture
def counted_bars(monkeypatch):
    from replay import progress
    from replay import source as source_module
    CountedBar.bars = []
    monkeypatch.setattr(progress, "Progress", CountedBar)
    monkeypatch.setattr(source_module, "Progress", CountedBar)
    monkeypatch.setattr(progress, "wanted", lambda total: True)
    return CountedBar.bars


def test_the_progress_total_is_what_is_read_up_to_a_moment(sample, counted_bars, capsys):
    """--seq, --at and --to-seq stop the reading early: the bar counts to
    there (it counted to the journal's end), and ends full."""
    records = list(read_journal_records(sample.data_dir))
    last = records[-1].seq
    at = records[40].ts
    upto_at = max(rec.seq for rec in records if rec.ts <= at)
    assert upto_at < last - 10
    for args, label in ((["replay", "state", sample.data_dir, "--seq", "30"], "rebuilding state"),
                        (["replay", "state", sample.data_dir, "--at", str(at)], "rebuilding state"),
                        (["replay", "feed", sample.data_dir, "--fast", "--wait", "0",
                          "--to-seq", "25"], "publishing")):
        counted_bars.clear()
        assert main(args) == 0, args
        bars = [bar for bar in counted_bars if bar.label == label]
        assert len(bars) == 1, (args, [(b.label, b.total) for b in counted_bars])
        assert bars[0].total == bars[0].done < last, (args, bars[0].total, bars[0].done)
    capsys.readouterr()
    assert main(["replay", "state", sample.data_dir, "--at", str(at)]) == 0
    assert f"state after journal entry {upto_at}," in capsys.readouterr().out


def test_journal_project_has_the_progress_bar(sample, counted_bars, tmp_path, capsys):
    db = tmp_path / "store.sqlite"
    assert main(["journal", "project", sample.data_dir, "--db", str(db)]) == 0
    entries = sum(1 for _ in read_journal_records(sample.data_dir))
    assert [(bar.label, bar.total, bar.done) for bar in counted_bars] == \
        [("projecting", entries, entries)]
    assert f"projected {entries} entries" in capsys.readouterr().out


def read_journal_records(data_dir):
    from recorder.journal import read_journal
    return read_journal(Path(data_dir) / "journal")


def test_piped_output_is_only_the_report(sample, capsys):
    assert main(["replay", "check", sample.data_dir]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.count("\n") == 1


def test_replay_without_an_action_prints_usage(capsys):
    assert main(["replay"]) == 2
    out = capsys.readouterr().out
    for action in ("state", "history", "results", "check", "export", "comparables", "chart",
                   "feed"):
        assert action in out
