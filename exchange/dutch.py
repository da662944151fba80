"""Dutch (descending clock) auction.

The clock opens at ``dutch_start`` and steps down by ``dutch_step`` every
``dutch_interval`` ns (timers ``dutch_step``), publishing each price. The
first paddle to bid at least the current price takes the lot at the current
price (`PlaceBid`; a bid below it is refused, so a bidder who saw a higher
price simply pays the lower current one). The clock stops at its floor and
waits there until the close; then the lot passes.

Floor: with no reserve above the starting bid, the clock's floor is the
public starting bid and the clock stops exactly on it. With a higher secret
reserve the clock stops at its last step at or above the reserve, so the
reserve stays secret to within one step until the close. Each step and each
bid is O(1) (plus one timer insertion, O(log timers)).
"""

from __future__ import annotations

from exchange.engine import Ctx, State, on_timer
from exchange.errors import Reject, above_zero, positive
from exchange.events import BidConfirmed, DutchPriceChanged
from exchange.lots import (Bid, Lot, Mechanism, award_to_bidder, check_credit, close, display,
                           pass_lot, register_mechanism, total_due)
from exchange.participants import audience

_STEP_BITS = 32
_STEP_MASK = (1 << _STEP_BITS) - 1


def lowest_price(lot: Lot) -> int:
    """The lowest price the clock will show (see the module docstring)."""
    terms = lot.terms
    if lot.reserve <= terms.starting_bid:
        return max(terms.starting_bid, 1)
    steps = (terms.dutch_start - lot.reserve) // terms.dutch_step
    return terms.dutch_start - steps * terms.dutch_step


class Dutch(Mechanism):
    name = "dutch"

    def ties(self, terms) -> str:
        return "the first bidder to accept the clock takes the lot"

    def validate_terms(self, terms, reserve: int) -> None:
        positive(terms.dutch_start, "Dutch start price")
        positive(terms.dutch_step, "Dutch step")
        above_zero(terms.dutch_interval, "Dutch interval")    # at most: lots._validate_terms
        if terms.dutch_start < max(reserve, terms.starting_bid):
            raise Reject("bad_field", "the Dutch clock must start at or above the reserve "
                                      "and the starting bid")

    def on_open(self, state: State, ctx: Ctx, lot: Lot) -> None:
        lot.clock = lot.terms.dutch_start
        lot.floor = lowest_price(lot)
        self._next_step(state, lot, 1)

    def _next_step(self, state: State, lot: Lot, step: int) -> None:
        if lot.clock > lot.floor:
            when = lot.opens_at + step * lot.terms.dutch_interval
            if when < lot.closes_at:
                state.schedule(when, "dutch_step", lot.serial,
                               (lot.round << _STEP_BITS) | min(step, _STEP_MASK))

    def step(self, state: State, ctx: Ctx, lot: Lot, step: int) -> None:
        """Move the clock one step down; since rules 3, to the step due now
        (a clock several steps late publishes one price, not each one)."""
        terms = lot.terms
        if ctx.rules >= 3:                   # the steps due before the close, no later
            now = min(ctx.ts, lot.closes_at - 1)
            step = max(step, (now - lot.opens_at) // terms.dutch_interval)
            lot.clock = max(terms.dutch_start - step * terms.dutch_step, lot.floor)
        else:
            lot.clock = max(lot.clock - terms.dutch_step, lot.floor)
        quote, shown = display(state, ctx, lot, lot.clock)
        ctx.emit(DutchPriceChanged(serial=lot.serial, session=lot.session, price=lot.clock,
                                   at_floor=lot.clock == lot.floor, display_currency=quote,
                                   display_price=shown))
        self._next_step(state, lot, step + 1)

    def place_bid(self, state: State, ctx: Ctx, lot: Lot, paddle: int, party: int,
                  amount: int) -> None:
        if amount < lot.clock:
            raise Reject("below_current_price", f"the clock of lot {lot.serial} stands at "
                                                f"{lot.clock}, above {amount}")
        check_credit(state, lot, party, total_due(lot, lot.clock))
        bid = Bid(seq=ctx.seq, ts=ctx.ts, paddle=paddle, party=party, amount=lot.clock)
        lot.history.append(bid)
        lot.bids += 1
        ctx.emit(BidConfirmed(to=audience(state, party), serial=lot.serial, session=lot.session,
                              paddle=paddle, amount=amount, leading=True))
        close(ctx, lot, "sold")
        award_to_bidder(state, ctx, lot, paddle=paddle, party=party, hammer=lot.clock,
                        how="auction")

    def on_close(self, state: State, ctx: Ctx, lot: Lot, when: int) -> None:
        close(ctx, lot, "passed")
        pass_lot(state, ctx, lot, "no_bids", when)

    def check(self, state: State, lot: Lot) -> None:
        if lot.status == "open":
            assert lot.floor <= lot.clock <= lot.terms.dutch_start, lot.serial
            assert lot.floor >= lot.reserve and lot.floor >= lot.terms.starting_bid, lot.serial
            assert (lot.terms.dutch_start - lot.clock) % lot.terms.dutch_step == 0 \
                or lot.clock == lot.floor, lot.serial


DUTCH = register_mechanism(Dutch())


@on_timer("dutch_step")
def _step_due(state: State, ctx: Ctx, serial: str, arg: int) -> None:
    lot = state.lots.get(serial)
    if lot is None or lot.status != "open" or lot.mechanism != "dutch":
        return
    if arg >> _STEP_BITS != lot.round:
        return
    DUTCH.step(state, ctx, lot, arg & _STEP_MASK)
