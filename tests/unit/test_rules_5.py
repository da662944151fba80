"""The changes of the engine's rules 5 (`exchange.commands.RULES`): each
applies to envelopes made under rules 5, and an envelope of rules 4 (a
journal written before) still replays as it did."""

from __future__ import annotations

import msgspec
import pytest

from exchange.codec import Entry, encode_entry
from exchange.commands import (CreateLot, Envelope, PlaceBid, ScheduleLot, SetDisplayRate, Tick,
                               VetLot)
from exchange.errors import MAX_DISPLAY, MAX_INT
from exchange.events import BidAccepted, DutchPriceChanged, LotAwarded
from tests.unit.auctionkit import DAY, HOUR, MINUTE, T0, USD, Market, of, one
from tests.unit.test_market import rejected

OP = dict(actor="op", role="operator")


def encodes(m: Market, events: list) -> bool:
    """Whether the journal can keep an entry with ``events``."""
    env = Envelope(seq=m.d.seq, ts=m.d.ts, actor="op", role="operator", cmd=Tick(),
                   client_id="", rules=m.d.rules)
    try:
        encode_entry(Entry(env, events))
    except (OverflowError, msgspec.EncodeError):
        return False
    return True


# ---------------------------------------------------------------------------
# display amounts
# ---------------------------------------------------------------------------

def vnd_market(rules: int) -> Market:
    """A market showing USD in VND at 25,000 (the cent and the xu, 1/100 dong)."""
    m = Market()
    m.d.rules = rules
    m.d.ok(SetDisplayRate(base="USD", quote="VND", num=25_000, den=1), **OP)
    return m


@pytest.mark.parametrize("rules", [4, 5])
def test_an_english_display_price_too_large_for_64_bits_is_not_given(rules):
    m = Market()
    m.d.rules = rules
    m.d.ok(SetDisplayRate(base="USD", quote="CNY", num=MAX_INT, den=1), **OP)
    seller, a = m.seller(), m.bidder("A", limit=MAX_INT)
    m.lot("L1", seller=seller, starting_bid=10**9, display_currency="CNY")
    m.tick(T0 + 2 * HOUR)
    events = m.bid("L1", a, 10**12)
    accepted = one(events, BidAccepted)
    if rules == 4:                                   # 10**24: no journal keeps it
        assert (accepted.display_currency, accepted.display_price) == ("CNY", 10**9 * MAX_INT)
        assert not encodes(m, events)
    else:                                            # not given, as without a rate
        assert (accepted.display_currency, accepted.display_price) == ("", 0)
        assert encodes(m, events)


@pytest.mark.parametrize("rules", [4, 5])
def test_a_large_lot_at_a_realistic_rate_shows_what_fits_and_no_more(rules):
    m = vnd_market(rules)
    seller, a = m.seller(), m.bidder("A", limit=MAX_INT)
    start = MAX_DISPLAY // 25_000 - 10 * USD         # ~$3.7 trillion: its VND fits, just
    m.lot("L1", seller=seller, starting_bid=start, display_currency="VND",
          increments="custom", custom_increments=((0, 100 * USD),), buyer_premium_bp=1000)
    m.tick(T0 + 2 * HOUR)
    first = one(m.bid("L1", a, start), BidAccepted)
    assert (first.display_currency, first.display_price) == ("VND", start * 25_000)
    b = m.bidder("B", limit=MAX_INT)
    events = m.bid("L1", b, start + 100 * USD)       # the price passes 2**63 - 1 in VND
    accepted = one(events, BidAccepted)
    assert accepted.price == start + 100 * USD
    if rules == 4:
        assert accepted.display_price == accepted.price * 25_000 > MAX_DISPLAY
    else:
        assert (accepted.display_currency, accepted.display_price) == ("", 0)
    award = one(m.tick(T0 + DAY), LotAwarded)
    assert award.total > award.hammer
    if rules == 4:
        assert (award.display_hammer, award.display_total) == \
            (award.hammer * 25_000, award.total * 25_000)
    else:
        assert (award.display_currency, award.display_hammer, award.display_total) == ("", 0, 0)


