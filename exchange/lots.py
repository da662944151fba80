"""Lots: the catalogue and the lot lifecycle, shared by every mechanism.

Lifecycle (``Lot.status``)::

    draft --VetLot--> vetted --ScheduleLot--> scheduled --(opens_at)--> open
      |                  \\--> rejected (never opens)                    |
      |                                                                  v
      |            sold <--(award: close, Ask, Dutch accept, choice)-- closing
      |              |                                                   |
      |           settled (settlement calls `mark_settled`)           passed
      |                                                                  |
      +--> withdrawn <-- (any unsold state)        negotiation window: private
                                                   offers, counters, lowered
                                                   reserve -> sold; RelistLot
                                                   -> scheduled again

A reverse tender whose buyer chooses goes ``open -> choosing -> sold|passed``.
A lot sells at its Ask (English and sealed) while scheduled or open.

The mechanisms (english, sealed, dutch, reverse) register a `Mechanism` in
`MECHANISMS`; this module routes bids to them and owns what they share:
credit commitments, the award with its fees, the pass, negotiation, relisting
and withdrawal. ``bid_ask`` lots only live here (catalogue and lifecycle); the
continuous book trades them and records a sale with `award`.

Credit: every commitment on a lot is held under the key ``("lot", serial)``
in the party's exposure for the lot's session (see `expected_holds`): the
English leader's proxy maximum with premium, each live sealed bid with
premium, a reverse tender's ceiling with premium (its buyer), each private
offer with premium, and after a sale the buyer's total due, which stays
committed until settlement releases it (`release_sale_credit`).
"""

from __future__ import annotations

import hashlib
from typing import Any, Hashable

import msgspec

from exchange import credit, fees
from exchange.commands import (AcceptCounter, AnswerOffer, BuyAtAsk, ChooseOffer, CreateLot,
                               ExtendLot, LotTerms, LowerReserve, MakeOffer, PlaceBid,
                               PostNotice, RecordNegotiatedSale, RelistLot, ScheduleLot, VetLot,
                               WithdrawBid, WithdrawLot, WithdrawOffer)
from exchange.engine import Ctx, State, handles, on_timer, private, reacts_to
from exchange.errors import (MAX_TIME, Reject, a_duration, a_time, non_negative, positive,
                             published_reason, register_reasons)
from exchange.events import (CreditChanged, LotAwarded, LotClosed, LotCreated, LotExtended,
                             LotOpened, PartyFrozen, SessionClosed, CreditReviewed,
                             LotPassed, LotPassedDetail, LotRelisted, LotScheduled, LotSettled,
                             LotSold, LotVetted, LotWithdrawn, NegotiationEnded, NoticePosted,
                             OfferAnswered, OfferMade, OfferWithdrawn, ReserveLowered)
from exchange.increments import Ladder, resolve
from exchange.invariants import invariant
from exchange.participants import (audience, display_amount, display_limit, get_party,
                                   get_session, own_party, paddle_party, valid_currency)

register_reasons({
    "unknown_lot": "no such lot",
    "outside_session": "the lot's schedule falls outside its session's dates",
    "lot_exists": "a lot with this serial exists already",
    "bad_status": "the lot is not in a state that allows this",
    "lot_rejected": "the lot was rejected in vetting and can never open",
    "lot_not_open": "the lot is not open for bidding",
    "lot_closed": "bidding on the lot has closed",
    "below_minimum": "the bid is below the lot's starting bid",
    "below_increment": "the bid is below the current price plus the minimum increment",
    "not_above_own_max": "the leading paddle's new maximum must exceed its current one",
    "below_current_price": "the bid is below the Dutch clock's current price",
    "above_budget": "the offer is above the tender's published budget",
    "own_lot": "a seller cannot bid on its own lot",
    "wrong_mechanism": "the lot's mechanism does not take this command",
    "no_live_bid": "the paddle has no live bid on the lot",
    "no_ask": "the lot has no Ask",
    "not_acceptable": "the offer is not acceptable to the buyer",
    "no_offer": "the paddle has no live offer on the lot",
    "no_counter": "the seller has not countered this offer",
    "not_in_negotiation": "the lot is not in its negotiation window",
    "not_lower": "a new reserve must be lower than the current one",
})

MECHANISM_NAMES = ("english", "sealed_first", "sealed_second", "dutch", "reverse", "bid_ask")
STATUSES = ("draft", "vetted", "rejected", "scheduled", "open", "choosing", "sold", "passed",
            "settled", "withdrawn")
UNSOLD = ("draft", "vetted", "rejected", "scheduled", "open", "choosing", "passed")
MAX_BP = 10_000


class Bid(msgspec.Struct, frozen=True, kw_only=True):
    """An accepted bid: its envelope sequence and time, paddle, party and amount."""

    seq: int
    ts: int
    paddle: int
    party: int
    amount: int


class Offer(msgspec.Struct, kw_only=True):
    """A private offer for a passed lot, and the seller's counter (0 if none)."""

    seq: int
    paddle: int
    party: int
    amount: int
    counter: int = 0


class Sale(msgspec.Struct, frozen=True, kw_only=True):
    """What a lot sold for and between whom (kept on the lot for settlement)."""

    seq: int
    ts: int
    how: str
    paddle: int
    buyer: int
    seller: int
    hammer: int
    premium: int
    total: int
    commission: int
    net: int
    tie_break: str


class Lot(msgspec.Struct, kw_only=True):
    """A lot in ``state.lots[serial]``. The first six fields are what other
    modules (the book, settlement, replay) rely on."""

    serial: str
    session: str
    seller: int
    currency: str
    mechanism: str
    status: str
    terms: LotTerms
    reserve: int = 0
    score: int = 0
    note: str = ""
    round: int = 0               # 1 on the first opening, +1 per relisting
    opens_at: int = 0
    closes_at: int = 0           # moves with soft close
    hard_end: int = 0
    ladder: Any = None           # increments.Ladder of the lot's table
    bids: int = 0                # bids accepted this round (public count)
    history: list[Bid] = []      # every accepted bid this round, in order
    # English
    leader: int = 0              # leading paddle, 0 = none
    leader_party: int = 0
    leader_max: int = 0
    second_max: int = 0          # highest maximum of any other paddle
    price: int = 0               # the standing price
    maxes: dict[int, Bid] = {}   # paddle -> its highest maximum
    # sealed and reverse: paddle -> live bid or offer
    live: dict[int, Bid] = {}
    # Dutch
    clock: int = 0
    floor: int = 0
    # reverse with the buyer's choice
    choose_by: int = 0
    # after the close
    sale: Sale | None = None
    negotiation_ends: int = 0
    offers: dict[int, Offer] = {}


