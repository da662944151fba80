"""The continuous bid-ask book and the call auction, as engine handlers.

An operator creates an instrument in a session (`CreateInstrument`): fungible
unit licence rights ("units", any quantity) or one patent lot of mechanism
``bid_ask`` ("patent", quantity 1, sold by the lot's seller and awarded
through `exchange.lots.award` on its first trade). Brokers place orders with
their clients' paddles; the book (`exchange.book.Book`, keyed by
``(paddle, order id)``, owner = paddle) matches them in price-time priority
at the resting order's price.

Rules kept here, around the pure book:

- Credit: a resting or incoming buy commits ``price * qty`` (a patent: with
  the lot's buyer's premium) under ``("order", instrument, order id)`` in the
  party's session exposure; a market buy is checked against the cost of
  sweeping the asks. Units bought stay committed under ``("bought",
  instrument)`` until an operator records their payment
  (`RecordUnitsPayment`, through `release_bought`). A patent sale
  commits the buyer's total due through `lots.award` instead.
- Holdings: a sell needs units held and not offered already (no short
  sales); trades move units; `ConsumeUnits` uses them up. Issued units =
  held + consumed, always. A patent is one unit across its lot's books:
  since rules 4 a sale cancelled in settlement gives it back to the seller
  (`return_patent`), and the book of a relisted lot takes it from the old one.
- Self-trade prevention per instrument, on the paddle (one party per paddle
  in a session). In a call period it applies on entry: an order that would
  cross one of its own is handled by the instrument's policy there, so the
  uncross never matches a party with itself.
- Market data after each command: `DepthChanged` for each level touched,
  `QuoteChanged` when the best bid or ask changed, `IndicativePrice` during
  a call period; trades in public with paddles only, parties in private.
- A cancel or modify of an order that is not resting is refused: "order_filled"
  or "order_cancelled" while the id is among the instrument's most recent
  `GONE_MEMORY` gone orders, else "unknown_order".
"""

from __future__ import annotations

from typing import Any, Hashable

import msgspec

from exchange import credit, lots
from exchange.book import (ANY_PRICE, BUY, CANCEL_BOTH, CANCEL_NEWEST, CANCEL_OLDEST, FOK,
                           GTC, IOC, MAX_PRICE, POST_ONLY, SELL, Book, Order)
from exchange.commands import (CancelOrder, CloseInstrument, ConsumeUnits, CreateInstrument,
                               IssueUnits, MassCancel, ModifyOrder, PlaceOrder,
                               HaltTrading, RecordUnitsPayment, ResumeTrading, SetOrderLimit,
                               SetPriceRules, StartCall, Uncross)
from exchange.engine import Ctx, State, handles, on_timer, private, reacts_to, stale_when
from exchange.errors import (MAX_INT, Reject, a_time, non_negative, positive, published_reason,
                             register_reasons)
from exchange.events import (CallUncrossed, CreditChanged, CreditReviewed, DepthChanged,
                             IndicativePrice, InstrumentCreated, LotAwarded, LotPassed,
                             LotWithdrawn, OrderAccepted, OrderCancelled, OrderFilled,
                             OrderLimitSet, OrderModified, PartyFrozen, PhaseChanged,
                             PriceRulesSet, QuoteChanged, SessionClosed, TradeExecuted,
                             TradeRecorded, TradingHalted, UnitsConsumed, UnitsIssued,
                             UnitsPaymentRecorded)
from exchange.invariants import invariant
from exchange.participants import (audience, get_session, session_paddle_party,
                                   valid_currency)

register_reasons({
    "unknown_instrument": "no such instrument in this session",
    "instrument_exists": "an instrument with this id (or on this lot) exists already",
    "instrument_closed": "the instrument no longer trades",
    "lot_not_trading": "the patent lot is not open for trading",
    "wrong_phase": "the instrument's phase does not allow this",
    "instrument_halted": "trading on the instrument is halted: orders may only be cancelled",
    "wrong_kind": "the instrument's kind does not allow this",
    "duplicate_order": "the paddle has a live order with this id on the instrument",
    "unknown_order": "the paddle has no resting order with this id on the instrument",
    "order_filled": "the order has traded in full and no longer rests",
    "order_cancelled": "the order was cancelled or expired and no longer rests",
    "would_trade": "a post-only order would trade on arrival",
    "bad_tick": "the price is not a multiple of the instrument's tick",
    "price_out_of_band": "the order would buy above or sell below the instrument's price band",
    "bad_quantity": "a patent trades in a quantity of exactly 1",
    "bad_expiry": "a good-till-date order needs an expiry after now",
    "insufficient_units": "the party does not hold enough units that are not already offered",
    "seller_only": "only the lot's seller may sell a patent",
    "own_patent": "the seller of a patent cannot buy it",
    "too_many_orders": "the paddle holds as many resting orders on the instrument as it may",
})

SIDES = ("buy", "sell")
STP_MODES = {"cancel_newest": CANCEL_NEWEST, "cancel_oldest": CANCEL_OLDEST,
             "cancel_both": CANCEL_BOTH}
TIF_NAMES = {GTC: "gtc", IOC: "ioc", FOK: "fok", POST_ONLY: "gtc"}
GONE_GENERATION = 4_096
GONE_GENERATIONS = 16
GONE_MEMORY = GONE_GENERATION * GONE_GENERATIONS
"""How many gone order ids an instrument remembers at least (65,536), to say
why a cancel failed; at most `GONE_GENERATION` more."""


class GoneOrders:
    """How an instrument's recent orders left ("filled" or "cancelled"): the
    last `GONE_MEMORY` at least. A key goes into the newest of a few dicts of
    `GONE_GENERATION` keys; a full one starts the next; the oldest beyond
    `GONE_GENERATIONS` + 1 is emptied two keys a write. So no write rebuilds
    or frees a big table at once: an OrderedDict capped at 65,536 paused the
    engine 6-16 ms every ~110,000 writes rebuilding itself, and a dict that
    grows to that size pauses at each doubling (1.5, 4, 6.5, 12 ms here).
    Write O(1); read O(generations), newest first: only a refusal reads.
    An order that rests again keeps its old entry; callers look in the book
    first."""

    __slots__ = ("generations", "newest", "retiring")

    def __init__(self, items: Any = ()) -> None:
        self.newest: dict[tuple[int, int], str] = {}
        self.generations: list[dict[tuple[int, int], str]] = [self.newest]  # oldest first
        self.retiring: list[dict[tuple[int, int], str]] = []
        for key, how in items:
            self.put(key, how)

    def put(self, key: tuple[int, int], how: str) -> None:
        """Remember that ``key`` left ``how``. O(1)."""
        newest = self.newest
        newest[key] = how
        if len(newest) >= GONE_GENERATION or self.retiring:
            self.turn()

    def turn(self) -> None:
        """After a write: empty two keys of the retiring generation; start a
        new generation if the newest is full, retiring the oldest beyond the
        limit. O(1)."""
        retiring = self.retiring
        if retiring:
            old = retiring[-1]
            for _ in range(2):
                if not old:
                    break
                old.popitem()
            if not old:
                retiring.pop()
        if len(self.newest) >= GONE_GENERATION:
            self.newest = {}
            generations = self.generations
            generations.append(self.newest)
            if len(generations) > GONE_GENERATIONS + 1:
                retiring.append(generations.pop(0))

    def get(self, key: tuple[int, int]) -> str | None:
        """Return how ``key`` left the last time, if it is remembered."""
        for generation in reversed(self.generations):
            how = generation.get(key)
            if how is not None:
                return how
        return None

    def check(self) -> None:
        """Assert the shape: generations within bounds, the newest last."""
        assert self.generations and self.generations[-1] is self.newest
        assert len(self.generations) <= GONE_GENERATIONS + 1, len(self.generations)
        for generation in self.generations:
            assert len(generation) <= GONE_GENERATION, len(generation)
            assert set(generation.values()) <= {"filled", "cancelled"}
        assert len(self.retiring) <= 1, len(self.retiring)


