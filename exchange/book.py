"""The continuous order book: price levels in price-time priority, and matching.

A pure data structure: it imports nothing of the engine, knows no sessions,
parties or events, and can be benchmarked alone (bench/test_cda_bench.py).
`exchange.market` wraps it in engine handlers.

Layout, chosen by profiling the mixed workload of the benchmark:

- Prices are ints. Each side keeps its levels in a dict keyed by a *signed*
  price: bids under ``+price``, asks under ``-price``. On both sides a larger
  key is a better price, so one matching loop serves buys and sells.
- Each side keeps its level keys in a plain list sorted ascending, best
  last: the touch is ``keys[-1]`` (O(1)), a level emptied by matching is
  ``keys.pop()`` (O(1)), and a new level is placed by ``bisect.insort``:
  O(log L) comparisons plus a C memmove of the levels better than it, which
  is nothing at the touch where the flow is. Measured faster than
  ``sortedcontainers.SortedList`` up to about 5,000 levels of uniformly
  random insertion and at every depth for the flow near the touch.
- A level is a `collections.deque` of `Order` in arrival order, with its
  live quantity and live order count. Appending is O(1); matching pops the
  head in O(1). Cancel is O(1): it zeroes the order's quantity and leaves it
  in the deque, where matching skips it; a level whose dead entries
  outnumber its live ones by `_COMPACT_SLACK` is compacted, so the deque
  stays within a constant factor of the live count (amortised O(1)).
- ``orders`` maps a caller-chosen hashable key to its live `Order`;
  ``owned`` maps each owner to its live orders by key, oldest first, so
  what one owner has resting is found without walking the others' (about
  0.1 us more per order placed and per order gone).
- `Order` and `Level` are msgspec Structs with ``gc=False``: 80 bytes per
  order, created in C, and they hold no reference cycles (an order knows
  its price, not its level), so the collector need not track them.

Outputs of the last `place` / `modify` / `uncross` are left in the book's
outboxes, valid until its next call: ``fills`` (``(resting order,
quantity)`` pairs in execution order; the order's ``qty`` is what it has
left), ``cancelled`` (``(resting order, quantity)`` removed by the book
itself: self-trade prevention, or IOC rests after an uncross) and ``stp_stopped`` (the incoming order was stopped
by self-trade prevention).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from typing import Hashable, Iterator

import msgspec

BUY = 0
SELL = 1

# time in force, as kept on an order
GTC = 0        # good till cancelled (also good till date: the engine expires it)
IOC = 1        # immediate or cancel: the unfilled rest never rests
FOK = 2        # fill or kill: fills completely at once or not at all
POST_ONLY = 3  # rests only; placed in a book it would trade with, it is refused

# self-trade prevention: what happens when an order meets one of its owner's
CANCEL_NEWEST = 0  # the incoming order's rest is cancelled
CANCEL_OLDEST = 1  # the resting order is cancelled, matching goes on
CANCEL_BOTH = 2    # both are cancelled

MAX_PRICE = 10**15
"""Largest limit price; a market buy matches as a buy limited at this price."""
ANY_PRICE = MAX_PRICE + 1
"""`Book.equilibrium`'s ``top`` that lets every limit price be chosen."""

_COMPACT_SLACK = 16
_NONE_OWNED: dict = {}


class Order(msgspec.Struct, gc=False):
    """A resting (or incoming) order. ``qty`` is what it has left; zero once
    it is gone. ``seq`` is its arrival number in this book (time priority)."""

    key: Hashable
    side: int
    price: int
    qty: int
    owner: Hashable
    seq: int
    tif: int = GTC
    expires: int = 0


class Level(msgspec.Struct, gc=False):
    """The orders at one price, oldest first. ``qty`` and ``n`` count the live
    orders only; ``queue`` may also hold cancelled ones (``qty == 0``)."""

    price: int
    qty: int
    n: int
    queue: deque