class Mechanism:
    """What a mechanism module plugs in. Every method but `place_bid`,
    `withdraw_bid` and `validate_terms` runs where it must not refuse."""

    name = ""
    ask_allowed = False

    def validate_terms(self, terms: LotTerms, reserve: int) -> None:
        """Reject terms this mechanism cannot run."""

    def ties(self, terms: LotTerms) -> str:
        """How the mechanism decides between equal bids when it applies no
        tie-break policy of the lot's ("" when it applies ``terms.tie_break``):
        since rules 5 a lot whose policy would be ignored is refused."""
        return f"a {self.name} lot breaks no tie by policy"

    def on_schedule_check(self, state: State, lot: Lot) -> None:
        """Reject scheduling (validate only; no change)."""

    def on_schedule(self, state: State, ctx: Ctx, lot: Lot) -> None:
        """Take commitments needed while scheduled (after `on_schedule_check`)."""

    def on_open(self, state: State, ctx: Ctx, lot: Lot) -> None:
        """Start the mechanism (timers, clock)."""

    def place_bid(self, state: State, ctx: Ctx, lot: Lot, paddle: int, party: int,
                  amount: int) -> None:
        raise Reject("wrong_mechanism", f"lot {lot.serial} ({lot.mechanism}) takes no bids here")

    def withdraw_bid(self, state: State, ctx: Ctx, lot: Lot, paddle: int, party: int) -> None:
        raise Reject("wrong_mechanism", f"bids on {lot.mechanism} lot {lot.serial} cannot be withdrawn")

    def on_ask_sale(self, state: State, ctx: Ctx, lot: Lot) -> None:
        """The lot closes early, sold at its Ask (after `close`, before the award)."""

    def on_close(self, state: State, ctx: Ctx, lot: Lot, when: int) -> None:
        """Decide the lot at its close: call `award` or `pass_lot`."""
        close(ctx, lot, "passed")
        pass_lot(state, ctx, lot, "expired", when)

    def holds(self, lot: Lot) -> dict[int, int]:
        """Return party -> amount the lot commits while scheduled or open."""
        return {}

    def ranked(self, lot: Lot) -> list[Bid]:
        """Return the bids still standing, best first, one per paddle."""
        return []

    def void_bids(self, state: State, ctx: Ctx, lot: Lot, party: int, reason: str) -> None:
        """Void ``party``'s standing bids on an open or scheduled lot (its
        credit was frozen); release what they held."""

    def check(self, state: State, lot: Lot) -> None:
        """Assert the mechanism's own invariants."""


MECHANISMS: dict[str, Mechanism] = {}


def register_mechanism(mechanism: Mechanism) -> Mechanism:
    if mechanism.name in MECHANISMS:
        raise KeyError(f"mechanism {mechanism.name!r} registered twice")
    MECHANISMS[mechanism.name] = mechanism
    return mechanism


class _BidAsk(Mechanism):
    """Catalogue and lifecycle only: the continuous book trades the lot."""

    name = "bid_ask"

    def ties(self, terms: LotTerms) -> str:
        return "its book trades in price and time order"


register_mechanism(_BidAsk())


# --------------------------------------------------------------------------
# helpers shared by the mechanisms
# --------------------------------------------------------------------------

def get_lot(state: State, serial: str) -> Lot:
    lot = state.lots.get(serial)
    if lot is None:
        raise Reject("unknown_lot", f"no lot {serial!r}")
    return lot


def visible_lot(state: State, ctx: Ctx, serial: str) -> Lot:
    """`get_lot` for a command: a lot never published (a draft, vetted or
    rejected, or withdrawn before it was scheduled) is unknown to every
    broker but its seller's, so no refusal tells them of it. O(1)."""
    lot = get_lot(state, serial)
    if not lot.opens_at and not ctx.is_operator and ctx.role != "system":
        seller = state.parties.get(lot.seller)
        if seller is None or seller.broker != ctx.actor:
            raise Reject("unknown_lot", f"no lot {serial!r}")
    return lot


def lot_key(lot: Lot) -> Hashable:
    """The credit key of every commitment on ``lot``."""
    return ("lot", lot.serial)


def check_credit(state: State, lot: Lot, party: int, amount: int) -> None:
    """Reject unless ``party`` can commit ``amount`` on ``lot`` (replacing what it holds)."""
    credit.check(state, lot.session, party, lot_key(lot), amount, currency=lot.currency)


def hold(state: State, ctx: Ctx, lot: Lot, party: int, amount: int) -> None:
    """Set ``party``'s commitment on ``lot`` to ``amount`` (0 releases) and tell its broker."""
    key = lot_key(lot)
    if credit.committed(state, lot.session, party, key) == amount:
        return
    credit.commit(state, lot.session, party, key, amount)
    ctx.emit(CreditChanged(to=audience(state, party), session=lot.session, party=party,
                           exposure=credit.exposure(state, lot.session, party).total,
                           credit_limit=state.parties[party].credit_limit))


def release_all(state: State, ctx: Ctx, lot: Lot, keep: int = 0) -> None:
    """Release every commitment on ``lot`` except party ``keep``'s."""
    for party in expected_holds(lot):
        if party != keep:
            hold(state, ctx, lot, party, 0)


def total_due(lot: Lot, amount: int) -> int:
    """What a buyer commits for ``amount``: with the lot's buyer's premium."""
    return fees.total_due(amount, lot.terms.buyer_premium_bp)


def display(state: State, ctx: Ctx, lot: Lot, amount: int) -> tuple[str, int]:
    """Return (display currency, amount in it), or ("", 0) when no rate is set
    or (rules 5) the amount in it is above `MAX_DISPLAY`."""
    quote = lot.terms.display_currency
    if not quote:
        return "", 0
    shown = display_amount(state, amount, lot.currency, quote, display_limit(ctx))
    return ("", 0) if shown is None else (quote, shown)


def seller_audience(state: State, lot: Lot) -> tuple[str, ...]:
    return audience(state, lot.seller)


def bidder(state: State, ctx: Ctx, lot: Lot, paddle: int) -> int:
    """Return the party behind ``paddle`` if the sender may bid with it on ``lot``."""
    party = paddle_party(state, ctx, lot.session, paddle)
    if not state.sessions[lot.session].open:
        raise Reject("session_closed", f"session {lot.session!r} is closed to bidding")
    if party.id == lot.seller:
        raise Reject("own_lot", f"paddle {paddle} belongs to the seller of lot {lot.serial}")
    return party.id


def require_open(lot: Lot, now: int) -> None:
    if lot.status == "open":
        return
    if lot.status in ("sold", "passed", "settled", "choosing"):
        raise Reject("lot_closed", f"bidding on lot {lot.serial} closed; it is {lot.status}")
    if lot.status == "withdrawn":
        raise Reject("lot_closed", f"lot {lot.serial} was withdrawn")
    raise Reject("lot_not_open", f"lot {lot.serial} is {lot.status}, not open"
                 + (f"; it opens at {lot.opens_at}" if lot.status == "scheduled" else ""))


def lottery_rank(lot: Lot, bid: Bid) -> bytes:
    """A deterministic draw among tied bids: a hash of the lot, round and bid."""
    return hashlib.sha256(f"{lot.serial}/{lot.round}/{bid.paddle}/{bid.seq}".encode()).digest()


def break_tie(lot: Lot, tied: list[Bid]) -> tuple[Bid, str]:
    """Return the winner among bids of equal amount (in time order) and the
    rule applied: "none" for a single bid, else the lot's tie-break policy."""
    if len(tied) == 1:
        return tied[0], "none"
    if lot.terms.tie_break == "lottery":
        return min(tied, key=lambda bid: lottery_rank(lot, bid)), "lottery"
    return min(tied, key=lambda bid: bid.seq), "earliest"


