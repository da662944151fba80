"""Differential tests: the real book against `reference_book`, command by command.

Thousands of seeded random commands (new limit, IOC, FOK, market, post-only,
cancel, modify; few owners so self-trade prevention fires; a narrow price
band so orders cross) go through both. After every command the results must
agree, and so must the book: best bid and ask, every level's price, quantity
and order count, and the FIFO queue of each level. The engine-level run also
checks every invariant after every envelope and that the public depth and
quote events describe the book exactly.

Seed: ``BOOK_DIFF_SEED`` (default 1); a failure names its seed and step.
"""

from __future__ import annotations

import os
import random

import pytest

from exchange.book import BUY, CANCEL_BOTH, CANCEL_NEWEST, CANCEL_OLDEST, FOK, GTC, IOC, MAX_PRICE, POST_ONLY, SELL, Book
from exchange.commands import (CancelOrder, CreateInstrument, CreateSession, IssuePaddle,
                               IssueUnits, ModifyOrder, PlaceOrder, RegisterParty, ReviewCredit)
from exchange.driver import Driver
from exchange.errors import MAX_INT
from exchange.events import (CommandRejected, DepthChanged, OrderCancelled, QuoteChanged,
                             TradeRecorded)
from exchange import market
from tests.unit.reference_book import ReferenceBook

SEED = int(os.environ.get("BOOK_DIFF_SEED", "1"))
STP = {"cancel_newest": CANCEL_NEWEST, "cancel_oldest": CANCEL_OLDEST, "cancel_both": CANCEL_BOTH}
TIF = {"gtc": GTC, "ioc": IOC, "fok": FOK, "post_only": POST_ONLY, "market": IOC}
SIDE = {"buy": BUY, "sell": SELL}


def random_commands(rnd: random.Random, count: int, owners: int = 4, ids: int = 40):
    """Yield ("place", key, side, price, qty, owner, tif) / ("cancel", key) /
    ("modify", key, price, qty); keys are (owner, n), reused freely."""
    for _ in range(count):
        owner = rnd.randint(1, owners)
        key = (owner, rnd.randint(1, ids))
        roll = rnd.random()
        if roll < 0.55:
            side = rnd.choice(("buy", "sell"))
            tif = rnd.choices(("gtc", "ioc", "fok", "market", "post_only"), (60, 12, 10, 6, 12))[0]
            price = rnd.randint(95, 105)
            yield ("place", key, side, price, rnd.randint(1, 12), owner, tif)
        elif roll < 0.8:
            yield ("cancel", key)
        else:
            yield ("modify", key, rnd.randint(95, 105), rnd.randint(1, 15))


# ---------------------------------------------------------------------------
# pure book against the reference
# ---------------------------------------------------------------------------

def grouped(results):
    """Fills, then STP cancels, then the rest: the real book reports in that order."""
    order = {"fill": 0, "stp_cancel": 1}
    return sorted(results, key=lambda r: order.get(r[0], 2))


def real_outcome(book: Book, key, side: int, qty: int, tif: int):
    out = [("fill", o.key, o.price, q) for o, q in book.fills]
    out += [("stp_cancel", o.key, q) for o, q in book.cancelled]
    resting = book.orders.get(key)
    left = qty - sum(q for _, q in book.fills) - (resting.qty if resting else 0)
    if left:
        reason = "self_trade" if book.stp_stopped else "fok" if tif == FOK else "ioc"
        out.append(("dropped", key, left, reason))
    return out


def real_apply(book: Book, command, stp: int):
    kind = command[0]
    if kind == "place":
        _, key, side_name, price, qty, owner, tif_name = command
        side = SIDE[side_name]
        if key in book.orders:
            return None
        if tif_name == "market":
            price = MAX_PRICE if side == BUY else 0
        tif = TIF[tif_name]
        if tif == POST_ONLY and book.crosses(side, price):
            return [("refused", key)]
        book.place(key, side, price, qty, owner, tif, stp)
        return real_outcome(book, key, side, qty, tif)
    if kind == "cancel":
        qty = book.cancel(command[1])
        return [("cancelled", command[1], qty)] if qty else [("not_resting", command[1])]
    _, key, price, qty = command
    order = book.orders.get(key)
    if order is None:
        return [("not_resting", key)]
    if price == order.price and qty <= order.qty:
        book.modify(key, price, qty, stp)
        return []
    if order.tif == POST_ONLY and book.crosses(order.side, price):
        return [("refused", key)]
    book.modify(key, price, qty, stp)
    return real_outcome(book, key, order.side, qty, order.tif)