def test_an_award_whose_total_alone_is_too_large_to_show_shows_neither():
    m = vnd_market(5)
    seller, a = m.seller(), m.bidder("A", limit=MAX_INT)
    start = MAX_DISPLAY // 25_000 - 10 * USD         # the hammer fits, with 10 % on it not
    m.lot("L1", seller=seller, starting_bid=start, display_currency="VND", buyer_premium_bp=1000)
    m.tick(T0 + 2 * HOUR)
    m.bid("L1", a, start)
    award = one(m.tick(T0 + DAY), LotAwarded)
    assert award.hammer * 25_000 <= MAX_DISPLAY < award.total * 25_000
    assert (award.display_currency, award.display_hammer, award.display_total) == ("", 0, 0)


def test_a_display_amount_of_exactly_the_bound_is_given():
    from exchange.participants import display_amount
    num, amount = 7 * 7 * 73 * 127 * 337, 92_737 * 649_657     # 2**63 - 1 = num * amount
    assert num * amount == MAX_DISPLAY
    m = Market()
    m.d.ok(SetDisplayRate(base="USD", quote="XAU", num=num, den=1), **OP)
    seller, a = m.seller(), m.bidder("A", limit=MAX_INT)
    m.lot("L1", seller=seller, starting_bid=amount, display_currency="XAU")
    m.tick(T0 + 2 * HOUR)
    accepted = one(m.bid("L1", a, amount), BidAccepted)
    assert (accepted.display_currency, accepted.display_price) == ("XAU", MAX_DISPLAY)
    state = m.state
    assert display_amount(state, amount + 1, "USD", "XAU", MAX_DISPLAY) is None
    assert display_amount(state, amount + 1, "USD", "XAU") == MAX_DISPLAY + num   # no limit


@pytest.mark.parametrize("rules", [4, 5])
def test_a_dutch_clock_too_large_to_show_is_published_without_its_display(rules):
    m = vnd_market(rules)
    seller = m.seller()
    top = MAX_DISPLAY // 25_000 + 1_500 * USD        # too large in VND for two steps
    m.lot("L1", seller=seller, mechanism="dutch", starting_bid=1_000 * USD,
          display_currency="VND", dutch_start=top, dutch_step=1_000 * USD,
          dutch_interval=10 * MINUTE)
    m.tick(T0 + HOUR)                                # opens at the top: no step yet
    first = one(m.tick(T0 + HOUR + 10 * MINUTE), DutchPriceChanged)
    second = one(m.tick(T0 + HOUR + 20 * MINUTE), DutchPriceChanged)
    assert first.price == top - 1_000 * USD and second.price == top - 2_000 * USD
    assert (second.display_currency, second.display_price) == ("VND", second.price * 25_000)
    if rules == 4:
        assert first.display_price == first.price * 25_000 > MAX_DISPLAY
    else:
        assert (first.display_currency, first.display_price) == ("", 0)


# ---------------------------------------------------------------------------
# the currency of a party's credit
# ---------------------------------------------------------------------------

def review(party: int, currency: str, limit: int = 10_000 * USD):
    from exchange.commands import ReviewCredit
    return ReviewCredit(party=party, approved=True, credit_limit=limit, currency=currency,
                        agreement_version="BRA-2026")


