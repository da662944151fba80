"""`lotex whatif`: bid histories re-run under other rules through the real engine."""

from __future__ import annotations

from pathlib import Path

from exchange.commands import (CreateLot, CreateSession, IssuePaddle, LotTerms, PlaceBid,
                               RegisterParty, ReviewCredit, ScheduleLot, VetLot, WithdrawBid)
from exchange.errors import MAX_INT
from gateway.cli import main
from replay import whatif
from replay.access import Viewer
from replay.journaling import open_recording
from replay.source import Source

EBAY = Path(__file__).resolve().parent.parent / "data" / "ebay-auctions" / "auction.csv"
OPERATOR = Viewer(operator=True, user="op")     # a journal's bids are private: operators only
MINUTE = 60 * 10**9
HOUR = 60 * MINUTE
T0 = 1_772_409_600 * 10**9                       # 2026-03-02T00:00:00Z


def test_english_with_ebay_increments_reproduces_at_least_94_percent(capsys):
    assert main(["whatif", str(EBAY), "--rules", "english", "--increments", "ebay2003"]) == 0
    lines = capsys.readouterr().out.splitlines()
    last = lines[-1].split()
    assert last[0] == "reproduced" and last[2:] == ["of", "628", "closing", "prices"], lines[-1]
    reproduced = int(last[1])
    assert reproduced * 100 >= 94 * 628, lines[-1]
    assert len(lines) == 1 + 628 + 1                     # header, one row per auction, summary
    first = lines[1].split()
    assert first[:6] == ["1638893549", "Cartier", "wristwatch", "5", "177.50", "177.50"], lines[1]


