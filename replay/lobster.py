"""LOBSTER-style message and order-book files for the continuous books.

For each instrument, two aligned streams, as the LOBSTER data sets have
them (https://lobsterdata.com/info/DataStructure.php): one row per book
event (the *message* file) and, for each, the top N levels of the book
right after it (the *orderbook* file).

Message row: ``time, type, order id, size, price, direction``.

- time: seconds after midnight UTC of the day the instrument was created,
  with nine decimals (exact, from int ns; a book open for several days
  counts on past 86400);
- type: 1 new limit order resting, 2 partial cancellation, 3 deletion,
  4 execution of a resting order, 6 auction (cross) trade, 7 trading halt
  (price -1) or resumption (price 1);
- order id: the journal sequence number of the command that placed the
  order (a re-queued modify keeps it); 0 where unknown (public data);
- size: units; price: minor units x 100, i.e. major units x 10,000 as
  LOBSTER has it; direction: 1 buy, -1 sell (the resting order's side for
  an execution; 0 for a halt or a cross trade).

Orderbook row: ``ask price 1, ask size 1, bid price 1, bid size 1, ...`` for
N levels; a missing level is ``9999999999, 0`` on the ask side and
``-9999999999, 0`` on the bid side, as in LOBSTER.

From the full journal (`OrderBookRebuilder` with private events) every
order is followed: submissions (the part of an incoming order that rests
after it traded), partial and total cancellations, executions against
resting orders, order ids. From public events only the level changes are
known: executions come from the public trades and the rest of each level
change is a submission (growth) or a cancellation (shrink), with order id 0.
Both write a call auction's trade (an uncross) once, as a cross row (type 6,
order id 0; the full export after both orders' fills are applied, with no
row per order), and a phase row after the level changes of the command
that changed the phase (an uncross's trades, a close's cancellations).
Either way the rebuilt levels are checked against the engine's own
`DepthChanged` events at the end of every entry. O(events x N) with a
sorted map per side.

Rows go to a `RowSink` as they are made (`replay.export` writes them to
their files at once, so memory holds the books, not the rows); without
one they are kept per instrument (``messages``, ``books``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from sortedcontainers import SortedDict

NS = 10**9
NS_PER_DAY = 86_400 * NS
EMPTY_ASK = 9_999_999_999
EMPTY_BID = -9_999_999_999
PRICE_SCALE = 100        # minor units (2 decimals) -> LOBSTER's major units x 10,000
SIDE = {"buy": 1, "sell": -1}


class BookMismatch(AssertionError):
    """The levels rebuilt from the events disagree with the engine's `DepthChanged`."""


@dataclass
class _Order:
    oid: int
    side: str
    price: int
    qty: int


@dataclass
class Instrument:
    """The rebuilt book of one instrument and its two output streams."""

    id: str
    day0: int                                   # ns of midnight UTC of the creation day
    levels: dict[str, SortedDict] = field(default_factory=lambda: {"buy": SortedDict(),
                                                                    "sell": SortedDict()})
    orders: dict[tuple[int, int], _Order] = field(default_factory=dict)
    messages: list[tuple] = field(default_factory=list)
    books: list[tuple] = field(default_factory=list)
    # the order being placed in the current entry, not yet resting
    incoming: tuple[tuple[int, int], _Order] | None = None
    depth: dict[tuple[str, int], int] = field(default_factory=dict)   # DepthChanged seen
    # a call auction's trade whose fills are being applied: [trade, qty, price, fills to come]
    cross: list[int] | None = None
    # public: a phase row waiting for the level changes the engine published after it
    phase_row: int = 0

    def level_change(self, side: str, price: int, delta: int) -> None:
        book = self.levels[side]
        qty = book.get(price, 0) + delta
        if qty < 0:
            raise BookMismatch(f"{self.id}: level {side} {price} would go below zero")
        if qty:
            book[price] = qty
        else:
            book.pop(price, None)

    def top(self, n: int) -> tuple:
        """(ask p1, ask s1, bid p1, bid s1, ...) for ``n`` levels. O(n)."""
        asks = self.levels["sell"]
        bids = self.levels["buy"]
        row: list[int] = []
        for i in range(n):
            if i < len(asks):
                price = asks.peekitem(i)[0]
                row += [price * PRICE_SCALE, asks[price]]
            else:
                row += [EMPTY_ASK, 0]
            if i < len(bids):
                price = bids.peekitem(-1 - i)[0]
                row += [price * PRICE_SCALE, bids[price]]
            else:
                row += [EMPTY_BID, 0]
        return tuple(row)


class RowSink(Protocol):
    """Takes the rows of every instrument, in the order they are made."""

    def instrument(self, instrument: str) -> None:
        """A new instrument: its rows follow."""

    def row(self, instrument: str, message: tuple, book: tuple) -> None:
        """One message row and the book right after it."""


