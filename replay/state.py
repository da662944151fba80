"""The state of every lot and book at a moment, rebuilt through the recovery path.

``--seq N``: the engine after journal entry N. ``--at TIME``: after every
entry up to TIME, then the timers due by TIME fired (a close or a Dutch step
that the next journaled envelope fired first), so the answer is the state
*as of* that moment even if nothing was recorded at it. Past the journal's
last entry nothing fires: no clock command said so, and what the journal
does not hold did not happen (`StateView.past_end`). Both go through
`recorder.recovery.rebuild`: the newest snapshot at or before the moment,
then the journal after it.

Per lot: status, mechanism, the public price (English: the standing price;
Dutch: the clock; after a sale: the hammer), the leading paddle (English;
after a sale the buyer), the number of bids this round as the public feed
counted them (for a sealed or reverse lot the live bids, one a paddle, also
after the close), the close.
Sealed amounts stay hidden until the close for the public, and lots that
never reached the public catalogue do not exist for it; an operator also
sees the reserve, the leader's proxy maximum and the live sealed bids. Per book:
phase, best bid and ask, the top levels (price, quantity, orders) and the
trades so far. O(snapshot + entries replayed + lots + levels shown).
"""

from __future__ import annotations

from typing import Any

from exchange import lots, market
from exchange.engine import Engine
from replay.access import PUBLIC, Viewer
from replay.source import ReplayError, Source, advance_clock, money

LOT_COLUMNS = ["session", "serial", "mechanism", "status", "currency", "price", "leader",
               "bids", "closes_at", "reserve_met"]
OPERATOR_LOT_COLUMNS = ["reserve", "leader_max", "live_bids"]
BOOK_COLUMNS = ["session", "instrument", "kind", "lot", "phase", "currency", "bid", "bid_qty",
                "ask", "ask_qty", "spread", "last_price", "trades", "bids", "asks"]
MONEY = ("price", "reserve", "leader_max", "bid", "ask", "spread", "last_price")
PRIVATE_STATUSES = ("draft", "vetted", "rejected")


class StateView:
    """The rebuilt engine and what a viewer may see of it."""

    def __init__(self, engine: Engine, viewer: Viewer, levels: int) -> None:
        self.engine = engine
        self.viewer = viewer
        self.levels = levels
        self.seq = engine.state.last_seq     # the last journal entry applied
        self.journal_end: int | None = None  # the time of the journal's last entry (--at)
        self.past_end = False                # --at is after it: the state is the journal's end

    @property
    def now(self) -> int:
        return self.engine.state.now

    def lots(self, serial: str = "", *, major: bool = False) -> list[dict[str, Any]]:
        """One row per lot the viewer may know of; ``major``: live bids in major units."""
        state = self.engine.state
        rows = []
        for lot in state.lots.values():
            if serial and lot.serial != serial and _book_of(state, serial) != lot.serial:
                continue
            if not self.viewer.operator and not was_published(lot):
                continue                    # never in the public catalogue: unknown to it
            rows.append(self._lot_row(lot, major))
        return rows

    def _lot_row(self, lot: Any, major: bool) -> dict[str, Any]:
        row: dict[str, Any] = dict(session=lot.session, serial=lot.serial,
                                   mechanism=lot.mechanism, status=lot.status,
                                   currency=lot.currency, bids=public_bid_count(lot),
                                   closes_at=lot.closes_at or None)
        sale = lot.sale
        if sale is not None:
            row.update(price=sale.hammer, leader=sale.paddle)
        elif lot.status in ("open", "scheduled"):
            if lot.mechanism == "english":
                row.update(price=lot.price or None, leader=lot.leader or None,
                           reserve_met=bool(lot.leader) and lot.leader_max >= lot.reserve)
            elif lot.mechanism == "dutch" and lot.status == "open":
                row["price"] = lot.clock
        if self.viewer.operator:
            row["reserve"] = lot.reserve
            if lot.mechanism == "english" and lot.leader:
                row["leader_max"] = lot.leader_max
            if lot.live:
                row["live_bids"] = " ".join(f"{b.paddle}:{_amount(b.amount, major)}"
                                            for b in lot.live.values())
        return row

    def books(self, instrument: str = "", *, major: bool = False) -> list[dict[str, Any]]:
        """One row per book; ``major``: depth prices in major units."""
        state = self.engine.state
        rows = []
        for inst in state.books.values():
            if instrument and instrument not in (inst.id, inst.lot):
                continue
            bid = market.best_bid(state, inst.id)
            ask = market.best_ask(state, inst.id)
            rows.append(dict(
                session=inst.session, instrument=inst.id, kind=inst.kind, lot=inst.lot or None,
                phase=inst.phase, currency=inst.currency, bid=bid,
                bid_qty=market.qty_at(state, inst.id, "buy", bid) if bid is not None else None,
                ask=ask,
                ask_qty=market.qty_at(state, inst.id, "sell", ask) if ask is not None else None,
                spread=ask - bid if bid is not None and ask is not None else None,
                last_price=inst.last_price or None, trades=inst.trades,
                bids=_levels(market.depth(state, inst.id, "buy", self.levels), major),
                asks=_levels(market.depth(state, inst.id, "sell", self.levels), major)))
        return rows


def was_published(lot: Any) -> bool:
    """Whether the lot ever reached the public catalogue (was scheduled)."""
    return lot.status not in PRIVATE_STATUSES and lot.closes_at > 0


def public_bid_count(lot: Any) -> int:
    """The bid count the public feed gave (`lots.public_bids`, the rule of
    `SealedBidCounted` and `LotClosed`): for sealed and reverse lots the live
    bids, one a paddle, before and after the close (how often a paddle revised
    or withdrew its sealed bid is its own business), else the lot's count."""
    return lots.public_bids(lot)


def _amount(amount: int, major: bool) -> str:
    return money(amount) if major else str(amount)


def _levels(depth: list[tuple[int, int, int]], major: bool = False) -> str:
    """"500x150(1) 480x100(2)" (or "5.00x150(1) ..." in major units): price x
    quantity (orders), best first."""
    return " ".join(f"{_amount(price, major)}x{qty}({orders})" for price, qty, orders in depth)


def _book_of(state: Any, name: str) -> str:
    inst = state.books.get(name)
    return inst.lot if inst is not None else ""


def state_at(source: Source, *, seq: int | None = None, at: int | None = None,
             viewer: Viewer = PUBLIC, levels: int = 5) -> StateView:
    """Rebuild the engine after entry ``seq`` or as of time ``at``."""
    if (seq is None) == (at is None):
        raise ReplayError("give exactly one of --seq and --at")
    if seq is not None and seq < 0:
        raise ReplayError("--seq must not be negative")
    if levels < 1:
        raise ReplayError(f"--levels must be at least 1, not {levels}")
    engine = source.rebuild(upto_seq=seq, upto_ts=at, label="rebuilding state")
    view = StateView(engine, viewer, levels)
    if at is not None:
        view.journal_end = end = source.last_ts
        view.past_end = end is None or end < at
        advance_clock(engine, at, end)
    return view
