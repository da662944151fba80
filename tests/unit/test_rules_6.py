"""The changes of the engine's rules 6 (`exchange.commands.RULES`): each
applies to envelopes made under rules 6, and an envelope of rules 5 (a
journal written before) still replays as it did."""

from __future__ import annotations

import pickle

import pytest

from exchange.commands import CreateInstrument, PlaceOrder, ScheduleLot, VetLot
from exchange.driver import Driver
from exchange.engine import Engine
from exchange.events import LotPassed, OrderCancelled, PhaseChanged
from tests.unit.auctionkit import DAY, HOUR, MINUTE, T0, USD, Market, of, one
from tests.unit.test_market import rejected

OP = dict(actor="op", role="operator")


def resumed(m: Market, rules: int) -> Driver:
    """A driver on a copy of ``m``'s state, as after a restart, under ``rules``."""
    d = Driver(Engine(pickle.loads(pickle.dumps(m.state))))
    d.engine.check_invariants = True
    d.rules = rules
    return d


# ---------------------------------------------------------------------------
# reactions to each timer before the next fires
# ---------------------------------------------------------------------------

def bid_ask_with_gtd_order() -> tuple[Market, int]:
    """A bid_ask lot closing at T0 + 1 h with its book; a buy order on it good
    until T0 + 2 h. Returns the market and the buyer's paddle."""
    m = Market()
    seller_paddle, buyer = m.bidder("Seller"), m.bidder("Buyer")
    m.lot("BA-1", seller=m.parties[seller_paddle], mechanism="bid_ask", opens_at=T0 + MINUTE,
          closes_at=T0 + HOUR, broker=m.brokers[seller_paddle])
    m.tick(T0 + MINUTE)
    m.d.ok(CreateInstrument(session="S1", instrument="P-1", kind="patent", lot="BA-1"), **OP)
    m.send(PlaceOrder(session="S1", instrument="P-1", paddle=buyer, order=1, side="buy", qty=1,
                      price=500 * USD, tif="gtd", expires=T0 + 2 * HOUR), buyer)
    return m, buyer


@pytest.mark.parametrize("rules", [5, 6])
def test_a_lot_passed_closes_its_book_before_a_later_expiry_fires(rules):
    m, buyer = bid_ask_with_gtd_order()
    d = resumed(m, rules)
    events = d.tick(T0 + 3 * HOUR)                       # one late tick covers both
    cancelled = one(events, OrderCancelled)
    assert one(events, PhaseChanged).phase == "closed"
    assert of(events, LotPassed)
    if rules == 5:                                       # the expiry ran first
        assert cancelled.reason == "expired"
        return
    assert cancelled.reason == "closed"                  # as with a tick at each time
    dense = resumed(m, 6)
    assert one(dense.tick(T0 + HOUR), OrderCancelled).reason == "closed"
    assert not of(dense.tick(T0 + 3 * HOUR), OrderCancelled)
    assert [type(e) for e in events] == [type(e) for e in
                                         resumed(m, 6).tick(T0 + HOUR)]


# ---------------------------------------------------------------------------
# liquidity counted up to a timer's time
# ---------------------------------------------------------------------------

def quoting_provider(*, ends_at: int = 0, cancel_at: int = 0,
                     expires: int = 0) -> Market:
    """A session (ending at ``ends_at`` if given) with a units book and a
    liquidity provider (90 % required) quoting from T0: its ask cancelled at
    ``cancel_at``, or good until ``expires``, if given."""
    from exchange.commands import AppointLiquidityProvider, CancelOrder, IssueUnits
    m = Market(ends_at=ends_at)
    lp = m.bidder("MarketMaker")
    m.d.ok(CreateInstrument(session="S1", instrument="U", kind="units"), **OP)
    m.d.ok(IssueUnits(session="S1", instrument="U", paddle=lp, qty=100), **OP)
    m.d.ok(AppointLiquidityProvider(session="S1", instrument="U", paddle=lp, max_spread=10,
                                    min_qty=1, presence_bp=9_000), **OP)
    m.send(PlaceOrder(session="S1", instrument="U", paddle=lp, order=1, side="buy", qty=1,
                      price=100), lp)
    m.send(PlaceOrder(session="S1", instrument="U", paddle=lp, order=2, side="sell", qty=1,
                      price=105, tif="gtd" if expires else "gtc", expires=expires), lp)
    if cancel_at:
        m.send(CancelOrder(session="S1", instrument="U", paddle=lp, order=2), lp, ts=cancel_at)
    return m