class Instrument(msgspec.Struct, kw_only=True):
    """A book and what goes with it, in ``state.books[instrument]``."""

    id: str
    session: str
    kind: str
    lot: str
    currency: str
    stp: str
    phase: str                   # "continuous" | "call" | "halted" | "closed"
    reference: int = 0
    last_price: int = 0
    trades: int = 0
    issued: int = 0
    consumed: int = 0
    book: Any = None             # exchange.book.Book
    holdings: dict = {}          # party -> units held
    offered: dict = {}           # party -> units in resting sells
    expiring: dict = {}          # book seq of a GTD order -> its key
    # key -> "filled" | "cancelled" of orders no longer resting (see `_Run.forget`)
    gone: GoneOrders = msgspec.field(default_factory=GoneOrders)
    quote: tuple = (0, 0, 0, 0)
    # the last IndicativePrice published, kept across phases: a new call
    # period that does not cross publishes zeros if the last said otherwise
    indicative: tuple = (0, 0, 0)
    halt_reason: str = ""        # why trading is halted, while ``phase`` is "halted"
    halted_from: str = ""        # the phase the halt interrupted ("continuous" | "call")
    max_orders: int = 0          # resting orders a paddle may hold (0: no limit)
    tick: int = 1                # limit prices are multiples of it
    band_bp: int = 0             # how far from the reference an order may buy or sell
    open_orders: dict = {}       # paddle -> its resting orders, kept when max_orders
    providers: dict = {}         # paddle -> its `liquidity.Provider`, if it is one
    # a sale of its patent was cancelled in settlement under rules 3, which
    # left the unit with the buyer: the one-unit check skips its lot
    unit_kept: bool = False


# --------------------------------------------------------------------------
# queries (read-only; any moment)
# --------------------------------------------------------------------------

def best_bid(state: State, instrument: str) -> int | None:
    """Return the instrument's best bid, None if there is none. O(1)."""
    return state.books[instrument].book.best_bid()


def best_ask(state: State, instrument: str) -> int | None:
    """Return the instrument's best ask, None if there is none. O(1)."""
    return state.books[instrument].book.best_ask()


def qty_at(state: State, instrument: str, side: str, price: int) -> int:
    """Return the quantity resting on ``side`` ("buy"/"sell") at ``price``. O(1)."""
    return state.books[instrument].book.qty_at(SIDES.index(side), price)


def depth(state: State, instrument: str, side: str, levels: int | None = None) -> list[tuple[int, int, int]]:
    """Return ``(price, qty, orders)`` for the best ``levels`` of a side. O(levels)."""
    return state.books[instrument].book.depth(SIDES.index(side), levels)


def holding(state: State, instrument: str, party: int) -> int:
    """Return the units ``party`` holds in ``instrument``. O(1)."""
    return state.books[instrument].holdings.get(party, 0)


def release_bought(state: State, ctx: Ctx, session: str, party: int, instrument: str,
                   amount: int) -> None:
    """Release ``amount`` of what ``party`` owes for units bought on
    ``instrument`` (settlement's entry point). Never refuses."""
    key = ("bought", instrument)
    left = credit.committed(state, session, party, key) - amount
    credit.commit(state, session, party, key, left if left > 0 else 0)
    _credit_changed(state, ctx, session, party)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _instrument(state: State, session: str, instrument: str) -> Instrument:
    inst = state.books.get(instrument)
    if inst is None or inst.session != session:
        raise Reject("unknown_instrument", f"no instrument {instrument!r} in session {session!r}")
    return inst


def _require_trading(state: State, inst: Instrument) -> None:
    if inst.phase == "closed":
        raise Reject("instrument_closed", f"instrument {inst.id!r} is closed")
    if inst.phase == "halted":
        raise Reject("instrument_halted", f"trading on {inst.id!r} is halted "
                                          f"({inst.halt_reason}); orders may only be cancelled")
    if inst.kind == "patent":
        status = state.lots[inst.lot].status
        if status != "open":
            raise Reject("lot_not_trading", f"lot {inst.lot} is {status}, not open")


def _paddle_owner(state: State, ctx: Ctx, session_id: str, paddle: int) -> int:
    """Return the party behind ``paddle`` if the sender may act for it (its broker
    or an operator); unlike `paddle_party`, a frozen party may still cancel. O(1)."""
    session = state.sessions.get(session_id)
    if session is None:
        get_session(state, session_id)           # refuses
    party_id = session.paddles.get(paddle)
    role = ctx.role
    if role == "operator" or role == "system":
        if party_id is None:
            raise Reject("unknown_paddle", f"no paddle {paddle} in session {session_id!r}")
    elif party_id is None or state.parties[party_id].broker != ctx.actor:
        # to a broker another's paddle and no paddle look the same
        raise Reject("not_your_paddle", f"paddle {paddle} is not one of {ctx.actor!r}'s")
    return party_id


def _live_order(inst: Instrument, key: tuple[int, int]) -> Order:
    order = inst.book.orders.get(key)
    if order is None:
        raise _not_resting(inst, key)
    return order


def _not_resting(inst: Instrument, key: tuple[int, int]) -> Reject:
    """Return the refusal for an order ``key`` that does not rest, saying why.
    (Returned, not raised: the caller raises it, one frame less to unwind.)"""
    paddle, oid = key
    gone = inst.gone.get(key)
    if gone == "filled":
        return Reject("order_filled", f"order {oid} of paddle {paddle} has traded in full")
    if gone == "cancelled":
        return Reject("order_cancelled", f"order {oid} of paddle {paddle} was cancelled")
    return Reject("unknown_order", f"paddle {paddle} has no resting order {oid} on {inst.id!r}")


def _buy_commitment(state: State, inst: Instrument, price: int, qty: int) -> int:
    if inst.kind == "patent":
        return lots.total_due(state.lots[inst.lot], price) * qty
    return price * qty