def test_other_rules_on_the_csv(capsys):
    report = whatif.run_path(EBAY, rules="vickrey", increments="ebay2003", limit=40)
    first = whatif.run_path(EBAY, rules="first-price", increments="ebay2003", limit=40)
    assert report.total == first.total == 40
    for second_row, first_row in zip(report.rows, first.rows):
        if second_row["price"] is not None:
            assert second_row["price"] <= first_row["price"], second_row["auction"]
    assert main(["whatif", str(EBAY), "--rules", "english-soft-close", "--limit", "3",
                 "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("auction,item,bids,recorded,price") and len(out) == 5
    assert out[-1].startswith("reproduced ") and out[-1].endswith(" of 3 closing prices")


def test_whatif_on_a_lotex_journal(keyed_sample):
    """The demo session's English and sealed lots under each rule, by hand:
    OTBA increments ($30,000) make most sealed amounts too close to bid openly."""
    def prices(rules):
        report = whatif.run_path(keyed_sample, rules=rules, viewer=OPERATOR)
        return {row["auction"]: (row.get("price"), row.get("refused")) for row in report.rows
                if "skipped" not in (row.get("note") or "")}, report

    english, report = prices("english")
    # L-ENG hard close at +2h: 104's 150k comes after it; 102 leads at 120k (103 tied later)
    assert english["L-ENG"] == (12_000_000, 2)
    # L-SF: 102 25k (price 10k); 103 31k and 105 28k are below 10k + 30k; 102 raises to 30k
    assert english["L-SF"] == (1_000_000, 2)
    # L-SS: 104 50k, 105 42k (>= 40k) -> price min(50k, 72k) = 50k; 103 refused, withdraw refused
    assert english["L-SS"] == (5_000_000, 2)
    assert english["L-PASS"] == (None, 0) and english["L-NOBID"] == (None, 0)
    assert report.summary == "reproduced 2 of 5 closing prices"
    skipped = [row["auction"] for row in report.rows if "skipped" in (row.get("note") or "")]
    assert skipped == ["L-DUT", "L-BA"]
    vickrey, _ = prices("vickrey")
    assert vickrey["L-SF"] == (3_000_000, 0) and vickrey["L-SS"] == (4_200_000, 0)
    assert vickrey["L-ENG"] == (12_000_000, 1)       # 102 and 103 tie at 120k; 104 too late
    first, _ = prices("first-price")
    assert first["L-SF"][0] == 3_100_000 and first["L-SS"][0] == 5_000_000
    soft, soft_report = prices("english-soft-close")  # the lot's own 10-minute soft close
    assert soft["L-ENG"] == (15_000_000, 1)
    short, _ = prices_with(keyed_sample, "english-soft-close", soft_window_min=5, soft_extend_min=5)
    assert short["L-ENG"] == (12_000_000, 2)         # 5 minutes: closed at +2h05 before 104


def prices_with(keyed_sample, rules, **options):
    report = whatif.run_path(keyed_sample, rules=rules, viewer=OPERATOR, **options)
    return {row["auction"]: (row.get("price"), row.get("refused")) for row in report.rows}, report


def test_whatif_cli_errors(keyed_sample, tmp_path, capsys):
    assert main(["whatif", str(EBAY), "--increments", "nope"]) == 2
    assert "unknown increment table" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["whatif", str(bad)]) == 2
    assert "eBay bid layout" in capsys.readouterr().err
    assert main(["whatif", str(keyed_sample), "--rules", "vickrey", "--operator-key",
                 str(keyed_sample / "clients" / "op.json")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "reproduced 3 of 5 closing prices"
    assert main(["whatif", str(keyed_sample), "--rules", "english", "--format", "csv",
                 "--operator-key", str(keyed_sample / "clients" / "op.json")]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == "auction,item,bids,recorded,price,difference,reproduced,refused,left_out,note"


def test_the_readme_sample_runs_whatif_with_its_own_operator_key(tmp_path, capsys):
    from gateway.cli import main
    data = tmp_path / "demo"
    assert main(["replay", "sample", str(data)]) == 0
    key = data / "clients" / "op.json"
    assert str(key) in capsys.readouterr().out
    assert main(["whatif", str(data), "--rules", "vickrey", "--operator-key", str(key)]) == 0
    assert "reproduced" in capsys.readouterr().out


def test_a_sellers_own_bid_is_refused_again_in_the_rerun(tmp_path):
    """Re-run the seller's paddle as the seller: its bid is refused (own_lot) again."""
    d = open_recording(tmp_path, start_ts=T0)
    try:
        d.ok(CreateSession(session="S", name="s", currency="USD"), ts=T0)
        parties, paddles = [], []
        for name in ("seller", "buyer"):
            party = d.ok(RegisterParty(name=name), actor="b1", role="broker")[0].party
            d.ok(ReviewCredit(party=party, approved=True, credit_limit=MAX_INT,
                              agreement_version="v"))
            parties.append(party)
            paddles.append(d.ok(IssuePaddle(session="S", party=party))[0].paddle)
        opens = T0 + HOUR
        d.ok(CreateLot(serial="L", session="S", seller=parties[0], terms=LotTerms(
            title="t", mechanism="english", starting_bid=3_000_000, increments="otba",
            opens_at=opens, closes_at=opens + HOUR, hard_end=opens + HOUR)),
            actor="b1", role="broker")
        d.ok(VetLot(serial="L", score=50, approved=True))
        d.ok(ScheduleLot(serial="L"))
        d.tick(opens)
        d.ok(PlaceBid(serial="L", paddle=paddles[1], amount=5_000_000), actor="b1",
             role="broker", ts=opens + MINUTE)
        assert d.refused(PlaceBid(serial="L", paddle=paddles[0], amount=10_000_000),
                         actor="b1", role="broker", ts=opens + 2 * MINUTE).code == "own_lot"
        d.tick(opens + 2 * HOUR)
        d.commit()
    finally:
        d.journal.close()
    report = whatif.run_journal(Source.open(tmp_path), rules="english", viewer=OPERATOR)
    row = report.rows[0]
    assert (row["recorded"], row["price"], row["refused"]) == (3_000_000, 3_000_000, 1)
    assert report.summary == "reproduced 1 of 1 closing prices"


def _record_lot(tmp_path, mechanism, bidders, play, **terms):
    """Record one lot of ``mechanism`` (starting bid 30,000.00, OTBA increments,
    open for an hour) with ``bidders`` {name: (broker, credit limit)}; ``play(d,
    paddles, parties, opens)`` sends its bids. Return the journal's Source."""
    d = open_recording(tmp_path, start_ts=T0)
    try:
        d.ok(CreateSession(session="S", name="s", currency="USD"), ts=T0)
        parties, paddles = {}, {}
        for name, (broker, limit) in {"seller": ("b1", MAX_INT), **bidders}.items():
            party = d.ok(RegisterParty(name=name), actor=broker, role="broker")[0].party
            d.ok(ReviewCredit(party=party, approved=True, credit_limit=limit,
                              agreement_version="v"))
            parties[name] = party
            paddles[name] = d.ok(IssuePaddle(session="S", party=party))[0].paddle
        opens = T0 + HOUR
        d.ok(CreateLot(serial="L", session="S", seller=parties["seller"], terms=LotTerms(
            title="t", mechanism=mechanism, starting_bid=3_000_000, increments="otba",
            opens_at=opens, closes_at=opens + HOUR, hard_end=opens + HOUR, **terms)),
            actor="b1", role="broker")
        d.ok(VetLot(serial="L", score=50, approved=True))
        d.ok(ScheduleLot(serial="L"))
        d.tick(opens)
        play(d, paddles, parties, opens)
        d.tick(opens + 2 * HOUR)
        d.commit()
    finally:
        d.journal.close()
    return Source.open(tmp_path)


def test_bids_refused_for_who_sent_them_are_left_out_of_the_rerun(tmp_path):
    """Every re-run paddle is an approved party with unlimited credit: bids the
    engine refused for their sender (another broker's paddle, an unknown paddle,
    an unapproved party, over the credit limit) must not count in the re-run,
    while one refused for its amount (below the increment) is sent again; a
    standing bid voided when its party lost its approval is voided again."""
    from exchange.events import BidVoided

    def play(d, paddles, parties, opens):
        def bid(name_or_paddle, amount, minutes, actor="b1", role="broker"):
            paddle = paddles.get(name_or_paddle, name_or_paddle)
            return d.send(PlaceBid(serial="L", paddle=paddle, amount=amount), actor=actor,
                          role=role, ts=opens + minutes * MINUTE)

        def code(events):
            return next((e.code for e in events if type(e).__name__ == "CommandRejected"), None)

        d.ok(ReviewCredit(party=parties["gone"], approved=False, agreement_version="v"))
        assert code(bid("a", 5_000_000, 1)) is None                  # A leads at 30,000.00
        assert code(bid("b", 9_000_000, 2)) == "not_your_paddle"     # b1 sends b2's paddle
        assert code(bid("gone", 8_000_000, 3)) == "party_not_approved"
        assert code(bid("poor", 7_000_000, 4)) == "over_credit_limit"
        assert code(bid(999, 9_500_000, 5, actor="op", role="operator")) == "unknown_paddle"
        assert code(bid("e", 5_100_000, 6)) == "below_increment"     # counts under Vickrey
        assert code(bid("v", 6_000_000, 7)) is None                  # V leads
        voided = d.ok(ReviewCredit(party=parties["v"], approved=False, agreement_version="v"),
                      ts=opens + 8 * MINUTE)
        assert [(e.paddle, e.leader, e.price) for e in voided if type(e) is BidVoided] == \
            [(paddles["v"], paddles["a"], 3_000_000)]
        assert code(bid("v", 10_000_000, 9)) == "party_not_approved"

    bidders = {"a": ("b1", MAX_INT), "b": ("b2", MAX_INT), "gone": ("b1", MAX_INT),
               "poor": ("b1", 1_000_000), "e": ("b1", MAX_INT), "v": ("b1", MAX_INT)}
    source = _record_lot(tmp_path, "english", bidders, play)
    report = whatif.run_journal(source, rules="english", viewer=OPERATOR)
    row = report.rows[0]
    # recorded: A alone after V's void, at the starting bid
    assert (row["recorded"], row["price"]) == (3_000_000, 3_000_000)
    assert (row["refused"], row["left_out"]) == (1, 5)
    assert row["bids"] == 3                                 # re-sent: A, E and V's first
    assert "left out 5 refused for their sender (not_your_paddle 1, over_credit_limit 1, " \
           "party_not_approved 2, unknown_paddle 1)" in row["note"], row["note"]
    assert "1 voided again as recorded" in row["note"], row["note"]
    assert report.summary == "reproduced 1 of 1 closing prices"
    # under Vickrey the below-increment bid counts: E's 51,000.00 wins at A's 50,000.00
    vickrey = whatif.run_journal(source, rules="vickrey", viewer=OPERATOR).rows[0]
    assert vickrey["price"] == 5_000_000
    assert (vickrey["refused"], vickrey["left_out"]) == (0, 5)
    assert whatif.run_journal(source, rules="vickrey", viewer=OPERATOR).rows == [vickrey]


def test_a_withdrawal_with_another_brokers_paddle_does_not_withdraw_in_the_rerun(tmp_path):
    """b2 tried to withdraw b1's client's sealed bid (not_your_paddle): the
    re-run must not withdraw it."""
    def play(d, paddles, parties, opens):
        d.ok(PlaceBid(serial="L", paddle=paddles["x"], amount=5_000_000), actor="b1",
             role="broker", ts=opens + MINUTE)
        d.ok(PlaceBid(serial="L", paddle=paddles["y"], amount=4_000_000), actor="b2",
             role="broker", ts=opens + 2 * MINUTE)
        assert d.refused(WithdrawBid(serial="L", paddle=paddles["x"]), actor="b2",
                         role="broker", ts=opens + 3 * MINUTE).code == "not_your_paddle"

    source = _record_lot(tmp_path, "sealed_first", {"x": ("b1", MAX_INT), "y": ("b2", MAX_INT)},
                         play)
    row = whatif.run_journal(source, rules="first-price", viewer=OPERATOR).rows[0]
    assert (row["recorded"], row["price"]) == (5_000_000, 5_000_000)
    assert (row["refused"], row["left_out"]) == (0, 1)
    assert "not_your_paddle 1" in row["note"]


def test_a_sealed_lot_drawn_by_lottery_re_runs_as_an_english_auction(tmp_path):
    """An English lot may not have a lottery tie-break (rules 5): the re-run of
    a sealed lot that had one takes "earliest", what English applies anyway."""
    def play(d, paddles, parties, opens):
        for n, name in enumerate(("x", "y")):
            d.ok(PlaceBid(serial="L", paddle=paddles[name], amount=5_000_000), actor="b1",
                 role="broker", ts=opens + (n + 1) * MINUTE)

    source = _record_lot(tmp_path, "sealed_first", {"x": ("b1", MAX_INT), "y": ("b1", MAX_INT)},
                         play, tie_break="lottery")
    for rules in ("english", "english-soft-close"):         # ran, not refused its CreateLot
        row = whatif.run_journal(source, rules=rules, viewer=OPERATOR).rows[0]
        assert (row["recorded"], row["price"]) == (5_000_000, 3_000_000), (rules, row)
    row = whatif.run_journal(source, rules="first-price", viewer=OPERATOR).rows[0]
    assert (row["recorded"], row["price"], row["refused"]) == (5_000_000, 5_000_000, 0)