def reference_apply(ref: ReferenceBook, command, stp_name: str):
    kind = command[0]
    if kind == "place":
        _, key, side, price, qty, owner, tif = command
        if ref.live(key) is not None:
            return None
        return grouped(ref.place(key, side, price, qty, owner, tif, stp_name))
    if kind == "cancel":
        return ref.cancel(command[1])
    _, key, price, qty = command
    return grouped(ref.modify(key, price, qty, stp_name))


def book_levels(book: Book, side: int):
    return [(price, qty, n, [(o.key, o.qty) for o in book.level_orders(side, price)])
            for price, qty, n in book.depth(side)]


@pytest.mark.parametrize("stp_name", list(STP))
def test_book_agrees_with_reference(stp_name):
    for seed in range(SEED, SEED + 4):
        rnd = random.Random(seed)
        book, ref = Book(), ReferenceBook()
        for step, command in enumerate(random_commands(rnd, 2500)):
            where = f"seed {seed} ({stp_name}) step {step}: {command}"
            got = real_apply(book, command, STP[stp_name])
            want = reference_apply(ref, command, stp_name)
            assert got == want, where
            book.check()
            assert book.best_bid() == ref.best("buy"), where
            assert book.best_ask() == ref.best("sell"), where
            assert book_levels(book, BUY) == ref.levels("buy"), where
            assert book_levels(book, SELL) == ref.levels("sell"), where


# ---------------------------------------------------------------------------
# the whole engine against the reference (invariants after every envelope)
# ---------------------------------------------------------------------------

OWNERS = 4


def engine_with_paddles(stp_name: str) -> tuple[Driver, dict[int, tuple[int, str]]]:
    """A session with OWNERS paddles (one broker each), ample credit and units."""
    d = Driver()
    d.engine.check_invariants = True
    d.ok(CreateSession(session="S", name="diff"))
    paddles: dict[int, tuple[int, str]] = {}
    for n in range(1, OWNERS + 1):
        broker = f"b{n}"
        party = d.ok(RegisterParty(name=f"P{n}"), actor=broker, role="broker")[0].party
        d.ok(ReviewCredit(party=party, approved=True, credit_limit=MAX_INT, currency="USD",
                          agreement_version="v1"))
        paddles[n] = (d.ok(IssuePaddle(session="S", party=party))[0].paddle, broker)
    d.ok(CreateInstrument(session="S", instrument="X", stp=stp_name))
    for paddle, _ in paddles.values():
        d.ok(IssueUnits(session="S", instrument="X", paddle=paddle, qty=10**9))
    return d, paddles


def normalised(events):
    """Engine events as the reference's tuples: trades, then cancels, then refusals."""
    out = []
    for e in events:
        if isinstance(e, TradeRecorded):
            out.append(("trade", (e.buy_paddle, e.buy_order), (e.sell_paddle, e.sell_order),
                        e.price, e.qty))
        elif isinstance(e, OrderCancelled):
            out.append(("cancelled", (e.paddle, e.order), e.qty, e.reason))
        elif isinstance(e, CommandRejected):
            out.append(("rejected", e.code))
    return out


def expected_events(ref: ReferenceBook, command, stp_name: str, side_of_key):
    """Run ``command`` on the reference; return the engine events it implies."""
    kind = command[0]
    if kind == "place":
        _, key, side, price, qty, owner, tif = command
        if ref.live(key) is not None:
            return [("rejected", "duplicate_order")]
        results = ref.place(key, side, price, qty, owner, tif, stp_name)
    elif kind == "cancel":
        key = command[1]
        if ref.live(key) is None:
            return [("rejected", {"filled": "order_filled", "cancelled": "order_cancelled"}
                     .get(ref.gone.get(key), "unknown_order"))]
        results = ref.cancel(key)
        side = None
    else:
        _, key, price, qty = command
        order = ref.live(key)
        if order is None:
            return [("rejected", {"filled": "order_filled", "cancelled": "order_cancelled"}
                     .get(ref.gone.get(key), "unknown_order"))]
        side = order.side
        results = ref.modify(key, price, qty, stp_name)
    out = []
    for r in grouped(results):
        if r[0] == "fill":
            _, maker, price, qty = r
            out.append(("trade", key, maker, price, qty) if side == "buy"
                       else ("trade", maker, key, price, qty))
        elif r[0] == "stp_cancel":
            out.append(("cancelled", r[1], r[2], "self_trade"))
        elif r[0] == "dropped":
            out.append(("cancelled", r[1], r[2], r[3]))
        elif r[0] == "refused":
            out.append(("rejected", "would_trade"))
        elif r[0] == "cancelled":
            out.append(("cancelled", r[1], r[2], "requested"))
    return out