class _Run:
    """What one command changes on one instrument: levels touched (for depth)
    and the exposures of parties whose commitments changed (for credit), in
    the order first touched. What every step needs (the emitter, session and
    instrument ids, the paddle map) is bound once here, so the per-order work
    is local loads and dict operations, O(1) per order touched."""

    __slots__ = ("state", "ctx", "emit", "inst", "session", "id", "parties", "touched",
                 "credit", "sold", "counted_out", "providers_touched")

    def __init__(self, state: State, ctx: Ctx, inst: Instrument) -> None:
        self.state = state
        self.ctx = ctx
        self.emit = ctx.out.append           # what `ctx.emit` does, without the call
        self.inst = inst
        self.session = inst.session
        self.id = inst.id
        self.parties = state.sessions[inst.session].paddles
        self.touched: dict[tuple[int, int], None] = {}
        self.credit: dict[int, credit.Exposure] = {}  # party -> its exposure in the session
        self.sold: tuple | None = None
        # orders taken off `open_orders` in this run: an uncross reports a
        # resting order in each of its fills, with what it has left at the end
        self.counted_out: dict[tuple[int, int], None] | None = None
        # paddles of liquidity providers whose orders this run changed
        self.providers_touched: dict[int, None] | None = None

    def to(self, party: int) -> tuple[str, ...]:
        return audience(self.state, party)

    # ---- bookkeeping of orders that rest, change or leave

    def rested(self, order: Order) -> None:
        """Account for ``order`` resting with its current quantity."""
        inst = self.inst
        side = order.side
        self.touched[(side, order.price)] = None
        key = order.key
        party = self.parties[key[0]]          # (callers took ``key`` out of ``gone`` already)
        if side == BUY:
            self.credit[party] = credit.commit(
                self.state, self.session, party, ("order", self.id, key[1]),
                order.price * order.qty if inst.kind != "patent"
                else _buy_commitment(self.state, inst, order.price, order.qty))
        else:
            offered = inst.offered
            offered[party] = offered.get(party, 0) + order.qty
        if order.expires:
            inst.expiring[order.seq] = key
            self.state.schedule(order.expires, "book_expire", inst.id, order.seq)
        if inst.max_orders:
            counts = inst.open_orders
            counts[key[0]] = counts.get(key[0], 0) + 1
            if self.counted_out:
                self.counted_out.pop(key, None)     # re-placed by a modify
        if inst.providers:
            provider = inst.providers.get(key[0])
            if provider is not None:
                provider.orders[key[1]] = order      # `liquidity.note_order`, inlined
                self.provider_touched(key[0])

    def unrest(self, order: Order, qty: int) -> None:
        """Undo `rested` for ``qty`` units of an order that left or shrank;
        ``order.qty`` is what stays."""
        side = order.side
        self.touched[(side, order.price)] = None
        key = order.key
        party = self.parties[key[0]]
        if side == BUY:
            left = order.qty
            inst = self.inst
            self.credit[party] = credit.commit(
                self.state, self.session, party, ("order", self.id, key[1]),
                0 if not left else order.price * left if inst.kind != "patent"
                else _buy_commitment(self.state, inst, order.price, left))
        else:
            offered = self.inst.offered
            left = offered[party] - qty
            if left:
                offered[party] = left
            else:
                del offered[party]
        if self.inst.providers and key[0] in self.inst.providers:
            self.provider_touched(key[0])
        if not order.qty and order.expires:           # it left the book: no expiry due
            self.inst.expiring.pop(order.seq, None)
        if not order.qty and self.inst.max_orders:    # it left the book
            out = self.counted_out
            if out is None:
                out = self.counted_out = {}
            if key not in out:
                out[key] = None
                counts = self.inst.open_orders
                paddle = key[0]
                if counts[paddle] > 1:
                    counts[paddle] -= 1
                else:
                    del counts[paddle]

    def provider_touched(self, paddle: int) -> None:
        touched = self.providers_touched
        if touched is None:
            touched = self.providers_touched = {}
        touched[paddle] = None

    def forget(self, key: tuple[int, int], how: str) -> None:
        """Remember how ``key`` left (`GoneOrders.put`, inlined). O(1)."""
        gone = self.inst.gone
        newest = gone.newest
        newest[key] = how
        if len(newest) >= GONE_GENERATION or gone.retiring:
            gone.turn()

    def cancelled(self, order: Order, qty: int, reason: str) -> None:
        """Report a resting order the book has already removed."""
        self.unrest(order, qty)
        key = order.key
        self.forget(key, "cancelled")
        paddle, oid = key
        party = self.parties[paddle]
        self.emit(OrderCancelled(to=audience(self.state, party), session=self.session,
                                 instrument=self.id, paddle=paddle, party=party, order=oid,
                                 qty=qty, reason=reason))

    def cancel(self, key: Hashable, reason: str) -> None:
        """Remove a resting order and report it."""
        book = self.inst.book
        order = book.orders[key]
        self.cancelled(order, book.cancel(key), reason)

    def cancel_incoming(self, paddle: int, oid: int, qty: int, reason: str) -> None:
        """Report the part of an incoming order that will not rest."""
        party = self.parties[paddle]
        self.emit(OrderCancelled(to=audience(self.state, party), session=self.session,
                                 instrument=self.id, paddle=paddle, party=party, order=oid,
                                 qty=qty, reason=reason))

    # ---- trades

    def trade(self, buy_key: tuple[int, int], sell_key: tuple[int, int], qty: int, price: int,
              aggressor: str, buy_leaves: int, sell_leaves: int, resting_buy: Order | None,
              resting_sell: Order | None) -> None:
        """Record one trade: public print, both fills, holdings, credit. A
        ``resting_*`` order is one that was in the book (its ``qty`` is what it
        has left now); the other side is the incoming order. O(1)."""
        state, inst, emit = self.state, self.inst, self.emit
        session, instrument = self.session, self.id
        inst.trades += 1
        trade = inst.trades
        inst.last_price = price
        buy_paddle, buy_oid = buy_key
        sell_paddle, sell_oid = sell_key
        parties = self.parties
        buyer = parties[buy_paddle]
        seller = parties[sell_paddle]
        currency = inst.currency
        emit(TradeExecuted(session=session, instrument=instrument, trade=trade, price=price,
                           qty=qty, currency=currency, buy_paddle=buy_paddle,
                           sell_paddle=sell_paddle, aggressor=aggressor))
        if not aggressor:
            buy_role = sell_role = "auction"
        elif aggressor == "buy":
            buy_role, sell_role = "taker", "maker"
        else:
            buy_role, sell_role = "maker", "taker"
        emit(OrderFilled(to=audience(state, buyer), session=session, instrument=instrument,
                         paddle=buy_paddle, party=buyer, order=buy_oid, trade=trade,
                         side="buy", price=price, qty=qty, leaves=buy_leaves, role=buy_role,
                         currency=currency))
        emit(OrderFilled(to=audience(state, seller), session=session, instrument=instrument,
                         paddle=sell_paddle, party=seller, order=sell_oid, trade=trade,
                         side="sell", price=price, qty=qty, leaves=sell_leaves,
                         role=sell_role, currency=currency))
        emit(TradeRecorded(to=_OPERATORS_ONLY, session=session, instrument=instrument,
                           trade=trade, price=price, qty=qty, currency=currency, buyer=buyer,
                           seller=seller, buy_paddle=buy_paddle, sell_paddle=sell_paddle,
                           buy_order=buy_oid, sell_order=sell_oid))
        holdings = inst.holdings
        holdings[buyer] = holdings.get(buyer, 0) + qty
        left = holdings[seller] - qty
        if left:
            holdings[seller] = left
        else:
            del holdings[seller]
        if resting_buy is not None:
            self.unrest(resting_buy, qty)
            if not resting_buy.qty:
                self.forget(buy_key, "filled")
        if resting_sell is not None:
            self.unrest(resting_sell, qty)
            if not resting_sell.qty:
                self.forget(sell_key, "filled")
        if inst.kind == "patent":
            self.sold = (buy_paddle, buyer, seller, price)
        else:
            self.credit[buyer] = credit.add(state, session, buyer, ("bought", instrument),
                                            price * qty)

    def matched(self, key: tuple[int, int], side: int, qty: int, tif: int,
                resting: Order | None) -> None:
        """Report the outcome of `Book.place`/`Book.modify` for the incoming
        order ``key`` of ``qty`` open: ``resting`` is what they returned, the
        fills and removals are in the book's outboxes. O(fills + removals)."""
        book = self.inst.book
        left = qty
        fills = book.fills
        if fills:
            trade = self.trade
            if side == BUY:
                for maker, q in fills:
                    left -= q
                    trade(key, maker.key, q, maker.price, "buy", left, maker.qty, None, maker)
            else:
                for maker, q in fills:
                    left -= q
                    trade(maker.key, key, q, maker.price, "sell", maker.qty, left, maker, None)
        for order, q in book.cancelled:
            self.cancelled(order, q, "self_trade")
        if resting is not None:
            self.rested(resting)
            left -= resting.qty
        elif left:
            self.forget(key, "cancelled")
        else:
            self.forget(key, "filled")
        if left:
            reason = ("self_trade" if book.stp_stopped else
                      "fok" if tif == FOK else "ioc")
            paddle, oid = key
            self.cancel_incoming(paddle, oid, left, reason)

    # ---- the end of every command

    def publish(self) -> None:
        """Emit depth for touched levels, the quote or indicative price if it
        changed (while halted, that of the phase the halt interrupted), the
        credit of parties whose exposure changed; sell a patent.
        O(levels touched + parties changed)."""
        state, inst, emit = self.state, self.inst, self.emit
        if self.sold is not None:
            self._sell_patent()
        session, instrument = self.session, self.id
        book = inst.book
        bids, asks = book.levels
        if self.touched:
            for side, price in self.touched:
                level = bids.get(price) if side == BUY else asks.get(-price)
                if level is None:
                    emit(DepthChanged(session=session, instrument=instrument, side=SIDES[side],
                                      price=price, qty=0, orders=0))
                else:
                    emit(DepthChanged(session=session, instrument=instrument, side=SIDES[side],
                                      price=price, qty=level.qty, orders=level.n))
        phase = inst.phase
        if phase == "halted":                    # the market data of the phase interrupted
            phase = inst.halted_from
        if phase == "call":
            indicative = book.equilibrium(_reference(inst), *_call_prices(inst, self.ctx))
            if indicative != inst.indicative:
                inst.indicative = indicative
                emit(IndicativePrice(session=session, instrument=instrument,
                                     price=indicative[0], volume=indicative[1],
                                     imbalance=indicative[2]))
        else:
            bid_keys, ask_keys = book.keys       # best last; an ask's key is -price
            bid = bid_keys[-1] if bid_keys else 0
            ask = ask_keys[-1] if ask_keys else 0
            quote = (bid, bids[bid].qty if bid_keys else 0,
                     -ask, asks[ask].qty if ask_keys else 0)
            if quote != inst.quote:
                inst.quote = quote
                emit(QuoteChanged(session=session, instrument=instrument, bid=quote[0],
                                  bid_qty=quote[1], ask=quote[2], ask_qty=quote[3]))
        if self.credit:
            parties = state.parties
            for party, found in self.credit.items():
                emit(CreditChanged(to=audience(state, party), session=session, party=party,
                                   exposure=found.total,
                                   credit_limit=parties[party].credit_limit))
        if inst.providers:
            from exchange import liquidity
            liquidity.refresh(state, self.ctx, inst, self.providers_touched or {})

    def _sell_patent(self) -> None:
        """The patent traded: award the lot, cancel every other order, close."""
        paddle, buyer, seller, price = self.sold
        self.sold = None
        lot = self.state.lots[self.inst.lot]
        lots.close(self.ctx, lot, "sold")
        lots.award(self.state, self.ctx, lot, paddle=paddle, buyer=buyer, seller=seller,
                   hammer=price, how="book")
        self.close("closed")

    def close(self, reason: str) -> None:
        inst = self.inst
        for key in list(inst.book.orders):
            self.cancel(key, reason)
        inst.phase = "closed"
        inst.halt_reason = inst.halted_from = ""
        self.emit(PhaseChanged(session=inst.session, instrument=inst.id, phase="closed"))