def award(state: State, ctx: Ctx, lot: Lot, *, paddle: int, buyer: int, seller: int,
          hammer: int, how: str, tie_break: str = "none") -> Sale:
    """Sell ``lot``: release every other commitment, commit the buyer's total due,
    emit the public `LotAwarded` and the operators' `LotSold`. Never refuses:
    callers checked the buyer's credit. Also the entry point for the book
    (``how="book"``) and settlement's re-award (``how="reaward"``)."""
    terms = lot.terms
    amounts = fees.compute(hammer, terms.buyer_premium_bp, terms.seller_commission_bp)
    for offer in [o for o in lot.offers.values() if o.paddle != paddle]:
        _drop_offer(state, ctx, lot, offer, "superseded")      # its bidder hears the lot went
    release_all(state, ctx, lot, keep=buyer)
    sale = Sale(seq=ctx.seq, ts=ctx.ts, how=how, paddle=paddle, buyer=buyer, seller=seller,
                hammer=hammer, premium=amounts.premium, total=amounts.total,
                commission=amounts.commission, net=amounts.net, tie_break=tie_break)
    lot.status = "sold"
    lot.sale = sale
    lot.negotiation_ends = 0
    lot.offers = {}
    hold(state, ctx, lot, buyer, amounts.total)
    quote, shown_hammer = display(state, ctx, lot, hammer)
    quote_total, shown_total = display(state, ctx, lot, amounts.total)
    if quote_total != quote:             # rules 5: a total too large to show shows neither
        quote, shown_hammer = "", 0
    ctx.emit(LotAwarded(serial=lot.serial, session=lot.session, mechanism=lot.mechanism,
                        how=how, paddle=paddle, hammer=hammer, premium=amounts.premium,
                        total=amounts.total, commission=amounts.commission, net=amounts.net,
                        currency=lot.currency, buyer_premium_bp=terms.buyer_premium_bp,
                        seller_commission_bp=terms.seller_commission_bp, tie_break=tie_break,
                        display_currency=quote, display_hammer=shown_hammer,
                        display_total=shown_total))
    ctx.emit(LotSold(to=private(), serial=lot.serial, session=lot.session,
                     mechanism=lot.mechanism, how=how, paddle=paddle, buyer=buyer,
                     seller=seller, hammer=hammer, premium=amounts.premium, total=amounts.total,
                     commission=amounts.commission, net=amounts.net, currency=lot.currency,
                     buyer_premium_bp=terms.buyer_premium_bp,
                     seller_commission_bp=terms.seller_commission_bp, tie_break=tie_break))
    return sale


def award_to_bidder(state: State, ctx: Ctx, lot: Lot, *, paddle: int, party: int, hammer: int,
                    how: str, tie_break: str = "none") -> Sale:
    """Award to a bidding paddle: it buys from the lot's seller (a reverse
    tender's paddle sells to the lot's owner)."""
    if lot.mechanism == "reverse":
        return award(state, ctx, lot, paddle=paddle, buyer=lot.seller, seller=party,
                     hammer=hammer, how=how, tie_break=tie_break)
    return award(state, ctx, lot, paddle=paddle, buyer=party, seller=lot.seller,
                 hammer=hammer, how=how, tie_break=tie_break)


SEALED_BIDS = ("sealed_first", "sealed_second", "reverse")


def public_bids(lot: Lot) -> int:
    """Return the bid count the public may know: for sealed bids and tenders
    the live ones, one a paddle, as `SealedBidCounted` said (how often a
    paddle revised its sealed bid is its own business); else every bid."""
    return len(lot.live) if lot.mechanism in SEALED_BIDS else lot.bids


def close(ctx: Ctx, lot: Lot, outcome: str, decision_by: int = 0) -> None:
    ctx.emit(LotClosed(serial=lot.serial, session=lot.session, outcome=outcome,
                       bids=public_bids(lot), decision_by=decision_by))


def window_end(ctx: Ctx, when: int, window: int) -> int:
    """Return the end of a ``window`` ns long from ``when``: since rules 6 no
    later than `MAX_TIME` (a close late in 2262 and a ten-year window)."""
    return min(when + window, MAX_TIME) if ctx.rules >= 6 else when + window


def pass_lot(state: State, ctx: Ctx, lot: Lot, reason: str, when: int, *,
             highest_bid: int = 0, highest_paddle: int = 0) -> None:
    """Record that ``lot`` did not sell: release its commitments, open the
    negotiation window (not for reverse tenders and book lots, nor since
    rules 6 once the session is closed, where no one may negotiate), publish
    the pass without amounts and tell the seller the highest bid and the reserve."""
    release_all(state, ctx, lot)
    lot.status = "passed"
    window = lot.terms.negotiation_window
    if ctx.rules >= 6 and not state.sessions[lot.session].open:
        window = 0
    if window and lot.mechanism not in ("reverse", "bid_ask"):
        lot.negotiation_ends = window_end(ctx, when, window)
        state.schedule(lot.negotiation_ends, "lot_negotiation_end", lot.serial, lot.round)
    else:
        lot.negotiation_ends = 0
    ctx.emit(LotPassed(serial=lot.serial, session=lot.session, mechanism=lot.mechanism,
                       reason=reason, bids=public_bids(lot),
                       negotiation_ends=lot.negotiation_ends))
    ctx.emit(LotPassedDetail(to=seller_audience(state, lot), serial=lot.serial,
                             session=lot.session, highest_bid=highest_bid,
                             highest_paddle=highest_paddle, reserve=lot.reserve))


def sell_at_ask(state: State, ctx: Ctx, lot: Lot, paddle: int, party: int) -> None:
    """Sell ``lot`` at once at its Ask to ``paddle`` (credit checked by the caller)."""
    close(ctx, lot, "sold")
    MECHANISMS[lot.mechanism].on_ask_sale(state, ctx, lot)
    award_to_bidder(state, ctx, lot, paddle=paddle, party=party, hammer=lot.terms.ask, how="ask")


def expected_holds(lot: Lot) -> dict[int, int]:
    """Return party -> amount that ``lot`` should hold in credit now."""
    status = lot.status
    if status in ("scheduled", "open", "choosing"):
        return MECHANISMS[lot.mechanism].holds(lot)
    if status == "passed":
        return {offer.party: total_due(lot, offer.amount) for offer in lot.offers.values()}
    if status == "sold" and lot.sale is not None:
        return {lot.sale.buyer: lot.sale.total}
    return {}


# --------------------------------------------------------------------------
# entry points for settlement (issue 7) and the book (issue 3)
# --------------------------------------------------------------------------

def runners_up(state: State, serial: str) -> list[Bid]:
    """Return the lot's standing bids best first, one per paddle, without the
    buyer's: candidates for a re-award at their own last price."""
    lot = state.lots[serial]
    buyer_paddle = lot.sale.paddle if lot.sale is not None else 0
    return [bid for bid in MECHANISMS[lot.mechanism].ranked(lot) if bid.paddle != buyer_paddle]