@pytest.mark.parametrize("rules", [5, 6])
def test_a_session_end_fired_late_counts_liquidity_to_its_end(rules):
    from exchange.events import LiquidityReport, SessionClosed
    m = quoting_provider(ends_at=T0 + HOUR, cancel_at=T0 + 55 * MINUTE)  # 55 of 60 minutes
    on_time = one(resumed(m, rules).tick(T0 + HOUR), LiquidityReport)
    assert (on_time.until, on_time.trading_ns, on_time.quoting_ns, on_time.met) == \
        (T0 + HOUR, HOUR, 55 * MINUTE, True)
    late = resumed(m, rules).tick(T0 + 4 * HOUR)              # the first command after it
    assert of(late, SessionClosed)
    report = one(late, LiquidityReport)
    if rules == 5:                                            # 3 h after the close counted
        assert (report.until, report.trading_ns, report.met) == (T0 + 4 * HOUR, 4 * HOUR, False)
        return
    assert report == on_time


@pytest.mark.parametrize("rules", [5, 6])
def test_an_order_expired_late_counts_liquidity_to_its_expiry(rules):
    from exchange.commands import ReportLiquidity
    from exchange.events import LiquidityReport
    d = resumed(quoting_provider(expires=T0 + HOUR), rules)
    d.tick(T0 + 3 * HOUR)                                     # the expiry, 2 h late
    report = one(d.ok(ReportLiquidity(session="S1", instrument="U"), **OP), LiquidityReport)
    assert report.trading_ns == 3 * HOUR
    assert report.quoting_ns == (3 * HOUR if rules == 5 else HOUR)


# ---------------------------------------------------------------------------
# a lot's windows up to ten years
# ---------------------------------------------------------------------------

def create(m: Market, serial: str, **fields) -> list:
    from exchange.commands import CreateLot
    return m.d.send(CreateLot(serial=serial, session="S1", seller=m.seller(),
                              terms=m.terms(**fields)), actor="seller-broker", role="broker")


WINDOWS = [
    ("negotiation_window", {}),
    ("choice_window", {"mechanism": "reverse", "reverse_choice": "buyer"}),
    ("soft_window", {"soft_extend": 20 * MINUTE}),
    ("soft_extend", {"soft_window": 20 * MINUTE}),
    ("dutch_interval", {"mechanism": "dutch", "dutch_start": 9_000 * USD, "dutch_step": USD}),
]


@pytest.mark.parametrize("rules", [5, 6])
@pytest.mark.parametrize("field,fields", WINDOWS)
def test_a_lot_window_may_be_longer_than_eleven_days(rules, field, fields):
    from exchange.errors import MAX_DURATION, MAX_INT
    m = Market()
    m.d.rules = rules
    events = create(m, "L1", **{field: 14 * DAY}, **fields)
    if rules == 5:                                       # held to 10**15 ns, ~11.6 days
        assert rejected(events) == "out_of_range" and "1000000000000000" in events[-1].text
        assert rejected(create(m, "L2", **{field: MAX_INT}, **fields)) is None
        return
    assert rejected(events) is None and getattr(m.state.lots["L1"].terms, field) == 14 * DAY
    assert rejected(create(m, "L2", **{field: MAX_DURATION}, **fields)) is None
    refused = create(m, "L3", **{field: MAX_DURATION + 1}, **fields)
    assert rejected(refused) == "out_of_range" and "L3" not in m.state.lots
    assert rejected(create(m, "L4", **{field: -1}, **fields)) == "negative"


@pytest.mark.parametrize("rules", [5, 6])
def test_a_bad_dutch_interval_is_refused_as_before(rules):
    m = Market()
    m.d.rules = rules
    dutch = dict(mechanism="dutch", dutch_start=9_000 * USD, dutch_step=USD)
    events = create(m, "L1", dutch_interval=0, **dutch)
    assert rejected(events) == "non_positive" and "Dutch interval" in events[-1].text
    events = create(m, "L2", dutch_step=-1, dutch_interval=-1, mechanism="dutch",
                    dutch_start=9_000 * USD)
    assert rejected(events) == "negative" and "Dutch step" in events[-1].text   # first named


def test_a_two_week_negotiation_window_runs_its_course():
    from exchange.commands import MakeOffer
    from exchange.events import NegotiationEnded, OfferMade
    m = Market()
    seller, a = m.seller(), m.bidder("Alice")
    m.lot("L1", seller=seller, reserve=5_000 * USD, negotiation_window=14 * DAY)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 2_000 * USD)
    passed = one(m.tick(T0 + DAY), LotPassed)
    assert passed.negotiation_ends == T0 + 15 * DAY
    one(m.send(MakeOffer(serial="L1", paddle=a, amount=3_000 * USD), a, ts=T0 + 13 * DAY),
        OfferMade)
    assert not of(m.tick(T0 + 15 * DAY - 1), NegotiationEnded)
    one(m.tick(T0 + 15 * DAY), NegotiationEnded)