def _credit_changed(state: State, ctx: Ctx, session: str, party: int) -> None:
    ctx.emit(CreditChanged(to=audience(state, party), session=session, party=party,
                           exposure=credit.exposure(state, session, party).total,
                           credit_limit=state.parties[party].credit_limit))


_OPERATORS_ONLY = private()


def _call_prices(inst: Instrument, ctx: Ctx) -> tuple[int, int]:
    """Return the tick and the ``top`` a call period's price is chosen with
    (`Book.equilibrium`): the instrument's tick and every limit price since
    rules 3; any price under `MAX_PRICE` before."""
    if ctx.rules >= 3:
        return inst.tick, ANY_PRICE
    return 1, MAX_PRICE


def _reference(inst: Instrument) -> int:
    return inst.reference or inst.last_price


def _band(inst: Instrument) -> tuple[int, int] | None:
    """Return the lowest price a sell and the highest a buy may have, or None
    without a band (or a reference to centre it on). O(1)."""
    centre = inst.last_price or inst.reference
    if not centre:
        return None
    width = centre * inst.band_bp // 10_000
    return max(1, centre - width), centre + width


def _check_price_rules(inst: Instrument, side: int, price: int) -> None:
    """Refuse a limit price off the tick or beyond the band on its trading side."""
    tick = inst.tick
    if tick != 1 and price % tick:
        raise Reject("bad_tick", f"price {price} is not a multiple of {inst.id!r}'s tick "
                                 f"of {tick}")
    if inst.band_bp:
        band = _band(inst)
        if band is None:
            return
        low, high = band
        if side == BUY and price > high:
            raise Reject("price_out_of_band", f"a buy at {price} is above {inst.id!r}'s band: "
                                              f"at most {high} ({_percent(inst.band_bp)} over "
                                              f"the reference {inst.last_price or inst.reference})")
        if side == SELL and price < low:
            raise Reject("price_out_of_band", f"a sell at {price} is below {inst.id!r}'s band: "
                                              f"at least {low} ({_percent(inst.band_bp)} under "
                                              f"the reference {inst.last_price or inst.reference})")


def _percent(bp: int) -> str:
    return f"{bp // 100}.{bp % 100:02d} %"


def _own_crossing(book: Book, side: int, price: int, paddle: int) -> list[Order]:
    """Return the paddle's own orders on the other side that ``price`` crosses.
    O(orders at crossing prices)."""
    opposite = 1 - side
    limit = -price if side == BUY else price
    levels = book.levels[opposite]
    found = []
    for k in reversed(book.keys[opposite]):
        if k < limit:
            break
        for order in levels[k].queue:
            if order.qty and order.owner == paddle:
                found.append(order)
    return found


def _enter_call(run: _Run, key: tuple[int, int], side: int, price: int, qty: int, tif: int,
                expires: int) -> None:
    """Rest an order in a call period, applying self-trade prevention on entry."""
    inst = run.inst
    paddle, oid = key
    own = _own_crossing(inst.book, side, price, paddle)
    if own:
        mode = STP_MODES[inst.stp]
        if mode != CANCEL_NEWEST:
            for order in own:
                run.cancel(order.key, "self_trade")
        if mode != CANCEL_OLDEST:
            if run.ctx.rules >= 3:
                run.forget(key, "cancelled")
            run.cancel_incoming(paddle, oid, qty, "self_trade")
            return
    run.rested(inst.book.add(key, side, price, qty, paddle, tif, expires))


# --------------------------------------------------------------------------
# handlers
# --------------------------------------------------------------------------