@pytest.mark.parametrize("rules", [4, 5])
def test_a_leading_bidder_keeps_its_credit_currency(rules):
    m = Market()
    m.d.rules = rules
    seller, a = m.seller(), m.bidder("A", limit=10_000 * USD)
    m.lot("U1", seller=seller)
    m.lot("E1", seller=seller, currency="EUR")
    m.tick(T0 + 2 * HOUR)
    m.bid("U1", a, 9_000 * USD)                          # holds $9,000
    party = m.parties[a]
    if rules == 4:                                       # $9,000 counted against EUR 10,000
        m.d.ok(review(party, "EUR"), **OP)
        assert m.state.parties[party].currency == "EUR" and m.exposure(a) == 9_000 * USD
        assert rejected(m.send(PlaceBid(serial="E1", paddle=a, amount=5_000 * USD), a)) == \
            "over_credit_limit"
        return
    refused = m.unchanged(review(party, "EUR"), **OP)
    assert refused.code == "open_commitments"
    assert "USD" in refused.text and "'S1'" in refused.text and "EUR" in refused.text
    assert m.state.parties[party].currency == "USD"
    m.d.ok(review(party, "USD", 20_000 * USD), **OP)     # the same currency: reviewed as ever
    assert m.state.parties[party].credit_limit == 20_000 * USD


@pytest.mark.parametrize("rules", [4, 5])
def test_a_resting_buy_order_keeps_the_credit_currency(rules):
    from exchange import credit
    from tests.unit.test_market import Market as Book
    mk = Book(parties=2, limit=10_000)
    mk.d.rules = rules
    p1 = mk.party["b1"]
    assert rejected(mk.order("b1", 1, "buy", 50, 100)) is None   # commits 5,000 USD
    events = mk.d.send(review(p1, "JPY", 10_000), **OP)
    if rules == 4:                      # the USD buy rests and fills under a JPY limit
        assert rejected(events) is None and mk.state.parties[p1].currency == "JPY"
        mk.order("b2", 1, "sell", 50, 100)
        assert credit.committed(mk.state, "S", p1, ("bought", "U")) == 5_000
        return
    assert rejected(events) == "open_commitments"
    assert mk.state.parties[p1].currency == "USD"
    assert rejected(mk.cancel("b1", 1)) is None          # released: the currency may change
    mk.d.ok(review(p1, "JPY", 10_000), **OP)
    assert mk.state.parties[p1].currency == "JPY"


@pytest.mark.parametrize("rules", [4, 5])
def test_units_bought_and_not_paid_for_keep_the_credit_currency(rules):
    from exchange.commands import RecordUnitsPayment
    from tests.unit.test_market import Market as Book
    mk = Book(parties=2, limit=10_000)
    mk.d.rules = rules
    p1 = mk.party["b1"]
    mk.order("b2", 1, "sell", 50, 100)
    mk.order("b1", 1, "buy", 50, 100)                    # traded: owes 5,000 USD
    assert mk.exposure("b1") == 5_000
    events = mk.d.send(review(p1, "JPY", 10_000), **OP)
    assert rejected(events) == (None if rules == 4 else "open_commitments")
    if rules == 5:
        mk.d.ok(RecordUnitsPayment(session="S", instrument="U", paddle=mk.paddle["b1"],
                                   amount=5_000), **OP)
        mk.d.ok(review(p1, "JPY", 10_000), **OP)         # paid: nothing left in USD
        assert mk.state.parties[p1].currency == "JPY"


def test_a_lot_won_and_not_settled_keeps_the_credit_currency_in_a_closed_session():
    from exchange.commands import CloseSession
    m = Market()
    seller, a = m.seller(), m.bidder("A")
    m.lot("L1", seller=seller)
    m.tick(T0 + 2 * HOUR)
    m.bid("L1", a, 2_000 * USD)
    m.tick(T0 + DAY)                                     # won: the total is held till settled
    m.d.ok(CloseSession(session="S1"), **OP)
    assert m.exposure(a) > 0
    assert m.unchanged(review(m.parties[a], "EUR"), **OP).code == "open_commitments"