@pytest.mark.parametrize("rules", [5, 6])
def test_a_window_ends_no_later_than_the_last_time(rules):
    from exchange.errors import MAX_INT, MAX_TIME
    from exchange.events import LotClosed
    m = Market()
    m.d.rules = rules
    seller, a = m.seller(limit=10**12), m.bidder("Alice")
    close = MAX_TIME - DAY                               # late in 2262
    m.lot("L1", seller=seller, reserve=5_000 * USD, negotiation_window=MAX_INT,
          closes_at=close)
    m.lot("T1", seller=seller, mechanism="reverse", reverse_choice="buyer",
          choice_window=MAX_INT, closes_at=close)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 2_000 * USD)
    m.bid("T1", a, 500 * USD)
    events = m.tick(close)
    ends = (close + MAX_INT if rules == 5 else MAX_TIME)  # past 2**63 - 1 under rules 5
    assert one(events, LotPassed).negotiation_ends == ends
    assert [c.decision_by for c in of(events, LotClosed) if c.serial == "T1"] == [ends]


# ---------------------------------------------------------------------------
# no negotiation window after the session's close
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("rules", [5, 6])
def test_a_lot_passing_after_the_session_closed_opens_no_window(rules):
    from exchange.commands import CloseSession, MakeOffer
    from exchange.events import NegotiationEnded
    m = Market()
    m.d.rules = rules
    seller, a = m.seller(), m.bidder("Acme")
    m.lot("L1", seller=seller, reserve=5_000 * USD, negotiation_window=2 * DAY)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 2_000 * USD)
    m.d.ok(CloseSession(session="S1"), **OP, ts=T0 + 2 * HOUR)
    passed = one(m.tick(T0 + DAY), LotPassed)            # at its own close, after the session's
    offer = m.send(MakeOffer(serial="L1", paddle=a, amount=4_000 * USD), a, ts=T0 + DAY + HOUR)
    assert rejected(offer) == "session_closed"           # under either rules
    ended = m.tick(T0 + 3 * DAY)
    if rules == 5:                                       # a window no one could use
        assert passed.negotiation_ends == T0 + 3 * DAY and one(ended, NegotiationEnded)
        return
    assert passed.negotiation_ends == 0 and m.state.lots["L1"].negotiation_ends == 0
    assert not of(ended, NegotiationEnded)


def test_a_lot_passing_as_its_session_ends_keeps_its_window():
    """A lot closing at the session's end passes before the session closes
    (its window opens; the close drops what is offered in it, rules 5)."""
    m = Market(ends_at=T0 + DAY)
    seller, a = m.seller(), m.bidder("Acme")
    m.lot("L1", seller=seller, reserve=5_000 * USD, negotiation_window=2 * DAY)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 2_000 * USD)
    assert one(m.tick(T0 + DAY), LotPassed).negotiation_ends == T0 + 3 * DAY


# ---------------------------------------------------------------------------
# a lot without a currency is in its session's
# ---------------------------------------------------------------------------

def eur_session(rules: int) -> tuple[Market, int, int]:
    """Session "E1" in EUR beside the USD one, a seller and a bidder approved
    in EUR with a paddle in it. Returns the market, the seller and the paddle."""
    from exchange.commands import CreateSession, IssuePaddle
    m = Market()
    m.d.rules = rules
    m.d.ok(CreateSession(session="E1", name="Euro session", currency="EUR"), **OP)
    seller = m.seller()
    bidder = m.party("Eve", "broker-eve", currency="EUR")
    paddle = m.d.ok(IssuePaddle(session="E1", party=bidder), **OP)[0].paddle
    m.brokers[paddle], m.parties[paddle] = "broker-eve", bidder
    return m, seller, paddle


def euro_lot(m: Market, seller: int, serial: str = "EL-1", **fields) -> list:
    from exchange.commands import CreateLot, LotTerms
    terms = LotTerms(title="No currency given", starting_bid=1_000 * USD, opens_at=T0 + HOUR,
                     closes_at=T0 + DAY, **fields)
    return m.d.send(CreateLot(serial=serial, session="E1", seller=seller, terms=terms),
                    actor="seller-broker", role="broker")


@pytest.mark.parametrize("rules", [5, 6])
def test_a_lot_without_a_currency_is_in_its_sessions(rules):
    from exchange.commands import LotTerms
    from exchange.events import BidAccepted, LotCreated, LotScheduled
    assert LotTerms(title="x").currency == ""
    m, seller, paddle = eur_session(rules)
    events = euro_lot(m, seller)
    if rules == 5:                                       # "" was refused; USD was the default
        assert rejected(events) == "bad_field" and "ISO 4217" in events[-1].text
        assert "EL-1" not in m.state.lots
        return
    created = one(events, LotCreated)
    assert created.terms.currency == "EUR"               # the real code, in events and state
    lot = m.state.lots["EL-1"]
    assert lot.currency == lot.terms.currency == "EUR"
    m.d.ok(VetLot(serial="EL-1", score=80, approved=True), **OP)
    assert one(m.d.ok(ScheduleLot(serial="EL-1"), **OP), LotScheduled).terms.currency == "EUR"
    m.tick(T0 + 2 * HOUR)
    assert one(m.bid("EL-1", paddle, 2_000 * USD), BidAccepted).price == 1_000 * USD