@handles(CreateInstrument)
def create_instrument(state: State, ctx: Ctx, cmd: CreateInstrument) -> None:
    ctx.require_role("operator")
    session = get_session(state, cmd.session)
    if not session.open:
        raise Reject("session_closed", f"session {cmd.session!r} is closed")
    if not cmd.instrument:
        raise Reject("bad_field", "an instrument needs an id")
    if cmd.instrument in state.books:
        raise Reject("instrument_exists", f"instrument {cmd.instrument!r} exists already")
    non_negative(cmd.reference, "reference price")
    non_negative(cmd.max_orders, "max_orders")
    holdings: dict[int, int] = {}
    issued = 0
    if cmd.kind == "patent":
        lot = lots.get_lot(state, cmd.lot)
        if lot.session != cmd.session:
            raise Reject("unknown_lot", f"lot {cmd.lot} is not in session {cmd.session!r}")
        if lot.mechanism != "bid_ask":
            raise Reject("wrong_mechanism", f"lot {cmd.lot} is sold by {lot.mechanism}, not bid_ask")
        if lot.status in ("sold", "settled", "withdrawn", "rejected"):
            raise Reject("bad_status", f"lot {cmd.lot} is {lot.status}")
        if not lot.opens_at:          # its book would name it on the feed
            raise Reject("bad_status", f"lot {cmd.lot} is not published yet: schedule it first")
        for other in state.books.values():     # a closed one (the lot passed, was relisted) is done
            if other.lot == cmd.lot and other.phase != "closed":
                raise Reject("instrument_exists", f"lot {cmd.lot} trades as {other.id!r} already")
        if cmd.currency and cmd.currency != lot.currency:
            raise Reject("wrong_currency", f"lot {cmd.lot} is in {lot.currency}")
        currency = lot.currency
        if ctx.rules >= 4:                   # the patent's one unit moves from its old books
            for other in state.books.values():
                if other.lot == cmd.lot and other.kind == "patent" and other.holdings:
                    other.issued -= sum(other.holdings.values())
                    other.holdings = {}
        holdings[lot.seller] = 1
        issued = 1
    else:
        if cmd.lot:
            raise Reject("bad_field", "a units instrument names no lot")
        currency = valid_currency(cmd.currency or session.currency, ctx.rules)
    inst = Instrument(id=cmd.instrument, session=cmd.session, kind=cmd.kind, lot=cmd.lot,
                      currency=currency, stp=cmd.stp, phase="call" if cmd.call else "continuous",
                      reference=cmd.reference, issued=issued, book=Book(), holdings=holdings,
                      max_orders=cmd.max_orders)
    state.books[inst.id] = inst
    ctx.emit(InstrumentCreated(session=inst.session, instrument=inst.id, kind=inst.kind,
                               lot=inst.lot, currency=currency, stp=inst.stp, phase=inst.phase,
                               reference=inst.reference))
    if inst.max_orders:                      # public as every later change of it
        ctx.emit(OrderLimitSet(session=inst.session, instrument=inst.id,
                               max_orders=inst.max_orders))


@handles(IssueUnits)
def issue_units(state: State, ctx: Ctx, cmd: IssueUnits) -> None:
    ctx.require_role("operator")
    inst = _instrument(state, cmd.session, cmd.instrument)
    if inst.kind != "units":
        raise Reject("wrong_kind", "only a units instrument issues units")
    if inst.phase == "closed":
        raise Reject("instrument_closed", f"instrument {inst.id!r} is closed")
    party = _paddle_owner(state, ctx, cmd.session, cmd.paddle)
    positive(cmd.qty, "quantity")
    held = inst.holdings.get(party, 0) + cmd.qty
    if held > MAX_INT:
        raise Reject("out_of_range", f"a holding of {held} units is above {MAX_INT}")
    inst.holdings[party] = held
    inst.issued += cmd.qty
    ctx.emit(UnitsIssued(to=audience(state, party), session=inst.session, instrument=inst.id,
                         paddle=cmd.paddle, party=party, qty=cmd.qty, holding=held))


@handles(ConsumeUnits)
def consume_units(state: State, ctx: Ctx, cmd: ConsumeUnits) -> None:
    ctx.require_role("broker", "operator")
    inst = _instrument(state, cmd.session, cmd.instrument)
    if inst.kind != "units":
        raise Reject("wrong_kind", "only unit licence rights are consumed")
    party = _paddle_owner(state, ctx, cmd.session, cmd.paddle)
    positive(cmd.qty, "quantity")
    free = inst.holdings.get(party, 0) - inst.offered.get(party, 0)
    if cmd.qty > free:
        raise Reject("insufficient_units", f"paddle {cmd.paddle} holds {free} units not offered "
                                           f"for sale, fewer than {cmd.qty}")
    left = inst.holdings[party] - cmd.qty
    if left:
        inst.holdings[party] = left
    else:
        del inst.holdings[party]
    inst.consumed += cmd.qty
    ctx.emit(UnitsConsumed(to=audience(state, party), session=inst.session, instrument=inst.id,
                           paddle=cmd.paddle, party=party, qty=cmd.qty, holding=left))


@handles(RecordUnitsPayment)
def record_units_payment(state: State, ctx: Ctx, cmd: RecordUnitsPayment) -> None:
    """Lower what the party owes for units bought (and its exposure) by a
    payment received. O(1)."""
    ctx.require_role("operator")
    inst = _instrument(state, cmd.session, cmd.instrument)
    if inst.kind != "units":
        raise Reject("wrong_kind", "a patent bought on its book settles through its lot")
    party = _paddle_owner(state, ctx, cmd.session, cmd.paddle)
    positive(cmd.amount, "amount")
    owed = credit.committed(state, cmd.session, party, ("bought", inst.id))
    if cmd.amount > owed:
        raise Reject("overpayment", f"paddle {cmd.paddle} owes {owed} for units bought on "
                                    f"{inst.id!r}, less than {cmd.amount}")
    ctx.emit(UnitsPaymentRecorded(to=audience(state, party), session=cmd.session,
                                  instrument=inst.id, paddle=cmd.paddle, party=party,
                                  amount=cmd.amount, outstanding=owed - cmd.amount,
                                  reference=cmd.reference[:200]))
    release_bought(state, ctx, cmd.session, party, inst.id, cmd.amount)


def _check_buy_credit(state: State, inst: Instrument, party: int, oid: int, amount: int) -> None:
    credit.check(state, inst.session, party, ("order", inst.id, oid), amount, inst.currency)