def release_sale_credit(state: State, ctx: Ctx, serial: str) -> None:
    """Release the buyer's commitment of a sold or settled lot (settlement done or failed)."""
    lot = state.lots[serial]
    if lot.sale is not None:
        hold(state, ctx, lot, lot.sale.buyer, 0)


def mark_settled(state: State, ctx: Ctx, serial: str) -> None:
    """Mark a sold lot settled and release the buyer's commitment."""
    lot = state.lots[serial]
    if lot.status != "sold":
        raise Reject("bad_status", f"lot {serial} is {lot.status}, not sold")
    release_sale_credit(state, ctx, serial)
    lot.status = "settled"
    ctx.emit(LotSettled(serial=serial, session=lot.session))


def unsell(state: State, ctx: Ctx, serial: str) -> None:
    """Cancel a sale (buyer default, refund, upheld objection): the lot becomes
    passed, without a negotiation window, so an operator may relist it or
    `reaward` it; the public hears it passed (reason "sale_cancelled")."""
    lot = state.lots[serial]
    if lot.status != "sold":
        raise Reject("bad_status", f"lot {serial} is {lot.status}, not sold")
    release_sale_credit(state, ctx, serial)
    lot.status = "passed"
    lot.sale = None
    lot.negotiation_ends = 0
    ctx.emit(LotPassed(serial=lot.serial, session=lot.session, mechanism=lot.mechanism,
                       reason="sale_cancelled", bids=public_bids(lot), negotiation_ends=0))


def reaward(state: State, ctx: Ctx, serial: str, paddle: int, party: int, hammer: int) -> Sale:
    """Award a passed lot (after `unsell`) to ``paddle`` at ``hammer``, its last price."""
    lot = state.lots[serial]
    if lot.status != "passed":
        raise Reject("bad_status", f"lot {serial} is {lot.status}, not passed")
    if lot.mechanism != "reverse":
        check_credit(state, lot, party, total_due(lot, hammer))
    return award_to_bidder(state, ctx, lot, paddle=paddle, party=party, hammer=hammer,
                           how="reaward")


# --------------------------------------------------------------------------
# catalogue and lifecycle handlers
# --------------------------------------------------------------------------

def _validate_terms(terms: LotTerms, reserve: int, rules: int) -> tuple[tuple[int, int], ...]:
    if not terms.title.strip():
        raise Reject("bad_field", "a lot needs a title")
    valid_currency(terms.currency, rules)
    if terms.display_currency:
        valid_currency(terms.display_currency, rules)
    if terms.mechanism not in MECHANISMS:
        raise Reject("bad_field", f"unknown mechanism {terms.mechanism!r}")
    if terms.tie_break not in ("earliest", "lottery"):
        raise Reject("bad_field", f"unknown tie-break policy {terms.tie_break!r}")
    if terms.reverse_choice not in ("lowest", "buyer"):
        raise Reject("bad_field", f"unknown reverse choice {terms.reverse_choice!r}")
    for patent in terms.patents:
        if not patent.number.strip():
            raise Reject("bad_field", "every patent needs a number")
        if patent.status not in ("granted", "pending"):
            raise Reject("bad_field", f"patent status {patent.status!r} is not granted or pending")
        a_time(patent.priority_date, "priority date")
        a_time(patent.expiry_date, "expiry date")
    # durations: since rules 6 up to MAX_DURATION; before, MAX_INT ns (~11.6 days)
    duration = a_duration if rules >= 6 else non_negative
    for value, what, check in ((terms.starting_bid, "starting bid", non_negative),
                               (terms.ask, "Ask", non_negative),
                               (reserve, "reserve", non_negative),
                               (terms.soft_window, "soft-close window", duration),
                               (terms.soft_extend, "soft-close extension", duration),
                               (terms.dutch_start, "Dutch start", non_negative),
                               (terms.dutch_step, "Dutch step", non_negative),
                               (terms.dutch_interval, "Dutch interval", duration),
                               (terms.choice_window, "choice window", duration),
                               (terms.negotiation_window, "negotiation window", duration),
                               (terms.buyer_premium_bp, "buyer's premium", non_negative),
                               (terms.seller_commission_bp, "seller commission", non_negative)):
        check(value, what)
    for value, what in ((terms.opens_at, "opens_at"), (terms.closes_at, "closes_at"),
                        (terms.hard_end, "hard_end")):
        a_time(value, what)
    if terms.buyer_premium_bp > MAX_BP or terms.seller_commission_bp > MAX_BP:
        raise Reject("out_of_range", f"fee rates are basis points from 0 to {MAX_BP}")
    if bool(terms.soft_window) != bool(terms.soft_extend):
        raise Reject("bad_field", "a soft close needs both a window and an extension")
    if terms.soft_window and terms.mechanism != "english" and rules >= 4:
        raise Reject("bad_field", f"a {terms.mechanism} lot has no soft close: only an English "
                                  f"auction's close moves on with a late bid")
    mechanism = MECHANISMS[terms.mechanism]
    if terms.tie_break != "earliest" and rules >= 5:
        decided = mechanism.ties(terms)
        if decided:
            raise Reject("bad_field", f"a {terms.mechanism} lot has no {terms.tie_break} "
                                      f"tie-break: {decided}; leave tie_break \"earliest\"")
    if terms.ask:
        if not mechanism.ask_allowed:
            raise Reject("bad_field", f"a {terms.mechanism} lot has no Ask")
        if terms.ask < terms.starting_bid:
            raise Reject("bad_field", "the Ask is below the starting bid")
    mechanism.validate_terms(terms, reserve)
    return resolve(terms.increments, terms.custom_increments)


@handles(CreateLot)
def create_lot(state: State, ctx: Ctx, cmd: CreateLot) -> None:
    ctx.require_role("broker", "operator")
    if not cmd.serial.strip():
        raise Reject("bad_field", "a lot needs a serial number")
    if cmd.serial in state.lots:
        raise Reject("lot_exists", f"lot {cmd.serial!r} exists already")
    agreements = state.extra.get("settlement")     # settlement's desk: transfers' serials
    if ctx.rules >= 3 and agreements is not None and cmd.serial in agreements.agreements:
        raise Reject("lot_exists", f"serial {cmd.serial!r} is taken by an agreement transfer")
    session = get_session(state, cmd.session)
    if not session.open:
        raise Reject("session_closed", f"session {cmd.session!r} is closed")
    own_party(state, ctx, cmd.seller)
    terms = cmd.terms
    if not terms.currency and ctx.rules >= 6:    # the session's, in its events and state
        terms = msgspec.structs.replace(terms, currency=session.currency)
    table = _validate_terms(terms, cmd.reserve, ctx.rules)
    lot = Lot(serial=cmd.serial, session=cmd.session, seller=cmd.seller,
              currency=terms.currency, mechanism=terms.mechanism, status="draft",
              terms=terms, reserve=cmd.reserve, ladder=Ladder(table))
    state.lots[lot.serial] = lot
    session.lots.append(lot.serial)
    ctx.emit(LotCreated(to=seller_audience(state, lot), serial=lot.serial, session=lot.session,
                        seller=lot.seller, terms=lot.terms, reserve=lot.reserve))


