"""A deliberately simple reference order book for the differential tests.

Written apart from `exchange.book` and importing nothing from it: one flat
list of live orders in arrival order, and every decision made by sorting
that list again. Slow (O(n log n) per fill) and obviously right.

Rules (the issue's): price-time priority; an incoming order trades at the
resting order's price, best price first; IOC and market orders never rest;
FOK fills completely or does nothing; post-only is refused if it would
trade; a quantity reduction at the same price keeps time priority, any
other modify goes to the back and may trade; self-trade prevention
"newest" stops the incoming order, "oldest" cancels the resting one and
goes on, "both" does both. Results are plain tuples:

- ``("fill", maker key, price, qty)`` per trade, in order;
- ``("stp_cancel", maker key, qty)`` per resting order removed by STP;
- ``("dropped", key, qty, reason)``: the incoming order's rest did not rest
  (reason "self_trade", "fok" or "ioc");
- ``("refused", key)``: a post-only order (or modify) that would trade;
- ``("cancelled", key, qty)`` / ``("not_resting", key)`` for a cancel.
"""

from __future__ import annotations

INFINITE = float("inf")


class RefOrder:
    def __init__(self, key, side, price, qty, owner, tif, arrival):
        self.key = key
        self.side = side          # "buy" | "sell"
        self.price = price
        self.qty = qty
        self.owner = owner
        self.tif = tif            # "gtc" | "post_only"
        self.arrival = arrival


class ReferenceBook:
    def __init__(self):
        self.orders: list[RefOrder] = []
        self.clock = 0
        self.gone: dict = {}      # key -> "filled" | "cancelled"

    # -- queries

    def live(self, key):
        for order in self.orders:
            if order.key == key:
                return order
        return None

    def levels(self, side):
        """Return [(price, qty, count, [keys oldest first])], best price first."""
        prices = sorted({o.price for o in self.orders if o.side == side}, reverse=(side == "buy"))
        out = []
        for price in prices:
            here = sorted((o for o in self.orders if o.side == side and o.price == price),
                          key=lambda o: o.arrival)
            out.append((price, sum(o.qty for o in here), len(here), [(o.key, o.qty) for o in here]))
        return out

    def best(self, side):
        levels = self.levels(side)
        return levels[0][0] if levels else None

    def _crosses(self, side, price, resting_price):
        return resting_price <= price if side == "buy" else resting_price >= price

    def _queue(self, side, price):
        """The opposite orders an incoming order meets, in the order it meets them."""
        other = "sell" if side == "buy" else "buy"
        meet = [o for o in self.orders if o.side == other and self._crosses(side, price, o.price)]
        if side == "buy":
            return sorted(meet, key=lambda o: (o.price, o.arrival))
        return sorted(meet, key=lambda o: (-o.price, o.arrival))

    def would_trade(self, side, price):
        return bool(self._queue(side, price))

    # -- commands

    def place(self, key, side, price, qty, owner, tif, stp):
        """``tif``: gtc, ioc, fok, post_only or market (``price`` ignored)."""
        if tif == "market":
            price = INFINITE if side == "buy" else 0
        if tif == "post_only" and self.would_trade(side, price):
            return [("refused", key)]
        if tif == "fok":
            can = 0
            for order in self._queue(side, price):
                if order.owner == owner:
                    if stp == "cancel_oldest":
                        continue
                    break
                can += order.qty
            if can < qty:
                self.gone[key] = "cancelled"
                return [("dropped", key, qty, "fok")]
        out = []
        stopped = False
        while qty > 0:
            queue = self._queue(side, price)
            if not queue:
                break
            order = queue[0]
            if order.owner == owner:
                if stp in ("cancel_oldest", "cancel_both"):
                    self.orders.remove(order)
                    self.gone[order.key] = "cancelled"
                    out.append(("stp_cancel", order.key, order.qty))
                if stp in ("cancel_newest", "cancel_both"):
                    stopped = True
                    break
                continue
            take = min(qty, order.qty)
            out.append(("fill", order.key, order.price, take))
            order.qty -= take
            qty -= take
            if order.qty == 0:
                self.orders.remove(order)
                self.gone[order.key] = "filled"
        if qty > 0:
            if stopped:
                out.append(("dropped", key, qty, "self_trade"))
            elif tif in ("ioc", "fok", "market"):
                out.append(("dropped", key, qty, "fok" if tif == "fok" else "ioc"))
            else:
                self.clock += 1
                self.orders.append(RefOrder(key, side, price, qty, owner, tif, self.clock))
                self.gone.pop(key, None)
        if not any(o.key == key for o in self.orders):
            self.gone[key] = "cancelled" if qty > 0 else "filled"
        return out

    def cancel(self, key):
        order = self.live(key)
        if order is None:
            return [("not_resting", key)]
        self.orders.remove(order)
        self.gone[key] = "cancelled"
        return [("cancelled", key, order.qty)]

    def modify(self, key, price, qty, stp):
        order = self.live(key)
        if order is None:
            return [("not_resting", key)]
        if price == order.price and qty <= order.qty:
            order.qty = qty
            return []
        if order.tif == "post_only" and self.would_trade(order.side, price):
            return [("refused", key)]
        self.orders.remove(order)
        return self.place(key, order.side, price, qty, order.owner, order.tif, stp)