@handles(PlaceOrder)
def place_order(state: State, ctx: Ctx, cmd: PlaceOrder) -> None:
    """Validate, then match and rest. Validation is O(1) (a market buy: O(ask
    levels) for its cost); the match O(fills + levels emptied). The common
    checks run inline and call the shared validator only to refuse."""
    role = ctx.role
    if role != "broker" and role != "operator":
        ctx.require_role("broker", "operator")
    session_id = cmd.session
    inst = state.books.get(cmd.instrument)
    if inst is None or inst.session != session_id:
        _instrument(state, session_id, cmd.instrument)      # refuses
    kind = inst.kind
    phase = inst.phase
    if phase == "closed" or phase == "halted" or kind == "patent":
        _require_trading(state, inst)
    session = state.sessions[session_id]
    if not session.open:
        raise Reject("session_closed", f"session {session_id!r} is closed")
    paddle = cmd.paddle
    party = session_paddle_party(state, ctx, session, paddle).id
    qty = cmd.qty
    if qty <= 0 or qty > MAX_INT:
        positive(qty, "quantity")
    oid = cmd.order
    if oid < 0 or oid > MAX_INT:
        non_negative(oid, "order id")
    side = BUY if cmd.side == "buy" else SELL
    tif = cmd.tif
    if tif == "market":
        if cmd.price:
            raise Reject("bad_field", "a market order has no price")
        price = MAX_PRICE if side == BUY else 0
        if inst.band_bp:                       # it trades only within the band
            band = _band(inst)
            if band is not None:
                price = band[1] if side == BUY else band[0]
        book_tif = IOC
    else:
        price = cmd.price
        if price <= 0 or price > MAX_INT:
            positive(price, "price")
        if inst.tick != 1 or inst.band_bp:
            _check_price_rules(inst, side, price)
        book_tif = IOC if tif == "ioc" else FOK if tif == "fok" else GTC
    post_only = cmd.post_only
    if post_only:
        if tif not in ("gtc", "gtd"):
            raise Reject("bad_field", "only a gtc or gtd order can be post-only")
        book_tif = POST_ONLY
    expires = 0
    if tif == "gtd":
        expires = a_time(cmd.expires, "expires")
        if expires <= ctx.ts:
            raise Reject("bad_expiry", f"expiry {expires} is not after now ({ctx.ts})")
    elif cmd.expires:
        raise Reject("bad_field", "only a gtd order has an expiry")
    if kind == "patent":
        if qty != 1:
            raise Reject("bad_quantity", f"a patent trades in a quantity of 1, not {qty}")
        seller = state.lots[inst.lot].seller
        if side == SELL and party != seller:
            raise Reject("seller_only", f"only the seller of lot {inst.lot} may sell it")
        if side == BUY and party == seller:
            raise Reject("own_patent", f"paddle {paddle} is the seller of lot {inst.lot}")
    book = inst.book
    key = (paddle, oid)
    if key in book.orders:
        raise Reject("duplicate_order", f"paddle {paddle} has a live order {oid}")
    if phase == "call" and (tif in ("fok", "market") or post_only):
        raise Reject("wrong_phase", f"a {'post-only' if post_only else tif} order cannot "
                                    f"enter a call period")
    limit = inst.max_orders
    if (limit and inst.open_orders.get(paddle, 0) >= limit
            and (book_tif == GTC or book_tif == POST_ONLY or phase == "call")):
        held = inst.open_orders[paddle]
        if held > limit:                     # `SetOrderLimit` lowered it under what it holds
            raise Reject("too_many_orders", f"paddle {paddle} holds {held} resting orders on "
                                            f"{inst.id!r}, above its limit of {limit}")
        raise Reject("too_many_orders", f"paddle {paddle} holds {limit} resting order(s) on "
                                        f"{inst.id!r}, the most it may")
    if side == SELL:
        free = inst.holdings.get(party, 0) - inst.offered.get(party, 0)
        if qty > free:
            raise Reject("insufficient_units", f"paddle {paddle} holds {free} units not "
                                               f"offered for sale, fewer than {qty}")
    else:
        if tif == "market":
            cost = book.buy_cost(qty, price, owner=paddle, stp=STP_MODES[inst.stp])
            amount = lots.total_due(state.lots[inst.lot], cost) if kind == "patent" else cost
        else:
            amount = price * qty if kind != "patent" else _buy_commitment(state, inst, price, qty)
        credit.check(state, session_id, party, ("order", inst.id, oid), amount, inst.currency)
    if book_tif == POST_ONLY and phase == "continuous" and book.crosses(side, price):
        raise Reject("would_trade", f"a post-only {cmd.side} at {price} would trade")
    # -- validated: change things
    run = _Run(state, ctx, inst)
    run.emit(OrderAccepted(to=audience(state, party), session=inst.session, instrument=inst.id,
                           paddle=paddle, party=party, order=oid, side=cmd.side,
                           price=cmd.price, qty=qty, tif=tif, post_only=post_only,
                           expires=expires))
    if phase == "call":
        _enter_call(run, key, side, price, qty, book_tif, expires)
    else:
        run.matched(key, side, qty, book_tif,
                    book.place(key, side, price, qty, paddle, book_tif, STP_MODES[inst.stp], expires))
    run.publish()


@handles(CancelOrder)
def cancel_order(state: State, ctx: Ctx, cmd: CancelOrder) -> None:
    """Cancel a resting order. O(1) amortised (see `Book.cancel`)."""
    role = ctx.role
    if role != "broker" and role != "operator":
        ctx.require_role("broker", "operator")
    session_id = cmd.session
    inst = state.books.get(cmd.instrument)
    if inst is None or inst.session != session_id:
        _instrument(state, session_id, cmd.instrument)      # refuses
    paddle = cmd.paddle
    _paddle_owner(state, ctx, session_id, paddle)
    key = (paddle, cmd.order)
    book = inst.book
    order = book.orders.get(key)
    if order is None:
        raise _not_resting(inst, key)
    run = _Run(state, ctx, inst)
    run.cancelled(order, book.cancel(key), "requested")
    run.publish()


@handles(ModifyOrder)
def modify_order(state: State, ctx: Ctx, cmd: ModifyOrder) -> None:
    """Reduce in place (priority kept) or cancel and re-place. O(1) to
    validate; a re-place matches like `place_order`."""
    role = ctx.role
    if role != "broker" and role != "operator":
        ctx.require_role("broker", "operator")
    session_id = cmd.session
    inst = state.books.get(cmd.instrument)
    if inst is None or inst.session != session_id:
        _instrument(state, session_id, cmd.instrument)      # refuses
    if inst.phase == "closed" or inst.phase == "halted" or inst.kind == "patent":
        _require_trading(state, inst)
    paddle = cmd.paddle
    party = session_paddle_party(state, ctx, state.sessions[session_id], paddle).id
    key = (paddle, cmd.order)
    book = inst.book
    order = book.orders.get(key)
    if order is None:
        raise _not_resting(inst, key)
    price = cmd.price
    if price <= 0 or price > MAX_INT:
        positive(price, "price")
    qty = cmd.qty
    if qty <= 0 or qty > MAX_INT:
        positive(qty, "quantity")
    if inst.kind == "patent" and qty != 1:
        raise Reject("bad_quantity", f"a patent trades in a quantity of 1, not {qty}")
    keeps = price == order.price and qty <= order.qty
    side = order.side
    if price != order.price and (inst.tick != 1 or inst.band_bp):
        _check_price_rules(inst, side, price)
    if side == SELL:
        free = inst.holdings.get(party, 0) - inst.offered.get(party, 0) + order.qty
        if qty > free:
            raise Reject("insufficient_units", f"paddle {paddle} holds {free} units not "
                                               f"offered elsewhere, fewer than {qty}")
    else:
        amount = _buy_commitment(state, inst, price, qty)
        if ctx.rules < 3 or amount > credit.committed(state, session_id, party,
                                                      ("order", inst.id, cmd.order)):
            _check_buy_credit(state, inst, party, cmd.order, amount)   # it commits more
    if (order.tif == POST_ONLY and inst.phase == "continuous" and not keeps
            and book.crosses(side, price)):
        raise Reject("would_trade", f"post-only order {cmd.order} at {price} would trade")
    # -- validated
    run = _Run(state, ctx, inst)
    run.emit(OrderModified(to=audience(state, party), session=inst.session, instrument=inst.id,
                           paddle=paddle, party=party, order=cmd.order, price=price, qty=qty,
                           priority_kept=keeps))
    old_qty = order.qty
    if keeps:
        if qty < old_qty:
            book.reduce(key, qty)
        run.unrest(order, old_qty - qty)
    elif inst.phase == "call":
        book.cancel(key)
        run.unrest(order, old_qty)
        _enter_call(run, key, side, price, qty, order.tif, order.expires)
    else:
        resting = book.modify(key, price, qty, STP_MODES[inst.stp])  # cancels `order`, places anew
        run.unrest(order, old_qty)
        run.matched(key, side, qty, order.tif, resting)
    run.publish()