@handles(VetLot)
def vet_lot(state: State, ctx: Ctx, cmd: VetLot) -> None:
    ctx.require_role("operator")
    lot = visible_lot(state, ctx, cmd.serial)
    if lot.status != "draft":
        raise Reject("bad_status", f"lot {lot.serial} is {lot.status}; only a draft is vetted")
    non_negative(cmd.score, "score")
    lot.score = cmd.score
    lot.note = cmd.note
    lot.status = "vetted" if cmd.approved else "rejected"
    ctx.emit(LotVetted(to=seller_audience(state, lot), serial=lot.serial, session=lot.session,
                       score=cmd.score, approved=cmd.approved, note=cmd.note))


def _schedule_times(state: State, lot: Lot, now: int, opens_at: int, closes_at: int,
                    hard_end: int) -> tuple[int, int, int]:
    """Validate a schedule, inside the session's dates when it has them, and
    return (opens_at, closes_at, hard_end). An ``opens_at`` already past
    becomes ``now``: the lot opens when it is scheduled, and nothing timed
    from its opening (a Dutch clock's steps) happened before."""
    if not state.sessions[lot.session].open:
        raise Reject("session_closed", f"session {lot.session!r} is closed: no lot opens in it")
    for value, what in ((opens_at, "opens_at"), (closes_at, "closes_at"), (hard_end, "hard_end")):
        a_time(value, what)
    opens_at = max(opens_at, now)
    if closes_at <= opens_at:
        raise Reject("bad_field", f"lot {lot.serial} must close after it opens")
    if closes_at <= now:
        raise Reject("bad_field", f"lot {lot.serial} would close in the past")
    hard_end = hard_end or closes_at
    if hard_end < closes_at:
        raise Reject("bad_field", "the hard end cannot come before the close")
    if lot.terms.soft_window and hard_end == closes_at:
        raise Reject("bad_field", f"lot {lot.serial} has a soft close but no hard_end after "
                                  f"its close (the latest a bid may move the close to), so "
                                  f"no bid could extend it")
    session = state.sessions[lot.session]
    if opens_at < session.starts_at or (session.ends_at and hard_end > session.ends_at):
        raise Reject("outside_session", f"lot {lot.serial} must open and end within session "
                                        f"{session.id!r} ({session.starts_at}..{session.ends_at})")
    return opens_at, closes_at, hard_end


def _publish_schedule(state: State, ctx: Ctx, lot: Lot, opens_at: int, closes_at: int,
                      hard_end: int) -> None:
    lot.terms = msgspec.structs.replace(lot.terms, opens_at=opens_at, closes_at=closes_at,
                                        hard_end=hard_end)
    lot.opens_at, lot.closes_at, lot.hard_end = opens_at, closes_at, hard_end
    lot.status = "scheduled"
    ctx.emit(LotScheduled(serial=lot.serial, session=lot.session, terms=lot.terms))
    MECHANISMS[lot.mechanism].on_schedule(state, ctx, lot)
    if opens_at <= ctx.ts:
        open_lot(state, ctx, lot)
    else:
        state.schedule(opens_at, "lot_open", lot.serial, lot.round + 1)


@handles(ScheduleLot)
def schedule_lot(state: State, ctx: Ctx, cmd: ScheduleLot) -> None:
    ctx.require_role("operator")
    lot = visible_lot(state, ctx, cmd.serial)
    if lot.status == "rejected":
        raise Reject("lot_rejected", f"lot {lot.serial} was rejected in vetting")
    if lot.status not in ("vetted", "scheduled"):
        raise Reject("bad_status", f"lot {lot.serial} is {lot.status}; only a vetted lot is "
                                   f"scheduled, or a scheduled one not yet open rescheduled")
    terms = lot.terms
    hard_end = cmd.hard_end or terms.hard_end
    if not cmd.hard_end and lot.status == "scheduled" and ctx.rules >= 3:
        # the first schedule wrote its hard end into the terms (the close, without a
        # soft close): a new close moves a later hard end along, else it is the close
        closes_at = cmd.closes_at or terms.closes_at
        hard_end = (terms.hard_end + closes_at - terms.closes_at
                    if terms.hard_end > terms.closes_at else 0)
        ends_at = state.sessions[lot.session].ends_at
        if hard_end and ends_at:             # within the session, never before the close
            hard_end = max(min(hard_end, ends_at), closes_at)
    times = _schedule_times(state, lot, ctx.ts, cmd.opens_at or terms.opens_at,
                            cmd.closes_at or terms.closes_at, hard_end)
    MECHANISMS[lot.mechanism].on_schedule_check(state, lot)
    if lot.status == "scheduled":
        lot.round += 1                    # the opening timer set before no longer matches
    _publish_schedule(state, ctx, lot, *times)


def open_lot(state: State, ctx: Ctx, lot: Lot) -> None:
    lot.round += 1
    lot.status = "open"
    state.schedule(lot.closes_at, "lot_close", lot.serial, lot.closes_at)
    mechanism = MECHANISMS[lot.mechanism]
    ctx.emit(LotOpened(serial=lot.serial, session=lot.session, mechanism=lot.mechanism,
                       opens_at=lot.opens_at, closes_at=lot.closes_at, hard_end=lot.hard_end,
                       price=lot.terms.dutch_start if lot.mechanism == "dutch"
                       else lot.terms.starting_bid))
    mechanism.on_open(state, ctx, lot)


@on_timer("lot_open")
def _open_due(state: State, ctx: Ctx, serial: str, round_: int) -> None:
    lot = state.lots.get(serial)
    if lot is not None and lot.status == "scheduled" and lot.round + 1 == round_:
        open_lot(state, ctx, lot)


@on_timer("lot_close")
def _close_due(state: State, ctx: Ctx, serial: str, closes_at: int) -> None:
    lot = state.lots.get(serial)
    if lot is not None and lot.status == "open" and lot.closes_at == closes_at:
        MECHANISMS[lot.mechanism].on_close(state, ctx, lot, closes_at)


def extend_close(state: State, ctx: Ctx, lot: Lot) -> None:
    """Soft close: a bid in the last ``soft_window`` ns moves the close
    ``soft_extend`` ns later, never past the hard end."""
    terms = lot.terms
    if not terms.soft_window or ctx.ts < lot.closes_at - terms.soft_window:
        return
    later = min(lot.closes_at + terms.soft_extend, lot.hard_end)
    if later > lot.closes_at:
        lot.closes_at = later
        state.schedule(later, "lot_close", lot.serial, later)
        ctx.emit(LotExtended(serial=lot.serial, session=lot.session, closes_at=later,
                             hard_end=lot.hard_end))