class Book:
    """One instrument's book. Every method states its cost; L is the number
    of levels on a side, k the number of orders an operation walks."""

    __slots__ = ("levels", "keys", "orders", "owned", "seq", "fills", "cancelled",
                 "stp_stopped")

    def __init__(self) -> None:
        self.levels: tuple[dict[int, Level], dict[int, Level]] = ({}, {})
        self.keys: tuple[list[int], list[int]] = ([], [])
        self.orders: dict[Hashable, Order] = {}
        self.owned: dict[Hashable, dict[Hashable, Order]] = {}
        self.seq = 0
        self.fills: list[tuple[Order, int]] = []
        self.cancelled: list[tuple[Order, int]] = []
        self.stp_stopped = False

    # ------------------------------------------------------------------ queries

    def best(self, side: int) -> int | None:
        """Return the best price of ``side`` or None. O(1)."""
        keys = self.keys[side]
        if not keys:
            return None
        return keys[-1] if side == BUY else -keys[-1]

    def best_bid(self) -> int | None:
        """Return the highest bid price or None. O(1)."""
        keys = self.keys[BUY]
        return keys[-1] if keys else None

    def best_ask(self) -> int | None:
        """Return the lowest ask price or None. O(1)."""
        keys = self.keys[SELL]
        return -keys[-1] if keys else None

    def qty_at(self, side: int, price: int) -> int:
        """Return the quantity resting on ``side`` at ``price``. O(1)."""
        level = self.levels[side].get(price if side == BUY else -price)
        return 0 if level is None else level.qty

    def level(self, side: int, price: int) -> Level | None:
        """Return the level of ``side`` at ``price`` or None. O(1)."""
        return self.levels[side].get(price if side == BUY else -price)

    def depth(self, side: int, n: int | None = None) -> list[tuple[int, int, int]]:
        """Return ``(price, qty, orders)`` of the best ``n`` levels (all if None),
        best first. O(n)."""
        keys = self.keys[side]
        levels = self.levels[side]
        chosen = keys[::-1] if n is None else keys[:-n - 1:-1]
        return [(levels[k].price, levels[k].qty, levels[k].n) for k in chosen]

    def level_orders(self, side: int, price: int) -> list[Order]:
        """Return the live orders at a price, oldest first. O(k)."""
        level = self.level(side, price)
        return [] if level is None else [o for o in level.queue if o.qty]

    def iter_orders(self, side: int) -> Iterator[Order]:
        """Yield the live orders of a side in priority order. O(1) per order."""
        levels = self.levels[side]
        for k in reversed(self.keys[side]):
            for o in levels[k].queue:
                if o.qty:
                    yield o

    def crosses(self, side: int, price: int) -> bool:
        """Return whether an order of ``side`` at ``price`` would meet the
        opposite side. O(1)."""
        opposite = self.keys[1 - side]
        if not opposite:
            return False
        return opposite[-1] >= (-price if side == BUY else price)

    def crossed(self) -> bool:
        """Return whether the best bid meets or passes the best ask. O(1)."""
        bids, asks = self.keys
        return bool(bids and asks and bids[-1] >= -asks[-1])

    def fillable(self, side: int, price: int, qty: int, owner: Hashable = None,
                 stp: int = CANCEL_NEWEST) -> int:
        """Return how much of an order would fill at once, up to ``qty``,
        applying self-trade prevention as `place` would. O(k)."""
        limit = -price if side == BUY else price
        opposite = 1 - side
        keys = self.keys[opposite]
        levels = self.levels[opposite]
        got = 0
        for i in range(len(keys) - 1, -1, -1):
            k = keys[i]
            if k < limit:
                break
            for o in levels[k].queue:
                oq = o.qty
                if not oq:
                    continue
                if o.owner == owner and owner is not None:
                    if stp == CANCEL_OLDEST:
                        continue
                    return got
                got += oq
                if got >= qty:
                    return qty
        return got

    def buy_cost(self, qty: int, limit: int = MAX_PRICE, owner: Hashable = None,
                 stp: int = CANCEL_NEWEST) -> int:
        """Return the cost of buying ``qty`` from the best asks up to ``limit``
        (what a market buy could spend at most). With an ``owner``, apply
        self-trade prevention as `place` would: its own asks are never bought,
        and the sweep goes on past them under CANCEL_OLDEST, else stops there.
        O(levels walked); with an owner O(orders walked)."""
        keys = self.keys[SELL]
        levels = self.levels[SELL]
        cost = 0
        for i in range(len(keys) - 1, -1, -1):
            level = levels[keys[i]]
            price = level.price
            if price > limit or not qty:
                break
            if owner is None:
                take = level.qty if level.qty < qty else qty
                cost += take * price
                qty -= take
                continue
            for o in level.queue:
                oq = o.qty
                if not oq:
                    continue
                if o.owner == owner:
                    if stp == CANCEL_OLDEST:
                        continue
                    return cost
                take = oq if oq < qty else qty
                cost += take * price
                qty -= take
                if not qty:
                    return cost
        return cost

    def __len__(self) -> int:
        return len(self.orders)

    def owned_by(self, owner: Hashable) -> dict[Hashable, Order]:
        """Return ``owner``'s live orders by key, oldest first (do not change
        it). O(1)."""
        return self.owned.get(owner, _NONE_OWNED)

    def index_owners(self) -> None:
        """Build ``owned`` from ``orders`` (a book unpickled from before it
        was kept). O(orders)."""
        owned: dict[Hashable, dict[Hashable, Order]] = {}
        for key, order in self.orders.items():
            mine = owned.get(order.owner)
            if mine is None:
                owned[order.owner] = {key: order}
            else:
                mine[key] = order
        self.owned = owned

    # ------------------------------------------------------------------ changes

    def add(self, key: Hashable, side: int, price: int, qty: int, owner: Hashable = None,
            tif: int = GTC, expires: int = 0) -> Order:
        """Rest an order without matching it (the call period uses this
        directly). O(1) at an existing level, else O(log L) plus the memmove
        of the levels better than the new one. The key must not be live."""
        self.seq += 1
        order = Order(key, side, price, qty, owner, self.seq, tif, expires)
        k = price if side == BUY else -price
        levels = self.levels[side]
        level = levels.get(k)
        if level is None:
            levels[k] = Level(price, qty, 1, deque((order,)))
            keys = self.keys[side]
            if not keys or k > keys[-1]:
                keys.append(k)
            else:
                insort(keys, k)
        else:
            level.queue.append(order)
            level.qty += qty
            level.n += 1
        self.orders[key] = order
        mine = self.owned.get(owner)
        if mine is None:
            self.owned[owner] = {key: order}
        else:
            mine[key] = order
        return order

    def cancel(self, key: Hashable) -> int:
        """Remove a live order; return the quantity it had left, 0 if no live
        order has this key. O(1) amortised; O(log L) plus a memmove when its
        level empties (O(1) at the touch)."""
        order = self.orders.pop(key, None)
        if order is None:
            return 0
        mine = self.owned[order.owner]
        if len(mine) == 1:
            del self.owned[order.owner]
        else:
            del mine[key]
        qty = order.qty
        order.qty = 0
        side = order.side
        k = order.price if side == BUY else -order.price
        levels = self.levels[side]
        level = levels[k]
        level.n -= 1
        if level.n:
            level.qty -= qty
            queue = level.queue
            if len(queue) > 2 * level.n + _COMPACT_SLACK:
                level.queue = deque([o for o in queue if o.qty])
        else:
            del levels[k]
            keys = self.keys[side]
            if keys[-1] == k:
                keys.pop()
            else:
                del keys[bisect_left(keys, k)]
        return qty

    def reduce(self, key: Hashable, qty: int) -> int:
        """Lower a live order's quantity to ``qty`` (0 < qty <= its quantity),
        keeping its time priority; return the quantity taken off. O(1)."""
        order = self.orders[key]
        cut = order.qty - qty
        if cut < 0 or qty <= 0:
            raise ValueError(f"reduce {key!r} to {qty}: it has {order.qty}")
        order.qty = qty
        self.levels[order.side][order.price if order.side == BUY else -order.price].qty -= cut
        return cut

    def place(self, key: Hashable, side: int, price: int, qty: int, owner: Hashable = None,
              tif: int = GTC, stp: int = CANCEL_NEWEST, expires: int = 0) -> Order | None:
        """Match an incoming order against the opposite side at the resting
        orders' prices, best first and oldest first, then rest what is left
        if its time in force lets it. Return the resting order or None.

        A FOK that cannot fill completely and a POST_ONLY that would trade do
        nothing. For a market order pass ``MAX_PRICE`` (buy) or 0 (sell) with
        IOC. Outboxes: ``fills``, ``cancelled``, ``stp_stopped``.
        O(k + levels emptied) for the match, plus `add` when it rests.
        """
        fills = self.fills
        if fills:
            fills.clear()
        if self.cancelled:
            self.cancelled.clear()
        self.stp_stopped = False
        opposite = self.keys[1 - side]
        if opposite and opposite[-1] >= (-price if side == BUY else price):
            if tif == POST_ONLY:
                return None
            if tif == FOK and self.fillable(side, price, qty, owner, stp) < qty:
                return None
            qty = self._match(side, price, qty, owner, stp)
            if not qty or self.stp_stopped:
                return None
        elif tif == FOK:
            return None
        if tif == IOC or tif == FOK:
            return None
        return self.add(key, side, price, qty, owner, tif, expires)

    def _match(self, side: int, price: int, qty: int, owner: Hashable, stp: int) -> int:
        """Fill up to ``qty`` from the opposite side within ``price``; return
        what is left. The hot loop: locals only, no calls but deque ops."""
        opposite = 1 - side
        keys = self.keys[opposite]
        levels = self.levels[opposite]
        orders = self.orders
        owned = self.owned
        fills = self.fills
        limit = -price if side == BUY else price
        while keys and keys[-1] >= limit:
            k = keys[-1]
            level = levels[k]
            queue = level.queue
            while True:
                o = queue[0]
                oq = o.qty
                if not oq:
                    queue.popleft()
                    continue
                if owner is not None and o.owner == owner:
                    if stp != CANCEL_NEWEST:
                        queue.popleft()
                        o.qty = 0
                        del orders[o.key]
                        mine = owned[owner]
                        if len(mine) == 1:
                            del owned[owner]
                        else:
                            del mine[o.key]
                        level.qty -= oq
                        level.n -= 1
                        self.cancelled.append((o, oq))
                    if stp != CANCEL_OLDEST:
                        self.stp_stopped = True
                        if not level.n:
                            del levels[k]
                            keys.pop()
                        return qty
                    if not level.n:
                        break
                    continue
                if oq <= qty:
                    queue.popleft()
                    o.qty = 0
                    del orders[o.key]
                    mine = owned[o.owner]
                    if len(mine) == 1:
                        del owned[o.owner]
                    else:
                        del mine[o.key]
                    fills.append((o, oq))
                    level.qty -= oq
                    level.n -= 1
                    qty -= oq
                    if not level.n:
                        break
                    if not qty:
                        return 0
                else:
                    o.qty = oq - qty
                    level.qty -= qty
                    fills.append((o, qty))
                    return 0
            del levels[k]
            keys.pop()
            if not qty:
                return 0
        return qty

    def modify(self, key: Hashable, price: int, qty: int, stp: int = CANCEL_NEWEST) -> Order | None:
        """Change a live order's price and/or quantity (what it has left).
        A quantity reduction at the same price keeps time priority (O(1)); a
        price change or a quantity increase cancels and re-places it at the
        back, where it may trade at the resting orders' prices like a new
        order. Return the order resting afterwards, or None. Outboxes as
        `place`."""
        order = self.orders[key]
        if price == order.price and qty <= order.qty:
            fills = self.fills
            if fills:
                fills.clear()
            if self.cancelled:
                self.cancelled.clear()
            self.stp_stopped = False
            if qty < order.qty:
                self.reduce(key, qty)
            return order
        self.cancel(key)
        tif = order.tif
        if tif == IOC or tif == FOK:  # never resting; kept for completeness
            tif = GTC
        return self.place(key, order.side, price, qty, order.owner, tif, stp, order.expires)

    # ------------------------------------------------------------------ call auction

    def equilibrium(self, reference: int = 0, tick: int = 1,
                    top: int = MAX_PRICE) -> tuple[int, int, int]:
        """Return ``(price, volume, imbalance)`` of the uncross: the price below
        ``top``, a multiple of ``tick`` or a resting order's own (placed
        before the tick was raised), that maximises the matched volume;
        ties go to the smallest imbalance, then to the price nearest
        ``reference`` (0: none), then to the lower price. The default ``top``
        keeps the price of market buys (``MAX_PRICE``) from being chosen;
        `ANY_PRICE` allows every limit price. ``(0, 0, 0)`` when nothing would
        match. O(L log L)."""
        bid_levels = [(lv.price, lv.qty) for lv in (self.levels[BUY][k] for k in self.keys[BUY])]
        ask_levels = [(lv.price, lv.qty) for lv in (self.levels[SELL][k] for k in reversed(self.keys[SELL]))]
        # bids ascending by price; asks ascending by price
        bid_prices = [p for p, _ in bid_levels]
        ask_prices = [p for p, _ in ask_levels]
        # suffix sums of bids (qty at or above a price), prefix sums of asks (at or below)
        bid_at_or_above = [0] * (len(bid_levels) + 1)
        for i in range(len(bid_levels) - 1, -1, -1):
            bid_at_or_above[i] = bid_at_or_above[i + 1] + bid_levels[i][1]
        ask_at_or_below = [0] * (len(ask_levels) + 1)
        for i, (_, q) in enumerate(ask_levels):
            ask_at_or_below[i + 1] = ask_at_or_below[i] + q
        # Volume and imbalance change only at order prices: the best price is an
        # order price (on the tick or not: it was when placed, and the most
        # volume is always at one, so the uncross leaves no cross), or the tick
        # nearest one (either side), or the ticks either side of the reference.
        candidates: set[int] = set()
        placed = candidates if tick == 1 else set(bid_prices) | set(ask_prices)
        if tick == 1:
            for p in bid_prices:
                candidates.update((p, p + 1))
            for p in ask_prices:
                candidates.update((p, p - 1))
            if reference > 0:
                candidates.add(reference)
        else:
            candidates.update(placed)
            for p in bid_prices + ask_prices + ([reference] if reference > 0 else []):
                below = p // tick * tick
                candidates.update((below, below + tick, (p - 1) // tick * tick,
                                   (p + tick) // tick * tick))
        best: tuple[int, int, int, int] | None = None  # (-volume, imbalance, distance, price)
        for p in sorted(candidates):
            if p <= 0 or p >= top or (p % tick and p not in placed):
                continue
            demand = bid_at_or_above[bisect_left(bid_prices, p)]
            supply = ask_at_or_below[bisect_left(ask_prices, p + 1)]
            volume = demand if demand < supply else supply
            if not volume:
                continue
            rank = (-volume, abs(demand - supply), abs(p - reference) if reference > 0 else 0, p)
            if best is None or rank < best:
                best = rank
        if best is None:
            return (0, 0, 0)
        return (best[3], -best[0], best[1])

    def uncross(self, reference: int = 0, tick: int = 1,
                top: int = MAX_PRICE) -> tuple[int, int]:
        """Execute the call auction: fill ``volume`` at the single equilibrium
        price, bids best first and oldest first against asks likewise, then
        cancel what is left of IOC and FOK orders (market orders are IOC).
        Return ``(price, volume)``. Outboxes: ``fills`` holds both sides of
        each match as consecutive pairs (buy, then sell); ``cancelled``
        the IOC/FOK rests removed. O(L log L + k)."""
        fills = self.fills
        fills.clear()
        self.cancelled.clear()
        self.stp_stopped = False
        price, volume, _ = self.equilibrium(reference, tick, top)
        left = volume
        orders = self.orders
        while left:
            buy = self._head(BUY)
            sell = self._head(SELL)
            take = min(buy.qty, sell.qty, left)
            for o in (buy, sell):
                level = self.levels[o.side][o.price if o.side == BUY else -o.price]
                o.qty -= take
                level.qty -= take
                fills.append((o, take))
                if not o.qty:
                    level.queue.popleft()
                    level.n -= 1
                    del orders[o.key]
                    mine = self.owned[o.owner]
                    if len(mine) == 1:
                        del self.owned[o.owner]
                    else:
                        del mine[o.key]
                    if not level.n:
                        del self.levels[o.side][self.keys[o.side].pop()]
            left -= take
        for key in [o.key for o in orders.values() if o.tif == IOC or o.tif == FOK]:
            order = orders[key]
            self.cancelled.append((order, self.cancel(key)))
        return price, volume

    def _head(self, side: int) -> Order:
        """Return the oldest live order at the best price of ``side``, dropping
        dead entries in front of it. O(1) amortised."""
        queue = self.levels[side][self.keys[side][-1]].queue
        while not queue[0].qty:
            queue.popleft()
        return queue[0]

    # ------------------------------------------------------------------ checks

    def check(self, allow_crossed: bool = False) -> None:
        """Raise AssertionError unless the book is sound: not crossed (unless
        allowed, as in a call period), no empty level, positive quantities,
        FIFO by arrival within each level, sorted level keys, and the order
        map, level totals and counts agreeing, and each owner's index holding
        its orders in the order map's order. O(number of orders)."""
        seen = 0
        for side in (BUY, SELL):
            keys = self.keys[side]
            levels = self.levels[side]
            assert keys == sorted(set(keys)), f"side {side}: level keys not sorted/unique"
            assert set(keys) == set(levels), f"side {side}: keys and levels disagree"
            for k in keys:
                level = levels[k]
                assert level.price == (k if side == BUY else -k), f"level {k} has price {level.price}"
                live = [o for o in level.queue if o.qty]
                assert live, f"side {side} level {level.price} is empty"
                assert level.n == len(live), f"level {level.price}: count {level.n} != {len(live)}"
                assert level.qty == sum(o.qty for o in live), f"level {level.price}: total != orders"
                last = 0
                for o in live:
                    assert o.qty > 0, f"order {o.key!r} has quantity {o.qty}"
                    assert o.side == side and o.price == level.price, f"order {o.key!r} misplaced"
                    assert o.seq > last, f"level {level.price} breaks FIFO at {o.key!r}"
                    last = o.seq
                    assert self.orders.get(o.key) is o, f"order {o.key!r} not in the order map"
                seen += len(live)
        assert seen == len(self.orders), f"{len(self.orders)} mapped orders, {seen} in levels"
        by_owner: dict[Hashable, list[tuple[Hashable, Order]]] = {}
        for key, o in self.orders.items():
            by_owner.setdefault(o.owner, []).append((key, o))
        assert self.owned.keys() == by_owner.keys(), "owners indexed are not the order map's"
        for owner, mine in self.owned.items():
            assert [(key, id(o)) for key, o in mine.items()] == \
                [(key, id(o)) for key, o in by_owner.get(owner, ())], \
                f"owner {owner!r}'s orders indexed unlike the order map's (or out of its order)"
        if not allow_crossed:
            assert not self.crossed(), f"book crossed: bid {self.best_bid()} >= ask {self.best_ask()}"

    def total_qty(self, side: int) -> int:
        """Return the live quantity of a side. O(L)."""
        return sum(level.qty for level in self.levels[side].values())