@handles(MassCancel)
def mass_cancel(state: State, ctx: Ctx, cmd: MassCancel) -> None:
    ctx.require_role("broker", "operator")
    session = get_session(state, cmd.session)
    if cmd.paddle:
        _paddle_owner(state, ctx, cmd.session, cmd.paddle)
        paddles: dict[int, None] | None = {cmd.paddle: None}
    elif cmd.broker or not ctx.is_operator:
        broker = cmd.broker or ctx.actor
        if not ctx.is_operator and broker != ctx.actor:
            raise Reject("not_permitted", f"{ctx.actor!r} may not cancel {broker!r}'s orders")
        paddles = {paddle: None for paddle, party in session.paddles.items()
                   if state.parties[party].broker == broker}
    else:
        paddles = None
    if cmd.instrument:
        targets = [_instrument(state, cmd.session, cmd.instrument)]
    else:
        targets = [inst for inst in state.books.values() if inst.session == cmd.session]
    for inst in targets:
        run = _Run(state, ctx, inst)
        for key, order in list(inst.book.orders.items()):
            if paddles is None or order.owner in paddles:
                run.cancel(key, "mass_cancel")
        run.publish()


@handles(StartCall)
def start_call(state: State, ctx: Ctx, cmd: StartCall) -> None:
    ctx.require_role("operator")
    inst = _instrument(state, cmd.session, cmd.instrument)
    _require_trading(state, inst)
    if inst.phase != "continuous":
        raise Reject("wrong_phase", f"instrument {inst.id!r} is in its {inst.phase} phase")
    inst.phase = "call"
    ctx.emit(PhaseChanged(session=inst.session, instrument=inst.id, phase="call"))
    _Run(state, ctx, inst).publish()


@handles(Uncross)
def uncross(state: State, ctx: Ctx, cmd: Uncross) -> None:
    ctx.require_role("operator")
    inst = _instrument(state, cmd.session, cmd.instrument)
    _require_trading(state, inst)
    if inst.phase != "call":
        raise Reject("wrong_phase", f"instrument {inst.id!r} is not in a call period")
    non_negative(cmd.reference, "reference price")
    run = _Run(state, ctx, inst)
    book = inst.book
    price, volume = book.uncross(cmd.reference or _reference(inst), *_call_prices(inst, ctx))
    fills = book.fills
    # the book reports each order as it is at the end: what an order has
    # left after one of its fills is that plus its later fills (an IOC's
    # rest, cancelled at the end, counts as left until its cancel)
    leaves = [0] * len(fills)
    left_after: dict[tuple[int, int], int] = {order.key: q for order, q in book.cancelled}
    for i in range(len(fills) - 1, -1, -1):
        order, q = fills[i]
        leaves[i] = left = left_after.get(order.key, order.qty)
        left_after[order.key] = left + q
    for i in range(0, len(fills), 2):
        (buy, q), (sell, _) = fills[i], fills[i + 1]
        run.trade(buy.key, sell.key, q, price, "", leaves[i], leaves[i + 1], buy, sell)
    for order, q in book.cancelled:
        run.cancelled(order, q, "auction_ioc")
    ctx.emit(CallUncrossed(session=inst.session, instrument=inst.id, price=price, volume=volume))
    inst.phase = "continuous"
    ctx.emit(PhaseChanged(session=inst.session, instrument=inst.id, phase="continuous"))
    run.publish()


@handles(SetOrderLimit)
def set_order_limit(state: State, ctx: Ctx, cmd: SetOrderLimit) -> None:
    """Set ``max_orders`` and count each paddle's resting orders anew from the
    book (or drop the counts for no limit). O(resting orders)."""
    inst = _operator_live_instrument(state, ctx, cmd.session, cmd.instrument)
    non_negative(cmd.max_orders, "max_orders")
    counts: dict[int, int] = {}
    if cmd.max_orders:
        for paddle, _ in inst.book.orders:
            counts[paddle] = counts.get(paddle, 0) + 1
    inst.max_orders = cmd.max_orders
    inst.open_orders = counts
    ctx.emit(OrderLimitSet(session=inst.session, instrument=inst.id,
                           max_orders=cmd.max_orders))


def _operator_live_instrument(state: State, ctx: Ctx, session: str, instrument: str,
                              already: str = "") -> Instrument:
    """Return an instrument still trading, for an operator's command; else refuse."""
    ctx.require_role("operator")
    inst = _instrument(state, session, instrument)
    if inst.phase == "closed":
        raise Reject("instrument_closed", f"instrument {inst.id!r} is closed{already}")
    return inst


@handles(SetPriceRules)
def set_price_rules(state: State, ctx: Ctx, cmd: SetPriceRules) -> None:
    """Set the tick and the price band of a live instrument. O(1)."""
    inst = _operator_live_instrument(state, ctx, cmd.session, cmd.instrument)
    positive(cmd.tick, "tick")
    non_negative(cmd.band_bp, "band_bp")
    if cmd.band_bp > 10_000:
        raise Reject("bad_field", f"band_bp {cmd.band_bp} is over 10000 (100 %)")
    inst.tick = cmd.tick
    inst.band_bp = cmd.band_bp
    ctx.emit(PriceRulesSet(session=inst.session, instrument=inst.id, tick=cmd.tick,
                           band_bp=cmd.band_bp))
    if ctx.rules >= 3:                       # a call's indicative price is on the new tick
        _Run(state, ctx, inst).publish()


@handles(HaltTrading)
def halt_trading(state: State, ctx: Ctx, cmd: HaltTrading) -> None:
    """Halt a trading instrument: orders may then only be cancelled. O(1)."""
    inst = _operator_live_instrument(state, ctx, cmd.session, cmd.instrument)
    if inst.phase == "halted":
        raise Reject("wrong_phase", f"trading on {inst.id!r} is halted already "
                                    f"({inst.halt_reason})")
    reason = published_reason(cmd.reason, "a halt")
    inst.halted_from = inst.phase
    inst.phase = "halted"
    inst.halt_reason = reason
    ctx.emit(TradingHalted(session=inst.session, instrument=inst.id, reason=reason))
    ctx.emit(PhaseChanged(session=inst.session, instrument=inst.id, phase="halted"))


@handles(ResumeTrading)
def resume_trading(state: State, ctx: Ctx, cmd: ResumeTrading) -> None:
    """End a halt, into a call period or continuous trading; a book a halt
    left crossed or holding call orders (IOC) reopens in a call only.
    O(1), O(resting orders) into continuous trading after a halted call."""
    inst = _operator_live_instrument(state, ctx, cmd.session, cmd.instrument)
    if inst.phase != "halted":
        raise Reject("wrong_phase", f"trading on {inst.id!r} is not halted")
    if cmd.phase not in ("continuous", "call"):
        raise Reject("bad_field", f"phase {cmd.phase!r} is not continuous or call")
    if cmd.phase == "continuous" and inst.halted_from == "call":
        book = inst.book
        if book.crossed() or any(order.tif != GTC and order.tif != POST_ONLY
                                 for order in book.orders.values()):
            raise Reject("wrong_phase", f"the book of {inst.id!r} holds the crossed or IOC "
                                        f"orders of a call period: resume into a call "
                                        f"and uncross")
    inst.phase = cmd.phase
    inst.halt_reason = inst.halted_from = ""
    ctx.emit(PhaseChanged(session=inst.session, instrument=inst.id, phase=cmd.phase))
    _Run(state, ctx, inst).publish()