@handles(ExtendLot)
def extend_lot(state: State, ctx: Ctx, cmd: ExtendLot) -> None:
    """Move an open lot's close (and hard end) later, publishing why. O(log timers)."""
    ctx.require_role("operator")
    lot = get_lot(state, cmd.serial)
    if lot.status != "open":
        raise Reject("bad_status", f"lot {lot.serial} is {lot.status}; only an open lot's close "
                                   f"moves (a scheduled one is rescheduled)")
    if lot.mechanism == "dutch":
        raise Reject("wrong_mechanism", f"lot {lot.serial} is a Dutch auction: its clock sets "
                                        f"its end")
    session = state.sessions[lot.session]
    if not session.open:
        raise Reject("session_closed", f"session {lot.session!r} is closed")
    reason = published_reason(cmd.reason, "an extension")
    closes_at = a_time(cmd.closes_at, "closes_at")
    if closes_at <= lot.closes_at or closes_at <= ctx.ts:
        raise Reject("bad_field", f"lot {lot.serial} closes at {lot.closes_at}; an extension "
                                  f"moves it later, and after now ({ctx.ts})")
    hard_end = a_time(cmd.hard_end or lot.hard_end + closes_at - lot.closes_at, "hard_end")
    if hard_end < closes_at or hard_end < lot.hard_end:
        raise Reject("bad_field", f"the hard end cannot come before the close, nor before the "
                                  f"lot's hard end ({lot.hard_end})")
    if lot.terms.soft_window and hard_end == closes_at:
        raise Reject("bad_field", f"lot {lot.serial} has a soft close: its hard end must come "
                                  f"after its close, or no bid could extend it")
    if session.ends_at and hard_end > session.ends_at:
        raise Reject("outside_session", f"lot {lot.serial} must end within session "
                                        f"{session.id!r} (by {session.ends_at}); give a hard "
                                        f"end no later")
    lot.closes_at, lot.hard_end = closes_at, hard_end
    state.schedule(closes_at, "lot_close", lot.serial, closes_at)
    ctx.emit(LotExtended(serial=lot.serial, session=lot.session, closes_at=closes_at,
                         hard_end=hard_end))
    ctx.emit(NoticePosted(session=lot.session, serial=lot.serial, instrument="", text=reason))


@handles(PostNotice)
def post_notice(state: State, ctx: Ctx, cmd: PostNotice) -> None:
    """Publish a saleroom notice about a session, a lot or a book of it. O(1)."""
    ctx.require_role("operator")
    get_session(state, cmd.session)
    if cmd.serial:
        lot = get_lot(state, cmd.serial)
        if lot.session != cmd.session:
            raise Reject("unknown_lot", f"no lot {cmd.serial!r} in session {cmd.session!r}")
        if not lot.opens_at:
            raise Reject("bad_status", f"lot {lot.serial} is not published (it is {lot.status}): "
                                       f"a notice would make it known")
    if cmd.instrument:
        inst = state.books.get(cmd.instrument)
        if inst is None or inst.session != cmd.session:
            raise Reject("unknown_instrument", f"no instrument {cmd.instrument!r} in session "
                                               f"{cmd.session!r}")
    text = cmd.text.strip()
    if not text:
        raise Reject("bad_field", "a notice needs a text")
    ctx.emit(NoticePosted(session=cmd.session, serial=cmd.serial, instrument=cmd.instrument,
                          text=text))


@handles(PlaceBid)
def place_bid(state: State, ctx: Ctx, cmd: PlaceBid) -> None:
    ctx.require_role("broker", "operator")
    lot = visible_lot(state, ctx, cmd.serial)
    positive(cmd.amount, "bid")
    if cmd.currency and cmd.currency != lot.currency:
        raise Reject("wrong_currency", f"lot {lot.serial} trades in {lot.currency}, "
                                       f"not {cmd.currency}")
    if lot.mechanism == "bid_ask":
        raise Reject("wrong_mechanism", f"lot {lot.serial} trades on the bid-ask book; send an order")
    party = bidder(state, ctx, lot, cmd.paddle)
    require_open(lot, ctx.ts)
    MECHANISMS[lot.mechanism].place_bid(state, ctx, lot, cmd.paddle, party, cmd.amount)


@handles(WithdrawBid)
def withdraw_bid(state: State, ctx: Ctx, cmd: WithdrawBid) -> None:
    ctx.require_role("broker", "operator")
    lot = visible_lot(state, ctx, cmd.serial)
    party = bidder(state, ctx, lot, cmd.paddle)
    require_open(lot, ctx.ts)
    MECHANISMS[lot.mechanism].withdraw_bid(state, ctx, lot, cmd.paddle, party)


@handles(BuyAtAsk)
def buy_at_ask(state: State, ctx: Ctx, cmd: BuyAtAsk) -> None:
    ctx.require_role("broker", "operator")
    lot = visible_lot(state, ctx, cmd.serial)
    if not lot.terms.ask:
        raise Reject("no_ask", f"lot {lot.serial} has no Ask")
    party = bidder(state, ctx, lot, cmd.paddle)
    if lot.status != "scheduled":
        require_open(lot, ctx.ts)
    check_credit(state, lot, party, total_due(lot, lot.terms.ask))
    if lot.status == "scheduled" and ctx.rules >= 3:
        lot.round += 1                    # its opening timer no longer matches
    sell_at_ask(state, ctx, lot, cmd.paddle, party)


@handles(ChooseOffer)
def choose_offer(state: State, ctx: Ctx, cmd: ChooseOffer) -> None:
    """The buyer of a tender in ``choosing`` picks an offer: the tender's own
    award among offers made before its close, so, unlike a negotiation after
    a pass, it is taken after the session closed too, until ``choose_by``
    (whose timer, due first, passes the lot)."""
    ctx.require_role("broker", "operator")
    lot = visible_lot(state, ctx, cmd.serial)
    own_party(state, ctx, lot.seller)
    if lot.mechanism != "reverse":
        raise Reject("wrong_mechanism", f"lot {lot.serial} is not a reverse tender")
    if lot.status != "choosing":
        raise Reject("bad_status", f"lot {lot.serial} is {lot.status}, not waiting for a choice")
    offer = lot.live.get(cmd.paddle)
    if offer is None:
        raise Reject("no_live_bid", f"paddle {cmd.paddle} has no offer on lot {lot.serial}")
    if offer.amount > ceiling(lot):
        raise Reject("not_acceptable", f"paddle {cmd.paddle}'s offer is above the buyer's ceiling")
    award(state, ctx, lot, paddle=offer.paddle, buyer=lot.seller, seller=offer.party,
          hammer=offer.amount, how="auction", tie_break="none")


def ceiling(lot: Lot) -> int:
    """A reverse tender's highest acceptable offer: the secret reserve, else the budget."""
    return lot.reserve or lot.terms.starting_bid


# --------------------------------------------------------------------------
# negotiation after a pass
# --------------------------------------------------------------------------

def _negotiating(lot: Lot, now: int) -> None:
    if lot.mechanism in ("reverse", "bid_ask"):
        raise Reject("wrong_mechanism", f"a {lot.mechanism} lot has no negotiation window")
    if lot.status != "passed" or not lot.negotiation_ends or now >= lot.negotiation_ends:
        raise Reject("not_in_negotiation", f"lot {lot.serial} is {lot.status} and not in "
                                           f"its negotiation window")


def _offer_audience(state: State, lot: Lot, party: int) -> tuple[str, ...]:
    return private(state.parties[party].broker, state.parties[lot.seller].broker)


def _threshold(lot: Lot) -> int:
    """An offer at or above this sells at once: the (lowered) reserve, at least the starting bid."""
    return max(lot.reserve, lot.terms.starting_bid, 1)