def test_a_party_without_commitments_changes_its_credit_currency():
    m = Market()
    seller, a = m.seller(), m.bidder("A")
    m.lot("L1", seller=seller)
    m.tick(T0 + 2 * HOUR)
    m.bid("L1", a, 2_000 * USD)
    b = m.bidder("B")
    m.bid("L1", b, 3_000 * USD)                          # outbid: a holds nothing now
    assert m.exposure(a) == 0
    m.d.ok(review(m.parties[a], "EUR"), **OP)
    assert m.state.parties[m.parties[a]].currency == "EUR"
    assert m.unchanged(review(m.parties[b], "EUR"), **OP).code == "open_commitments"


# ---------------------------------------------------------------------------
# tie-break policies
# ---------------------------------------------------------------------------

def lottery_lot(rules: int, mechanism: str, **fields):
    m = Market()
    m.d.rules = rules
    seller = m.seller(limit=10**12)
    if mechanism == "dutch":
        fields.update(dutch_start=9_000 * USD, dutch_step=100 * USD, dutch_interval=MINUTE)
    if mechanism == "reverse":
        fields.setdefault("choice_window", DAY)
    terms = m.terms(mechanism=mechanism, tie_break="lottery",
                    starting_bid=0 if mechanism == "bid_ask" else 1_000 * USD, **fields)
    events = m.d.send(CreateLot(serial="L1", session="S1", seller=seller, terms=terms),
                      actor="seller-broker", role="broker")
    return m, events


@pytest.mark.parametrize("rules", [4, 5])
@pytest.mark.parametrize("mechanism,fields", [
    ("english", {}), ("dutch", {}), ("bid_ask", {}), ("reverse", {"reverse_choice": "buyer"}),
    ("sealed_first", {}), ("sealed_second", {}), ("reverse", {"reverse_choice": "lowest"})])
def test_a_lottery_is_taken_only_where_the_mechanism_draws_one(rules, mechanism, fields):
    m, events = lottery_lot(rules, mechanism, **fields)
    applies = mechanism.startswith("sealed") or fields.get("reverse_choice") == "lowest"
    if rules == 4 or applies:
        assert rejected(events) is None
    else:
        assert rejected(events) == "bad_field"
        assert "lottery" in events[-1].text and "L1" not in m.state.lots


@pytest.mark.parametrize("rules", [4, 5])
def test_an_english_tie_is_never_drawn_by_lottery(rules):
    m = Market()
    m.d.rules = rules
    seller, a, b = m.seller(), m.bidder("A"), m.bidder("B")
    events = m.d.send(CreateLot(serial="L1", session="S1", seller=seller,
                                terms=m.terms(tie_break="lottery")),
                      actor="seller-broker", role="broker")
    if rules == 5:
        assert rejected(events) == "bad_field"
        return
    m.d.ok(VetLot(serial="L1", score=80, approved=True))
    m.d.ok(ScheduleLot(serial="L1"))
    m.tick(T0 + 2 * HOUR)
    m.bid("L1", a, 5_000 * USD)
    m.bid("L1", b, 5_000 * USD)
    award = one(m.tick(T0 + DAY), LotAwarded)
    assert (award.paddle, award.tie_break) == (a, "earliest")   # the lottery ignored


# ---------------------------------------------------------------------------
# the certificate of a non-public agreement transfer
# ---------------------------------------------------------------------------

def agreement(rules: int, *, state_institution: bool = False):
    """An agreement transfer between two brokers' clients; returns the market
    and its SettlementOpened."""
    from exchange.commands import Patent, RecordAgreementTransfer
    from exchange.events import SettlementOpened
    m = Market()
    m.d.rules = rules
    seller, buyer = m.seller(), m.party("Buyer Co", "broker-b")
    events = m.d.ok(RecordAgreementTransfer(
        session="S1", serial="AG-1", title="Secret licence deal", seller=seller, buyer=buyer,
        price=7_777_700, patents=(Patent(number="US9999999", title="x"),),
        state_institution=state_institution), **OP)
    return m, one(events, SettlementOpened)


