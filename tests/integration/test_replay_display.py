"""What replay prints for people: durations in their unit, money in major units everywhere,
JSON rows that say what they are."""

from __future__ import annotations

import json
import sqlite3

import pytest

from exchange.commands import (CreateLot, CreateSession, IssuePaddle, LotTerms, RegisterParty,
                               ReviewCredit, ScheduleLot, VetLot)
from gateway.cli import main
from gateway.keys import initialise
from replay import history as hi
from replay.journaling import open_recording
from replay.sample import record_sample
from replay.source import Source, duration

SECOND = 10**9
MINUTE = 60 * SECOND
T0 = 1_772_409_600 * SECOND


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    data = tmp_path_factory.mktemp("sample")
    session = record_sample(data)
    initialise(data)
    return session


def test_durations_print_in_their_unit():
    assert duration(2 * SECOND) == "2 s"
    assert duration(10 * MINUTE) == "10 min"
    assert duration(90 * MINUTE) == "1 h 30 min"
    assert duration(MINUTE + SECOND // 2) == "1 min 0.5 s"
    assert duration(2 * 86_400 * SECOND) == "2 d"


def test_history_shows_a_two_second_soft_close_as_two_seconds(tmp_path):
    d = open_recording(tmp_path, start_ts=T0)
    d.ok(CreateSession(session="S", name="s"), ts=T0)
    seller = d.ok(RegisterParty(name="seller"), actor="b1", role="broker")[0].party
    d.ok(ReviewCredit(party=seller, approved=True, credit_limit=10**9, agreement_version="v"))
    d.ok(IssuePaddle(session="S", party=seller))
    d.ok(CreateLot(serial="X", session="S", seller=seller, terms=LotTerms(
        title="x", starting_bid=1_000, opens_at=T0 + MINUTE, closes_at=T0 + 60 * MINUTE,
        hard_end=T0 + 90 * MINUTE, soft_window=2 * SECOND, soft_extend=2 * SECOND)),
        actor="b1", role="broker")
    d.ok(VetLot(serial="X", score=1, approved=True))
    d.ok(ScheduleLot(serial="X"))
    d.journal.close()
    _, rows = hi.history(Source.open(tmp_path), "X")
    detail = next(r["detail"] for r in rows if r["event"] == "scheduled")
    assert "soft close 2 s (extends 2 s)" in detail and "0 min" not in detail


def test_state_text_prints_depth_and_live_bids_in_major_units(sample, capsys):
    data = sample.data_dir
    assert main(["replay", "state", data, "--at", "2026-03-02T01:45:30", "--lot", "ULR-1"]) == 0
    out = capsys.readouterr().out
    assert "4.90x50(1) 4.80x100(1)" in out and "5.20x100(1)" in out and "490x50" not in out
    assert main(["replay", "state", data, "--seq", str(sample.marks["english_at_90k"]),
                 "--lot", "L-SF", "--operator-key", f"{data}/clients/op.json"]) == 0
    out = capsys.readouterr().out
    assert "103:31,000.00 105:28,000.00 102:30,000.00" in out and "3100000" not in out
    # csv and json keep int minor units, as every other amount there
    assert main(["replay", "state", data, "--at", "2026-03-02T01:45:30", "--lot", "ULR-1",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["bids"] == "490x50(1) 480x100(1)"


def test_comparables_json_rows_say_what_they_are(sample, capsys):
    assert main(["replay", "comparables", sample.data_dir, "--family", "F-100",
                 "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["kind_of_row"], r["serial"]) for r in rows] == [
        ("lot", "L-ENG"), ("lot", "L-SS"), ("lot", "L-BA"), ("activity", "L-BA")]
    assert rows[-1]["instrument"] == "PAT-BA" and "period" in rows[-1]


def test_history_chart_and_store_follow_a_voided_english_bid(tmp_path):
    """A public BidVoided changes the standing price and leader: history shows it
    as a price row (paddles only), the chart's price line steps to it, down to
    the starting bid when no bid is left, and the analyst store's bids table
    has a "voided" row for each, public store included."""
    from exchange.commands import PlaceBid
    from exchange.events import BidVoided
    from replay import chart
    from replay.access import Viewer
    d = open_recording(tmp_path, start_ts=T0)
    d.ok(CreateSession(session="S", name="s", currency="USD"), ts=T0)
    parties, paddles = [], []
    for name in ("seller", "Alice", "Bob"):
        party = d.ok(RegisterParty(name=name), actor="b1", role="broker")[0].party
        d.ok(ReviewCredit(party=party, approved=True, credit_limit=10**12, agreement_version="v"))
        parties.append(party)
        paddles.append(d.ok(IssuePaddle(session="S", party=party))[0].paddle)
    _, a, b = paddles
    opens = T0 + MINUTE
    d.ok(CreateLot(serial="V", session="S", seller=parties[0], terms=LotTerms(
        title="v", mechanism="english", starting_bid=3_000_000, opens_at=opens,
        closes_at=opens + 60 * MINUTE, hard_end=opens + 60 * MINUTE)), actor="b1", role="broker")
    d.ok(VetLot(serial="V", score=1, approved=True))
    d.ok(ScheduleLot(serial="V"))
    d.tick(opens)
    d.ok(PlaceBid(serial="V", paddle=a, amount=5_000_000), actor="b1", role="broker",
         ts=opens + MINUTE)
    d.ok(PlaceBid(serial="V", paddle=b, amount=9_000_000), actor="b1", role="broker",
         ts=opens + 2 * MINUTE)
    voids = []
    for minute, party in ((3, parties[2]), (4, parties[1])):     # Bob's, then Alice's approval
        events = d.ok(ReviewCredit(party=party, approved=False, agreement_version="v"),
                      ts=opens + minute * MINUTE)
        voids += [e for e in events if type(e) is BidVoided]
    assert [(e.paddle, e.leader, e.price) for e in voids] == [(b, a, 3_000_000), (a, 0, 0)]
    d.tick(opens + 61 * MINUTE)
    d.journal.close()
    source = Source.open(tmp_path)
    _, rows = hi.history(source, "V")
    priced = [(r["event"], r.get("paddle"), r.get("amount")) for r in rows
              if r["event"] in ("opened", "bid", "bid voided")]
    bid_price = priced[2][2]
    assert priced == [("opened", None, 3_000_000), ("bid", a, 3_000_000), ("bid", b, bid_price),
                      ("bid voided", b, 3_000_000), ("bid voided", a, 3_000_000)]
    assert bid_price > 5_000_000
    details = [r["detail"] for r in rows if r["event"] == "bid voided"]
    assert details == [f"standing price; leader {a}; reserve met; paddle {b}'s bid voided: "
                       f"approval_withdrawn",
                       f"standing price; no bid left: the starting bid; reserve not met; "
                       f"paddle {a}'s bid voided: approval_withdrawn"]
    assert not any("Alice" in str(r) or "Bob" in str(r) for r in rows)   # paddles only
    _, op_rows = hi.history(source, "V", viewer=Viewer(operator=True, user="op"))
    voided = [r for r in op_rows if r["event"] == "bid voided"]
    assert [r["amount"] for r in voided] == [3_000_000, 3_000_000]
    assert [r["party"].split(" (")[0] for r in voided] == ["Bob", "Alice"]  # operators only
    # the chart: opening, two bids, two voids, as steps of the price line
    points = chart.series(hi.history(source, "V")[1])
    assert points.price_v == [30_000.0, 30_000.0, bid_price / 100, 30_000.0, 30_000.0]
    assert [(v[1], v[2]) for v in points.voided] == [(30_000.0, b), (30_000.0, a)]
    out = tmp_path / "v.png"
    assert chart.draw(source, "V", out) == 5 + 2 + 2
    assert out.stat().st_size > 0
    from recorder.store import Store
    for public in (False, True):
        path = tmp_path / f"store-{public}.sqlite"
        with Store.open(path, public=public) as store:
            store.update(tmp_path / "journal")
        rows = sqlite3.connect(path).execute(
            "SELECT paddle, amount, leader FROM bids WHERE kind = 'voided' ORDER BY seq").fetchall()
        assert rows == [(b, 3_000_000, a), (a, 0, 0)]