@handles(MakeOffer)
def make_offer(state: State, ctx: Ctx, cmd: MakeOffer) -> None:
    ctx.require_role("broker", "operator")
    lot = visible_lot(state, ctx, cmd.serial)
    positive(cmd.amount, "offer")
    party = bidder(state, ctx, lot, cmd.paddle)
    _negotiating(lot, ctx.ts)
    check_credit(state, lot, party, total_due(lot, cmd.amount))
    if cmd.amount >= _threshold(lot):
        award(state, ctx, lot, paddle=cmd.paddle, buyer=party, seller=lot.seller,
              hammer=cmd.amount, how="negotiated")
        return
    lot.offers.pop(cmd.paddle, None)
    lot.offers[cmd.paddle] = Offer(seq=ctx.seq, paddle=cmd.paddle, party=party, amount=cmd.amount)
    hold(state, ctx, lot, party, total_due(lot, cmd.amount))
    ctx.emit(OfferMade(to=_offer_audience(state, lot, party), serial=lot.serial,
                       session=lot.session, paddle=cmd.paddle, amount=cmd.amount))


def _drop_offer(state: State, ctx: Ctx, lot: Lot, offer: Offer, reason: str) -> None:
    del lot.offers[offer.paddle]
    hold(state, ctx, lot, offer.party, 0)
    ctx.emit(OfferWithdrawn(to=_offer_audience(state, lot, offer.party), serial=lot.serial,
                            session=lot.session, paddle=offer.paddle, reason=reason))


def _get_offer(lot: Lot, paddle: int) -> Offer:
    offer = lot.offers.get(paddle)
    if offer is None:
        raise Reject("no_offer", f"paddle {paddle} has no offer on lot {lot.serial}")
    return offer


@handles(WithdrawOffer)
def withdraw_offer(state: State, ctx: Ctx, cmd: WithdrawOffer) -> None:
    ctx.require_role("broker", "operator")
    lot = visible_lot(state, ctx, cmd.serial)
    bidder(state, ctx, lot, cmd.paddle)
    _negotiating(lot, ctx.ts)
    _drop_offer(state, ctx, lot, _get_offer(lot, cmd.paddle), "withdrawn")


def _session_negotiates(state: State, ctx: Ctx, lot: Lot) -> None:
    """Since rules 4 the seller's side of a negotiation ends with the session,
    as the bidders' does (`bidder`) and `RecordNegotiatedSale`: a closed
    session makes no new sale (a re-award settles one it made)."""
    if ctx.rules >= 4 and not state.sessions[lot.session].open:
        raise Reject("session_closed", f"session {lot.session!r} is closed: lot {lot.serial} "
                                       f"is no longer negotiated")


@handles(AnswerOffer)
def answer_offer(state: State, ctx: Ctx, cmd: AnswerOffer) -> None:
    ctx.require_role("broker", "operator")
    lot = visible_lot(state, ctx, cmd.serial)
    own_party(state, ctx, lot.seller)
    _session_negotiates(state, ctx, lot)
    _negotiating(lot, ctx.ts)
    offer = _get_offer(lot, cmd.paddle)
    if cmd.action == "accept":
        award(state, ctx, lot, paddle=offer.paddle, buyer=offer.party, seller=lot.seller,
              hammer=offer.amount, how="negotiated")
    elif cmd.action == "decline":
        _drop_offer(state, ctx, lot, offer, "declined")
    else:
        positive(cmd.amount, "counter")
        if cmd.amount <= offer.amount:
            raise Reject("bad_field", f"a counter must be above the offer of {offer.amount}")
        offer.counter = cmd.amount
        ctx.emit(OfferAnswered(to=_offer_audience(state, lot, offer.party), serial=lot.serial,
                               session=lot.session, paddle=offer.paddle, action="counter",
                               amount=cmd.amount))


@handles(AcceptCounter)
def accept_counter(state: State, ctx: Ctx, cmd: AcceptCounter) -> None:
    ctx.require_role("broker", "operator")
    lot = visible_lot(state, ctx, cmd.serial)
    party = bidder(state, ctx, lot, cmd.paddle)
    _negotiating(lot, ctx.ts)
    offer = _get_offer(lot, cmd.paddle)
    if not offer.counter:
        raise Reject("no_counter", f"the seller has not countered paddle {cmd.paddle}'s offer")
    check_credit(state, lot, party, total_due(lot, offer.counter))
    award(state, ctx, lot, paddle=offer.paddle, buyer=party, seller=lot.seller,
          hammer=offer.counter, how="negotiated")


@handles(LowerReserve)
def lower_reserve(state: State, ctx: Ctx, cmd: LowerReserve) -> None:
    ctx.require_role("broker", "operator")
    lot = visible_lot(state, ctx, cmd.serial)
    own_party(state, ctx, lot.seller)
    _session_negotiates(state, ctx, lot)
    _negotiating(lot, ctx.ts)
    non_negative(cmd.reserve, "reserve")
    if cmd.reserve >= lot.reserve:
        raise Reject("not_lower", f"the new reserve must be below the current {lot.reserve}")
    lot.reserve = cmd.reserve
    ctx.emit(ReserveLowered(to=seller_audience(state, lot), serial=lot.serial,
                            session=lot.session, reserve=cmd.reserve))
    threshold = _threshold(lot)
    best = None
    for offer in lot.offers.values():
        if offer.amount >= threshold and (best is None or offer.amount > best.amount):
            best = offer
    if best is not None:
        award(state, ctx, lot, paddle=best.paddle, buyer=best.party, seller=lot.seller,
              hammer=best.amount, how="negotiated")


@handles(RecordNegotiatedSale)
def record_negotiated_sale(state: State, ctx: Ctx, cmd: RecordNegotiatedSale) -> None:
    ctx.require_role("operator")
    lot = visible_lot(state, ctx, cmd.serial)
    positive(cmd.amount, "price")
    party = bidder(state, ctx, lot, cmd.paddle)
    if lot.mechanism in ("reverse", "bid_ask"):
        raise Reject("wrong_mechanism", f"a {lot.mechanism} lot is not sold by negotiation")
    if lot.status != "passed":
        raise Reject("bad_status", f"lot {lot.serial} is {lot.status}; only a passed lot "
                                   f"is sold by negotiation")
    check_credit(state, lot, party, total_due(lot, cmd.amount))
    award(state, ctx, lot, paddle=cmd.paddle, buyer=party, seller=lot.seller,
          hammer=cmd.amount, how="negotiated")


@on_timer("lot_negotiation_end")
def _negotiation_due(state: State, ctx: Ctx, serial: str, round_: int) -> None:
    lot = state.lots.get(serial)
    if lot is None or lot.status != "passed" or lot.round != round_ or not lot.negotiation_ends:
        return
    for offer in list(lot.offers.values()):
        _drop_offer(state, ctx, lot, offer, "expired")
    lot.negotiation_ends = 0
    ctx.emit(NegotiationEnded(serial=lot.serial, session=lot.session))