class OrderBookRebuilder:
    """Fold journal entries into LOBSTER streams per instrument. ``private``:
    the events include the orders' own (a full journal); else public only.
    ``sink``: where each row goes as it is made; None keeps them in memory."""

    def __init__(self, levels: int = 10, *, private: bool = True,
                 sink: RowSink | None = None) -> None:
        self.n = levels
        self.private = private
        self.sink = sink
        self.instruments: dict[str, Instrument] = {}

    # -- streams

    def _emit(self, inst: Instrument, seq: int, ts: int, kind: int, oid: int, size: int,
              price: int, direction: int) -> None:
        offset = ts - inst.day0
        seconds = f"{offset // NS}.{offset % NS:09d}"
        lobster_price = price * PRICE_SCALE if kind != 7 else price
        message = (seconds, kind, oid, size, lobster_price, direction, seq, ts)
        if self.sink is not None:
            self.sink.row(inst.id, message, inst.top(self.n))
        else:
            inst.messages.append(message)
            inst.books.append(inst.top(self.n))

    # -- folding

    def fold(self, entry: Any) -> None:
        env = entry.env
        seq, ts = env.seq, env.ts
        touched: dict[str, None] = {}
        for event in entry.events:
            name = type(event).__name__
            if name == "InstrumentCreated":
                self.instruments[event.instrument] = Instrument(
                    id=event.instrument, day0=ts - ts % NS_PER_DAY)
                if self.sink is not None:
                    self.sink.instrument(event.instrument)
                continue
            instrument = getattr(event, "instrument", None)
            inst = self.instruments.get(instrument) if instrument else None
            if inst is None:
                continue
            touched[inst.id] = None
            if name == "DepthChanged":
                if not self.private:
                    self._public_level(inst, seq, ts, event)
                inst.depth[(event.side, event.price)] = event.qty
                continue
            self._phase_row(inst, seq, ts)
            if name == "PhaseChanged":
                self._flush(inst, seq, ts)
                price = -1 if event.phase in ("call", "halted", "closed") else 1
                if self.private:
                    self._emit(inst, seq, ts, 7, 0, 0, price, 0)
                else:                      # after the levels the run changed before it
                    inst.phase_row = price
            elif name == "TradeExecuted" and event.aggressor:
                if not self.private:
                    resting = "sell" if event.aggressor == "buy" else "buy"
                    inst.level_change(resting, event.price, -event.qty)
                    self._emit(inst, seq, ts, 4, 0, event.qty, event.price, SIDE[resting])
            elif name == "TradeExecuted":  # a call auction's: one cross row
                if self.private:           # once both orders' fills are applied
                    self._cross_row(inst, seq, ts)
                    inst.cross = [event.trade, event.qty, event.price, 2]
                else:
                    self._emit(inst, seq, ts, 6, 0, event.qty, event.price, 0)
            elif self.private and event.to:
                self._private(inst, seq, ts, name, event)
        for instrument in touched:
            inst = self.instruments[instrument]
            self._phase_row(inst, seq, ts)
            self._cross_row(inst, seq, ts)
            self._flush(inst, seq, ts)
            self._check(inst)

    def _phase_row(self, inst: Instrument, seq: int, ts: int) -> None:
        """Write the phase row kept back (public) until the engine's
        `DepthChanged` after the `PhaseChanged` were applied: the levels a
        run changed (an uncross's trades, a close's cancellations) come before
        its phase row, as in the full export."""
        if inst.phase_row:
            price, inst.phase_row = inst.phase_row, 0
            self._emit(inst, seq, ts, 7, 0, 0, price, 0)

    def _cross_row(self, inst: Instrument, seq: int, ts: int) -> None:
        """Write the call auction trade kept back (private) for its fills."""
        if inst.cross is not None:
            _, qty, price, _ = inst.cross
            inst.cross = None
            self._emit(inst, seq, ts, 6, 0, qty, price, 0)

    def _public_level(self, inst: Instrument, seq: int, ts: int, event: Any) -> None:
        now = inst.levels[event.side].get(event.price, 0)
        delta = event.qty - now
        if not delta:
            return
        inst.level_change(event.side, event.price, delta)
        kind = 1 if delta > 0 else 3 if event.qty == 0 else 2
        self._emit(inst, seq, ts, kind, 0, abs(delta), event.price, SIDE[event.side])

    def _private(self, inst: Instrument, seq: int, ts: int, name: str, event: Any) -> None:
        key = (event.paddle, event.order) if hasattr(event, "order") else None
        if name == "OrderAccepted":
            self._flush(inst, seq, ts)
            inst.incoming = (key, _Order(oid=seq, side=event.side, price=event.price, qty=event.qty))
        elif name == "OrderModified":
            self._flush(inst, seq, ts)
            order = inst.orders.get(key)
            if order is None:
                raise BookMismatch(f"{inst.id}: modify of unknown order {key} at seq {seq}")
            if event.priority_kept:
                cut = order.qty - event.qty
                if cut > 0:
                    order.qty = event.qty
                    inst.level_change(order.side, order.price, -cut)
                    self._emit(inst, seq, ts, 2, order.oid, cut, order.price, SIDE[order.side])
            else:
                self._remove(inst, key, order, seq, ts)
                inst.incoming = (key, _Order(oid=order.oid, side=order.side, price=event.price,
                                             qty=event.qty))
        elif name == "OrderFilled" and event.role == "auction":
            order = inst.orders.get(key)
            if order is None:
                raise BookMismatch(f"{inst.id}: fill of an order not resting {key} at seq {seq}")
            order.qty -= event.qty         # no row of its own: the cross row says it
            inst.level_change(order.side, order.price, -event.qty)
            if order.qty <= 0:
                del inst.orders[key]
            cross = inst.cross
            if cross is None or cross[0] != event.trade:
                raise BookMismatch(f"{inst.id}: auction fill of trade {event.trade} without "
                                   f"its trade at seq {seq}")
            cross[3] -= 1
            if not cross[3]:
                self._cross_row(inst, seq, ts)
        elif name == "OrderFilled":
            mine = inst.incoming is not None and inst.incoming[0] == key
            if mine and event.role == "taker":
                inst.incoming[1].qty -= event.qty
                return
            if mine:                       # it rested and trades as a maker now
                self._flush(inst, seq, ts)
            order = inst.orders.get(key)
            if order is None:
                raise BookMismatch(f"{inst.id}: fill of an order not resting {key} at seq {seq}")
            order.qty -= event.qty
            inst.level_change(order.side, order.price, -event.qty)
            if order.qty <= 0:
                del inst.orders[key]
            self._emit(inst, seq, ts, 4, order.oid, event.qty, event.price, SIDE[order.side])
        elif name == "OrderCancelled":
            mine = inst.incoming is not None and inst.incoming[0] == key
            if mine and event.reason in ("ioc", "fok", "self_trade"):
                inst.incoming[1].qty -= event.qty     # the part that never rests
                return
            if mine:                       # it rested and is cancelled now (closed, ...)
                self._flush(inst, seq, ts)
            order = inst.orders.get(key)
            if order is None:
                raise BookMismatch(f"{inst.id}: cancel of an order not resting {key} at seq {seq}")
            qty = min(event.qty, order.qty)
            order.qty -= qty
            inst.level_change(order.side, order.price, -qty)
            if order.qty <= 0:
                del inst.orders[key]
                self._emit(inst, seq, ts, 3, order.oid, qty, order.price, SIDE[order.side])
            else:
                self._emit(inst, seq, ts, 2, order.oid, qty, order.price, SIDE[order.side])

    def _remove(self, inst: Instrument, key: Any, order: _Order, seq: int, ts: int) -> None:
        del inst.orders[key]
        inst.level_change(order.side, order.price, -order.qty)
        self._emit(inst, seq, ts, 3, order.oid, order.qty, order.price, SIDE[order.side])

    def _flush(self, inst: Instrument, seq: int, ts: int) -> None:
        """Rest what is left of the incoming order (a submission)."""
        if inst.incoming is None:
            return
        key, order = inst.incoming
        inst.incoming = None
        if order.qty > 0:
            inst.orders[key] = order
            inst.level_change(order.side, order.price, order.qty)
            self._emit(inst, seq, ts, 1, order.oid, order.qty, order.price, SIDE[order.side])

    def _check(self, inst: Instrument) -> None:
        """The levels must be what the engine's `DepthChanged` said."""
        for (side, price), qty in inst.depth.items():
            have = inst.levels[side].get(price, 0)
            if have != qty:
                raise BookMismatch(f"{inst.id}: rebuilt level {side} {price} holds {have}, "
                                   f"the engine said {qty}")
        inst.depth.clear()

    # -- output

    def rows(self, instrument: str) -> Iterator[tuple[tuple, tuple]]:
        """The rows kept in memory (no ``sink``) of ``instrument``."""
        inst = self.instruments[instrument]
        return zip(inst.messages, inst.books)


MESSAGE_COLUMNS = ["time", "type", "order_id", "size", "price", "direction"]


def book_columns(levels: int) -> list[str]:
    columns = []
    for i in range(1, levels + 1):
        columns += [f"ask_price_{i}", f"ask_size_{i}", f"bid_price_{i}", f"bid_size_{i}"]
    return columns