@handles(CloseInstrument)
def close_instrument(state: State, ctx: Ctx, cmd: CloseInstrument) -> None:
    inst = _operator_live_instrument(state, ctx, cmd.session, cmd.instrument, " already")
    run = _Run(state, ctx, inst)
    run.close("closed")
    run.publish()


@stale_when("book_expire")
def _expiry_gone(state: State, instrument: str, seq: int) -> bool:
    inst = state.books.get(instrument)
    return inst is None or seq not in inst.expiring


@on_timer("book_expire")
def _expire(state: State, ctx: Ctx, instrument: str, seq: int) -> None:
    inst = state.books.get(instrument)
    if inst is None:
        return
    key = inst.expiring.pop(seq, None)
    order = inst.book.orders.get(key) if key is not None else None
    if order is None or order.seq != seq:
        return
    run = _Run(state, ctx, inst)
    run.cancel(key, "expired")
    run.publish()


def return_patent(state: State, instrument: str, buyer: int, seller: int) -> None:
    """Give a patent traded on ``instrument`` back to its ``seller`` (since
    rules 4, when settlement cancels the sale): the book is closed, so only
    the holding moves. O(1)."""
    inst = state.books.get(instrument)
    if inst is None or inst.kind != "patent" or not inst.holdings.get(buyer):
        return
    left = inst.holdings.pop(buyer) - 1
    if left:
        inst.holdings[buyer] = left
    inst.holdings[seller] = inst.holdings.get(seller, 0) + 1


def _close_lot_instrument(state: State, ctx: Ctx, serial: str) -> None:
    for inst in state.books.values():
        if inst.lot == serial and inst.phase != "closed":
            run = _Run(state, ctx, inst)
            run.close("closed")
            run.publish()


@reacts_to(PartyFrozen)
def _on_party_frozen(state: State, ctx: Ctx, event: PartyFrozen) -> None:
    """A frozen party places no orders, so its resting ones must not trade
    either: cancel them in every book, both sides (reason "party_frozen")."""
    _cancel_party_orders(state, ctx, event.party, "party_frozen")


@reacts_to(CreditReviewed)
def _on_credit_reviewed(state: State, ctx: Ctx, event: CreditReviewed) -> None:
    """A party whose approval is withdrawn places no orders, so its resting
    ones are cancelled as a frozen party's are (reason "approval_withdrawn")."""
    if not event.approved:
        _cancel_party_orders(state, ctx, event.party, "approval_withdrawn")


def _cancel_party_orders(state: State, ctx: Ctx, party: int, reason: str) -> None:
    """Cancel every resting order of ``party`` in every book. O(resting orders)."""
    for inst in state.books.values():
        if inst.phase == "closed":
            continue
        paddles = state.sessions[inst.session].paddles       # paddle -> party
        mine = [key for key, order in inst.book.orders.items()
                if paddles.get(order.owner) == party]
        if mine:
            run = _Run(state, ctx, inst)
            for key in mine:
                run.cancel(key, reason)
            run.publish()


@reacts_to(SessionClosed)
def _on_session_closed(state: State, ctx: Ctx, event: SessionClosed) -> None:
    """A closed session trades no more: close its books, cancelling every
    resting order (reason "session_closed"). O(resting orders)."""
    for inst in state.books.values():
        if inst.session == event.session and inst.phase != "closed":
            run = _Run(state, ctx, inst)
            run.close("session_closed")
            run.publish()


@reacts_to(LotPassed)
def _on_lot_passed(state: State, ctx: Ctx, event: LotPassed) -> None:
    _close_lot_instrument(state, ctx, event.serial)


@reacts_to(LotWithdrawn)
def _on_lot_withdrawn(state: State, ctx: Ctx, event: LotWithdrawn) -> None:
    _close_lot_instrument(state, ctx, event.serial)


@reacts_to(LotAwarded)
def _on_lot_awarded(state: State, ctx: Ctx, event: LotAwarded) -> None:
    _close_lot_instrument(state, ctx, event.serial)


# --------------------------------------------------------------------------
# invariants
# --------------------------------------------------------------------------

@invariant
def _books_check(state: State) -> None:
    """Each book sound (never crossed outside a call period, no empty level,
    positive quantities, FIFO per level, totals agreeing); offered units and
    buy commitments equal to the resting orders; units conserved; one unit
    of each patent across its lot's books, held by the lot's buyer once sold,
    else by its seller (rules 4)."""
    committed: dict[tuple[str, str, int, int], int] = {}
    for (session, party), found in state.exposure.items():
        for key, amount in found.items.items():
            if isinstance(key, tuple) and len(key) == 3 and key[0] == "order":
                committed[(session, key[1], party, key[2])] = amount
    expected: dict[tuple[str, str, int, int], int] = {}
    patents: dict[str, list] = {}            # lot -> its patent instruments
    for inst in state.books.values():
        book = inst.book
        in_call = inst.phase == "call" or inst.halted_from == "call"
        book.check(allow_crossed=in_call)
        inst.gone.check()
        paddles = state.sessions[inst.session].paddles
        offered: dict[int, int] = {}
        counts: dict[int, int] = {}          # paddle -> resting orders
        for (paddle, oid), order in book.orders.items():
            party = paddles[paddle]
            assert order.owner == paddle, (inst.id, paddle, oid)
            counts[paddle] = counts.get(paddle, 0) + 1
            if order.side == SELL:
                offered[party] = offered.get(party, 0) + order.qty
            else:
                expected[(inst.session, inst.id, party, oid)] = _buy_commitment(
                    state, inst, order.price, order.qty)
            assert order.tif in (GTC, POST_ONLY) or in_call, (inst.id, oid)
        assert offered == inst.offered, (inst.id, offered, inst.offered)
        live_expiring = {order.seq: key for key, order in book.orders.items() if order.expires}
        assert inst.expiring == live_expiring, (inst.id, inst.expiring, live_expiring)
        if inst.max_orders:                  # above it only after `SetOrderLimit` lowered it
            assert counts == inst.open_orders, (inst.id, counts, inst.open_orders)
        else:
            assert not inst.open_orders, inst.id
        for party, units in inst.holdings.items():
            assert units > 0, (inst.id, party, units)
            assert units >= offered.get(party, 0), (inst.id, party, units, offered)
        assert sum(inst.holdings.values()) + inst.consumed == inst.issued, inst.id
        if inst.phase == "closed":
            assert not book.orders, inst.id
        halted = inst.phase == "halted"
        assert bool(inst.halt_reason) == halted == bool(inst.halted_from), (inst.id, inst.phase)
        if inst.kind == "patent":
            assert not inst.consumed, inst.id
            patents.setdefault(inst.lot, []).append(inst)
            assert inst.issued == sum(inst.holdings.values()), inst.id
    assert committed == expected, (committed, expected)
    for serial, books in patents.items():      # one unit a patent, held by its owner
        if any(inst.unit_kept for inst in books):
            continue                           # rules 3 kept it with a defaulter
        lot = state.lots[serial]
        owner = lot.sale.buyer if lot.status in ("sold", "settled") else lot.seller
        held = [(inst.id, party, units) for inst in books for party, units in inst.holdings.items()]
        assert len(held) == 1 and held[0][1:] == (owner, 1), (serial, lot.status, owner, held)