@handles(RelistLot)
def relist_lot(state: State, ctx: Ctx, cmd: RelistLot) -> None:
    ctx.require_role("operator")
    lot = visible_lot(state, ctx, cmd.serial)
    if lot.status != "passed":
        raise Reject("bad_status", f"lot {lot.serial} is {lot.status}; only a passed lot is relisted")
    if cmd.reserve is not None:
        non_negative(cmd.reserve, "reserve")
    times = _schedule_times(state, lot, ctx.ts, cmd.opens_at, cmd.closes_at, cmd.hard_end)
    old_reserve = lot.reserve
    if cmd.reserve is not None:
        lot.reserve = cmd.reserve
    try:
        MECHANISMS[lot.mechanism].validate_terms(lot.terms, lot.reserve)
        MECHANISMS[lot.mechanism].on_schedule_check(state, lot)
    except Reject:
        lot.reserve = old_reserve
        raise
    for offer in list(lot.offers.values()):
        _drop_offer(state, ctx, lot, offer, "superseded")
    _reset_round(lot)
    if ctx.rules >= 3:
        lot.round += 1                    # no opening timer set before (an Ask sale's) matches
    ctx.emit(LotRelisted(serial=lot.serial, session=lot.session, opens_at=times[0],
                         closes_at=times[1], hard_end=times[2]))
    _publish_schedule(state, ctx, lot, *times)


def _reset_round(lot: Lot) -> None:
    lot.bids = 0
    lot.history = []
    lot.leader = lot.leader_party = lot.leader_max = lot.second_max = lot.price = 0
    lot.maxes = {}
    lot.live = {}
    lot.clock = lot.floor = 0
    lot.choose_by = 0
    lot.negotiation_ends = 0
    lot.offers = {}
    lot.sale = None


@handles(WithdrawLot)
def withdraw_lot(state: State, ctx: Ctx, cmd: WithdrawLot) -> None:
    ctx.require_role("broker", "operator")
    lot = visible_lot(state, ctx, cmd.serial)
    own_party(state, ctx, lot.seller)
    if lot.status not in UNSOLD:
        raise Reject("bad_status", f"lot {lot.serial} is {lot.status} and cannot be withdrawn")
    if not ctx.is_operator and lot.status not in ("draft", "vetted", "rejected", "scheduled",
                                                  "passed"):
        raise Reject("not_permitted", f"lot {lot.serial} is {lot.status}; only an operator "
                                      f"withdraws it now")
    withdraw(state, ctx, lot, cmd.reason)


def withdraw(state: State, ctx: Ctx, lot: Lot, reason: str) -> None:
    """Take an unsold lot out: drop its offers, release what it holds. O(offers)."""
    was_public = lot.status not in ("draft", "vetted", "rejected")
    for offer in list(lot.offers.values()):
        _drop_offer(state, ctx, lot, offer, "withdrawn")
    release_all(state, ctx, lot)
    lot.status = "withdrawn"
    lot.negotiation_ends = 0
    ctx.emit(LotWithdrawn(to=() if was_public else seller_audience(state, lot),
                          serial=lot.serial, session=lot.session, reason=reason))


@reacts_to(SessionClosed)
def _on_session_closed(state: State, ctx: Ctx, event: SessionClosed) -> None:
    """A closed session opens no lot: withdraw the ones scheduled but not yet
    open (releasing what they hold, a tender's ceiling among it), reason
    "session closed". Open lots end at their own close. Since rules 5 the
    offers standing on its passed lots are dropped (reason "session_closed",
    their credit released): no one may withdraw, answer or accept them any
    more. A re-award offer after a default is settlement's, not a lot offer,
    and goes on. O(lots)."""
    for lot in list(state.lots.values()):
        if lot.session != event.session:
            continue
        if lot.status == "scheduled":
            withdraw(state, ctx, lot, "session closed")
        elif lot.status == "passed" and lot.offers and ctx.rules >= 5:
            for offer in list(lot.offers.values()):
                _drop_offer(state, ctx, lot, offer, "session_closed")


@reacts_to(PartyFrozen)
def _on_party_frozen(state: State, ctx: Ctx, event: PartyFrozen) -> None:
    """A party whose credit is frozen must not win what is still being
    auctioned or negotiated: void its standing bids (a tender's offers too) on
    every open, scheduled or choosing lot, withdraw its offers on passed ones,
    and withdraw the tenders it would buy through. O(lots)."""
    _exclude_party(state, ctx, event.party, "party_frozen")


@reacts_to(CreditReviewed)
def _on_credit_reviewed(state: State, ctx: Ctx, event: CreditReviewed) -> None:
    """Since rules 3, a party whose approval is withdrawn is excluded as a
    frozen one is (reason "approval_withdrawn"): a bidder the exchange no
    longer approves must not win. O(lots)."""
    if not event.approved and ctx.rules >= 3:
        _exclude_party(state, ctx, event.party, "approval_withdrawn")


def _exclude_party(state: State, ctx: Ctx, party: int, reason: str) -> None:
    for lot in state.lots.values():
        if lot.mechanism == "reverse" and lot.seller == party \
                and lot.status in ("scheduled", "open", "choosing"):
            withdraw(state, ctx, lot, "withdrawn by the exchange")   # says no why
            continue
        if lot.status in ("open", "scheduled", "choosing"):
            MECHANISMS[lot.mechanism].void_bids(state, ctx, lot, party, reason)
        if lot.offers:
            for offer in [o for o in lot.offers.values() if o.party == party]:
                _drop_offer(state, ctx, lot, offer, reason)


# --------------------------------------------------------------------------
# invariants
# --------------------------------------------------------------------------

@invariant
def _lots_check(state: State) -> None:
    held: dict[str, dict[int, int]] = {}
    for (session, party), found in state.exposure.items():
        for key, amount in found.items.items():
            if isinstance(key, tuple) and len(key) == 2 and key[0] == "lot":
                held.setdefault(key[1], {})[party] = amount
    listed = {serial: session.id for session in state.sessions.values() for serial in session.lots}
    nothing: dict[int, int] = {}
    for serial, lot in state.lots.items():
        assert lot.serial == serial, serial
        assert lot.status in STATUSES, (serial, lot.status)
        assert listed.get(serial) == lot.session, serial
        expected = expected_holds(lot)
        actual = held.get(serial, nothing)
        if lot.status in ("sold", "settled"):
            # settlement may have released the buyer's commitment already
            for party, amount in actual.items():
                assert expected.get(party) == amount, (serial, expected, actual)
        else:
            assert actual == expected, (serial, lot.status, expected, actual)
        if lot.status in ("sold", "settled"):
            sale = lot.sale
            assert sale is not None, serial
            assert sale.total == sale.hammer + sale.premium, serial
            assert sale.net == sale.hammer - sale.commission, serial
            assert sale.hammer > 0, serial
        else:
            assert lot.sale is None, (serial, lot.status)
        if lot.status in ("open", "choosing"):
            assert lot.closes_at <= lot.hard_end, serial
            assert lot.round >= 1
        if lot.status != "passed":
            assert not lot.offers and not lot.negotiation_ends, serial
        for offer in lot.offers.values():
            assert 0 < offer.amount < _threshold(lot), (serial, offer)
            assert offer.counter == 0 or offer.counter > offer.amount, (serial, offer)
        assert lot.bids == len(lot.history), serial
        MECHANISMS[lot.mechanism].check(state, lot)