@pytest.mark.parametrize("rules", [5, 6])
def test_a_lot_naming_its_currency_keeps_it(rules):
    from exchange.events import LotCreated
    from exchange.commands import PlaceBid
    m, seller, paddle = eur_session(rules)
    created = one(euro_lot(m, seller, currency="USD"), LotCreated)
    assert created.terms.currency == m.state.lots["EL-1"].currency == "USD"
    one(euro_lot(m, seller, "EL-2", currency="EUR"), LotCreated)
    m.d.ok(VetLot(serial="EL-1", score=80, approved=True), **OP)
    m.d.ok(ScheduleLot(serial="EL-1"), **OP)
    m.tick(T0 + 2 * HOUR)                                # a EUR bidder on a USD lot, as ever
    assert rejected(m.send(PlaceBid(serial="EL-1", paddle=paddle, amount=2_000 * USD),
                           paddle)) == "wrong_currency"


# ---------------------------------------------------------------------------
# currencies: ISO 4217's active codes
# ---------------------------------------------------------------------------

def with_currency(m: Market, kind: str, code: str):
    """A command of ``kind`` naming currency ``code``."""
    from exchange.commands import (CreateLot, CreateSession, RecordAgreementTransfer,
                                   ReviewCredit, SetDisplayRate)
    if kind == "CreateSession":
        return CreateSession(session="S-" + code, name="x", currency=code)
    if kind == "ReviewCredit":
        return ReviewCredit(party=m.seller(), approved=True, credit_limit=10, currency=code,
                            agreement_version="BRA-2026")
    if kind == "SetDisplayRate.base":
        return SetDisplayRate(base=code, quote="EUR", num=1, den=1)
    if kind == "SetDisplayRate.quote":
        return SetDisplayRate(base="USD", quote=code, num=1, den=1)
    if kind == "CreateLot.currency":
        return CreateLot(serial="L-" + code, session="S1", seller=m.seller(),
                         terms=m.terms(currency=code))
    if kind == "CreateLot.display_currency":
        return CreateLot(serial="L-" + code, session="S1", seller=m.seller(),
                         terms=m.terms(display_currency=code))
    if kind == "CreateInstrument":
        return CreateInstrument(session="S1", instrument="U-" + code, currency=code)
    return RecordAgreementTransfer(session="S1", serial="AG-" + code, title="x",
                                   seller=m.seller(), buyer=m.party("B", "broker-b"), price=10,
                                   currency=code)


KINDS = ["CreateSession", "ReviewCredit", "SetDisplayRate.base", "SetDisplayRate.quote",
         "CreateLot.currency", "CreateLot.display_currency", "CreateInstrument",
         "RecordAgreementTransfer"]


@pytest.mark.parametrize("rules", [5, 6])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("code", ["UDS", "ZZZ", "HRK"])
def test_a_currency_not_in_iso_4217_is_refused(rules, kind, code):
    m = Market()
    m.d.rules = rules
    events = m.d.send(with_currency(m, kind, code), **OP)
    if rules == 5:                                       # three capitals were enough
        assert rejected(events) is None
        return
    assert rejected(events) == "bad_field"
    assert events[-1].text == f"currency {code!r} is not an active ISO 4217 code"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("code", ["USD", "EUR", "CNY", "JPY", "GBP", "VND", "XAU", "CHF"])
def test_the_currencies_in_use_are_iso_4217_codes(kind, code):
    m = Market()
    assert rejected(m.d.send(with_currency(m, kind, code), **OP)) is None


@pytest.mark.parametrize("rules", [5, 6])
def test_a_currency_of_the_wrong_shape_is_refused_as_before(rules):
    from exchange.commands import CreateSession
    m = Market()
    m.d.rules = rules
    events = m.d.send(CreateSession(session="S2", name="x", currency="usd"), **OP)
    assert rejected(events) == "bad_field"
    assert events[-1].text == "currency 'usd' is not a three-letter ISO 4217 code"


def test_the_iso_4217_list_is_three_capitals_each():
    from exchange.participants import ISO_4217
    assert len(ISO_4217) == 178                       # changing it changes the rules
    assert all(len(code) == 3 and code.isascii() and code.isupper() for code in ISO_4217)
    assert {"XCG", "ZWG", "SLE", "VES", "XXX"} <= ISO_4217
    assert not {"HRK", "BGN", "ANG", "ZWL", "DEM", "UDS"} & ISO_4217