def engine_command(command, paddles):
    kind = command[0]
    owner, oid = command[1]
    paddle, broker = paddles[owner]
    if kind == "place":
        _, _, side, price, qty, _, tif = command
        cmd = PlaceOrder(session="S", instrument="X", paddle=paddle, order=oid, side=side,
                         qty=qty, price=0 if tif == "market" else price,
                         tif="gtc" if tif == "post_only" else tif, post_only=tif == "post_only")
    elif kind == "cancel":
        cmd = CancelOrder(session="S", instrument="X", paddle=paddle, order=oid)
    else:
        cmd = ModifyOrder(session="S", instrument="X", paddle=paddle, order=oid,
                          price=command[2], qty=command[3])
    return cmd, broker


def to_engine_keys(command, paddles):
    """Rewrite owner numbers in a command's keys to paddle numbers."""
    owner, oid = command[1]
    key = (paddles[owner][0], oid)
    if command[0] == "place":
        return ("place", key, command[2], command[3], command[4], paddles[owner][0], command[6])
    return (command[0], key) + tuple(command[2:])


@pytest.mark.parametrize("stp_name", list(STP))
def test_engine_agrees_with_reference(stp_name):
    seed = SEED + 100
    rnd = random.Random(seed)
    d, paddles = engine_with_paddles(stp_name)
    ref = ReferenceBook()
    state = d.engine.state
    last_quote = (0, 0, 0, 0)
    for step, command in enumerate(random_commands(rnd, 2500, owners=OWNERS, ids=25)):
        where = f"seed {seed} ({stp_name}) step {step}: {command}"
        cmd, broker = engine_command(command, paddles)
        before = {side: {lv[0]: lv[1:3] for lv in ref.levels(side)} for side in ("buy", "sell")}
        want = expected_events(ref, to_engine_keys(command, paddles), stp_name, None)
        events = d.send(cmd, actor=broker, role="broker")
        assert normalised(events) == want, where
        # the book itself
        for side in ("buy", "sell"):
            levels = ref.levels(side)
            assert market.depth(state, "X", side) == [lv[:3] for lv in levels], where
            book = state.books["X"].book
            for price, _, _, queue in levels:
                assert [(o.key, o.qty) for o in book.level_orders(SIDE[side], price)] == queue, where
        assert market.best_bid(state, "X") == ref.best("buy"), where
        assert market.best_ask(state, "X") == ref.best("sell"), where
        # market data: each changed level published, each publication right
        published = {(e.side, e.price): (e.qty, e.orders) for e in events if isinstance(e, DepthChanged)}
        for side in ("buy", "sell"):
            after = {lv[0]: lv[1:3] for lv in ref.levels(side)}
            for price in sorted(set(before[side]) | set(after)):
                now = after.get(price, (0, 0))
                if now != before[side].get(price, (0, 0)):
                    assert published.get((side, price)) == now, where
            for (pside, price), shown in published.items():
                if pside == side:
                    assert shown == after.get(price, (0, 0)), where
        bids, asks = ref.levels("buy"), ref.levels("sell")
        quote = (bids[0][0] if bids else 0, bids[0][1] if bids else 0,
                 asks[0][0] if asks else 0, asks[0][1] if asks else 0)
        quotes = [e for e in events if isinstance(e, QuoteChanged)]
        if quote != last_quote:
            assert [(q.bid, q.bid_qty, q.ask, q.ask_qty) for q in quotes] == [quote], where
        else:
            assert not quotes, where
        last_quote = quote