def complete(m: Market, sid: int, total: int) -> list:
    """Pay, deliver, confirm and release settlement ``sid``: the release's events."""
    from exchange.commands import ConfirmReceipt, RecordDelivery, RecordPayment, ReleaseFunds
    m.d.ok(RecordPayment(settlement=sid, amount=total), **OP)
    m.d.ok(RecordDelivery(settlement=sid, reference="DOC"), actor="seller-broker", role="broker")
    m.d.ok(ConfirmReceipt(settlement=sid), actor="broker-b", role="broker")
    return m.d.ok(ReleaseFunds(settlement=sid), **OP)


@pytest.mark.parametrize("rules", [4, 5])
def test_a_non_public_agreement_transfer_certificate_stays_with_its_parties(rules):
    from exchange.commands import ConfirmReceipt
    from exchange.events import OPERATORS, CertificateIssued, CertificateRecorded
    m, opened = agreement(rules)
    assert opened.to == ("broker-b", "seller-broker", OPERATORS)
    events = complete(m, opened.settlement, opened.total)
    issued, recorded = one(events, CertificateIssued), one(events, CertificateRecorded)
    assert (issued.kind, issued.how, issued.serial, issued.price) == \
        ("transaction", "agreement", "AG-1", 7_777_700)
    assert recorded.to == (OPERATORS,)                   # the operators' copy, as ever
    if rules == 4:                                       # its terms went to the public feed
        assert issued.to == ()
    else:                                                # as private as the rest of it
        assert issued.to == opened.to
        assert all(event.to for event in events)
    # a third broker is still told it does not exist
    assert rejected(m.d.send(ConfirmReceipt(settlement=opened.settlement), actor="broker-other",
                             role="broker")) == "unknown_settlement"


@pytest.mark.parametrize("published", ["state_institution", "marked"])
def test_a_published_agreement_transfer_certificate_is_public(published):
    from exchange.commands import MarkStateTransfer
    from exchange.events import CertificateIssued, PublicityStarted
    m, opened = agreement(5, state_institution=published == "state_institution")
    if published == "marked":
        one(m.d.ok(MarkStateTransfer(settlement=opened.settlement), **OP), PublicityStarted)
    no_objection = one(m.tick(T0 + 20 * DAY), CertificateIssued)
    assert (no_objection.kind, no_objection.to) == ("no_objection", ())
    issued = one(complete(m, opened.settlement, opened.total), CertificateIssued)
    assert (issued.kind, issued.to) == ("transaction", ())


# ---------------------------------------------------------------------------
# negotiation offers standing when the session closes
# ---------------------------------------------------------------------------

def passed_with_offer(rules: int):
    """Lot L1 passed (reserve not met) with a 10-day negotiation window and
    Alice's offer of $3,000 standing on it; returns the market, Alice's paddle
    and the OfferMade."""
    from exchange.commands import MakeOffer
    from exchange.events import OfferMade
    m = Market()
    m.d.rules = rules
    seller, a = m.seller(), m.bidder("Alice")
    m.lot("L1", seller=seller, reserve=5_000 * USD, negotiation_window=10 * DAY)
    m.tick(T0 + HOUR)
    m.bid("L1", a, 2_000 * USD)
    m.tick(T0 + DAY)                                     # passes: reserve not met
    assert m.state.lots["L1"].status == "passed"
    made = one(m.send(MakeOffer(serial="L1", paddle=a, amount=3_000 * USD), a), OfferMade)
    assert m.exposure(a) == 3_000 * USD
    return m, a, made


@pytest.mark.parametrize("rules", [4, 5])
def test_closing_the_session_drops_the_offers_nobody_may_answer_any_more(rules):
    from exchange.commands import AnswerOffer, CloseSession, WithdrawOffer
    from exchange.events import CreditChanged, NegotiationEnded, OfferWithdrawn
    m, a, made = passed_with_offer(rules)
    events = m.d.ok(CloseSession(session="S1"), **OP)
    # neither side may act on the offer once the session is closed, under either rules
    assert rejected(m.send(WithdrawOffer(serial="L1", paddle=a), a)) == "session_closed"
    assert rejected(m.d.send(AnswerOffer(serial="L1", paddle=a, action="decline"),
                             actor="seller-broker", role="broker")) == "session_closed"
    if rules == 4:                  # yet it held Alice's credit until the window's end
        assert not of(events, OfferWithdrawn) and m.exposure(a) == 3_000 * USD
        m.tick(T0 + 8 * DAY)
        assert m.exposure(a) == 3_000 * USD and list(m.state.lots["L1"].offers) == [a]
        ended = m.tick(T0 + 11 * DAY)
        assert one(ended, OfferWithdrawn).reason == "expired" and m.exposure(a) == 0
        return
    dropped = one(events, OfferWithdrawn)
    assert (dropped.serial, dropped.paddle, dropped.reason) == ("L1", a, "session_closed")
    assert dropped.to == made.to                         # the bidder's and seller's brokers
    assert one(events, CreditChanged).exposure == 0 and m.exposure(a) == 0
    assert m.state.lots["L1"].offers == {}
    m.d.ok(review(m.parties[a], "EUR"), **OP)            # nothing left to hold it in USD
    ended = m.tick(T0 + 11 * DAY)                        # the window ends with no offer left
    assert not of(ended, OfferWithdrawn) and one(ended, NegotiationEnded).serial == "L1"


def test_closing_a_session_leaves_the_offers_of_another_session():
    from exchange.commands import CloseSession, CreateSession
    from exchange.events import OfferWithdrawn
    m, a, _ = passed_with_offer(5)
    m.d.ok(CreateSession(session="S2", name="Other", currency="USD"), **OP)
    events = m.d.ok(CloseSession(session="S2"), **OP)
    assert not of(events, OfferWithdrawn)
    assert list(m.state.lots["L1"].offers) == [a] and m.exposure(a) == 3_000 * USD


def test_a_reaward_offer_standing_at_the_close_is_not_dropped():
    """Settlement goes on after the close: a re-award after a default is not
    a negotiation offer, and is still offered and accepted; only the
    negotiation offer on another passed lot is dropped."""
    from exchange.commands import AnswerReaward, CloseSession, DeclareDefault, MakeOffer
    from exchange.events import (LotAwarded, OfferWithdrawn, ReawardEnded, ReawardOffered,
                                 SettlementOpened)
    m = Market()
    seller = m.seller()
    a, b, c = m.bidder("Alice"), m.bidder("Bob"), m.bidder("Carol")
    m.lot("L1", seller=seller)
    m.lot("L2", seller=seller, reserve=5_000 * USD, negotiation_window=10 * DAY)
    m.tick(T0 + HOUR)
    m.bid("L1", b, 2_000 * USD)
    m.bid("L1", a, 3_000 * USD)
    m.bid("L2", c, 2_000 * USD)
    closed = m.tick(T0 + DAY)                            # L1 to Alice, L2 passes
    sid = one(closed, SettlementOpened).settlement
    m.send(MakeOffer(serial="L2", paddle=c, amount=3_000 * USD), c)
    m.tick(T0 + 9 * DAY)                                 # Alice's payment is overdue
    offered = one(m.d.ok(DeclareDefault(settlement=sid, reason="unpaid"), **OP), ReawardOffered)
    assert (offered.serial, offered.paddle) == ("L1", b)
    assert m.state.lots["L1"].status == "passed"         # unsold, offered to the runner-up
    events = m.d.ok(CloseSession(session="S1"), **OP)
    dropped = one(events, OfferWithdrawn)
    assert (dropped.serial, dropped.paddle, dropped.reason) == ("L2", c, "session_closed")
    assert not of(events, ReawardEnded)
    award = one(m.send(AnswerReaward(serial="L1", paddle=b, accept=True), b), LotAwarded)
    assert (award.how, award.paddle, award.hammer) == ("reaward", b, 2_000 * USD)
