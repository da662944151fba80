"""Sealed-bid auctions: first-price and second-price (Vickrey).

Each paddle has at most one live bid, which it may replace (the replacement
takes the time of its own placement) or withdraw until the close. Public
events carry only the number of live bids (`SealedBidCounted`); the bidder
alone sees its amount (`BidConfirmed`). At the close every live bid is
revealed (`SealedBidsRevealed`, best first); since rules 4 a sale at the Ask,
which closes the lot, reveals them too.

The highest bid at or above both the starting bid and the secret reserve
wins; equal highest bids go by the lot's tie-break policy ("earliest": the
earlier live bid; "lottery": a hash draw, see `lots.lottery_rank`).
First-price: the winner pays its bid. Vickrey: the winner pays
``max(second-highest live bid, reserve, starting bid)``; with a single
bidder that is ``max(reserve, starting bid)`` (the starting bid acts as a
public reserve), and with a tie at the top it is the tied amount.

A bid at or above the Ask buys the lot at once at the Ask. Credit: each
live bid holds its amount with the buyer's premium. Placing, replacing and
withdrawing are O(1); the close sorts the live bids, O(n log n).
"""

from __future__ import annotations

from exchange.engine import Ctx, State
from exchange.errors import Reject, positive
from exchange.events import (BidConfirmed, BidVoided, BidWithdrawn, RevealedBid,
                             SealedBidCounted, SealedBidsRevealed)
from exchange.lots import (Bid, Lot, Mechanism, award_to_bidder, break_tie, check_credit, close,
                           hold, pass_lot, register_mechanism, sell_at_ask, total_due)
from exchange.participants import audience


def reveal(ctx: Ctx, lot: Lot, ranked: list[Bid]) -> None:
    ctx.emit(SealedBidsRevealed(serial=lot.serial, session=lot.session,
                                bids=tuple(RevealedBid(paddle=bid.paddle, amount=bid.amount)
                                           for bid in ranked)))


def record_live(state: State, ctx: Ctx, lot: Lot, paddle: int, party: int, amount: int) -> Bid:
    """Make ``amount`` the paddle's one live bid and publish the new count."""
    bid = Bid(seq=ctx.seq, ts=ctx.ts, paddle=paddle, party=party, amount=amount)
    revised = lot.live.pop(paddle, None) is not None
    lot.live[paddle] = bid
    lot.history.append(bid)
    lot.bids += 1
    ctx.emit(BidConfirmed(to=audience(state, party), serial=lot.serial, session=lot.session,
                          paddle=paddle, amount=amount, leading=False))
    if not revised:                  # a revision changes no count: the public hears nothing
        ctx.emit(SealedBidCounted(serial=lot.serial, session=lot.session, bids=len(lot.live)))
    return bid


def withdraw_live(state: State, ctx: Ctx, lot: Lot, paddle: int, party: int) -> None:
    if paddle not in lot.live:
        raise Reject("no_live_bid", f"paddle {paddle} has no live bid on lot {lot.serial}")
    del lot.live[paddle]
    ctx.emit(BidWithdrawn(to=audience(state, party), serial=lot.serial, session=lot.session,
                          paddle=paddle))
    ctx.emit(SealedBidCounted(serial=lot.serial, session=lot.session, bids=len(lot.live)))


class Sealed(Mechanism):
    ask_allowed = True

    def __init__(self, name: str, second_price: bool) -> None:
        self.name = name
        self.second_price = second_price

    def ties(self, terms) -> str:
        return ""                            # equal top bids: the lot's policy

    def validate_terms(self, terms, reserve: int) -> None:
        positive(terms.starting_bid, "starting bid")

    def place_bid(self, state: State, ctx: Ctx, lot: Lot, paddle: int, party: int,
                  amount: int) -> None:
        if amount < lot.terms.starting_bid:
            raise Reject("below_minimum", f"the least bid on lot {lot.serial} is "
                                          f"{lot.terms.starting_bid}")
        ask = lot.terms.ask
        if ask and amount >= ask:
            check_credit(state, lot, party, total_due(lot, ask))
            record_live(state, ctx, lot, paddle, party, amount)
            sell_at_ask(state, ctx, lot, paddle, party)
            return
        due = total_due(lot, amount)
        check_credit(state, lot, party, due)
        record_live(state, ctx, lot, paddle, party, amount)
        hold(state, ctx, lot, party, due)

    def withdraw_bid(self, state: State, ctx: Ctx, lot: Lot, paddle: int, party: int) -> None:
        withdraw_live(state, ctx, lot, paddle, party)
        hold(state, ctx, lot, party, 0)

    def on_ask_sale(self, state: State, ctx: Ctx, lot: Lot) -> None:
        """Since rules 4 a sale at the Ask is the close: every live bid is
        revealed as at any close (a re-award after a default offers the lot
        at a revealed bid, never at a sealed one)."""
        if ctx.rules >= 4:
            reveal(ctx, lot, self.ranked(lot))

    def on_close(self, state: State, ctx: Ctx, lot: Lot, when: int) -> None:
        ranked = self.ranked(lot)
        minimum = max(lot.reserve, lot.terms.starting_bid)
        if not ranked or ranked[0].amount < minimum:
            close(ctx, lot, "passed")
            reveal(ctx, lot, ranked)
            best = ranked[0] if ranked else None
            pass_lot(state, ctx, lot, "reserve_not_met" if ranked else "no_bids", when,
                     highest_bid=best.amount if best else 0,
                     highest_paddle=best.paddle if best else 0)
            return
        top = ranked[0].amount
        winner, rule = break_tie(lot, [bid for bid in ranked if bid.amount == top])
        if self.second_price:
            second = max((bid.amount for bid in ranked if bid is not winner), default=0)
            hammer = max(second, minimum)
        else:
            hammer = winner.amount
        close(ctx, lot, "sold")
        reveal(ctx, lot, ranked)
        award_to_bidder(state, ctx, lot, paddle=winner.paddle, party=winner.party,
                        hammer=hammer, how="auction", tie_break=rule)

    def holds(self, lot: Lot) -> dict[int, int]:
        return {bid.party: total_due(lot, bid.amount) for bid in lot.live.values()}

    def void_bids(self, state: State, ctx: Ctx, lot: Lot, party: int, reason: str) -> None:
        """Drop the party's live bid: only it (and operators) hear which; the
        public count follows. O(bidders)."""
        voided = [paddle for paddle, bid in lot.live.items() if bid.party == party]
        if not voided:
            return
        for paddle in voided:
            del lot.live[paddle]
            ctx.emit(BidVoided(to=audience(state, party), serial=lot.serial,
                               session=lot.session, paddle=paddle, reason=reason))
        ctx.emit(SealedBidCounted(serial=lot.serial, session=lot.session, bids=len(lot.live)))
        hold(state, ctx, lot, party, 0)

    def ranked(self, lot: Lot) -> list[Bid]:
        return sorted(lot.live.values(), key=lambda bid: (-bid.amount, bid.seq))

    def check(self, state: State, lot: Lot) -> None:
        if lot.status not in ("open", "scheduled"):
            return
        for paddle, bid in lot.live.items():
            assert bid.paddle == paddle and bid.amount >= lot.terms.starting_bid, lot.serial
            assert not lot.terms.ask or bid.amount < lot.terms.ask, lot.serial


FIRST_PRICE = register_mechanism(Sealed("sealed_first", second_price=False))
SECOND_PRICE = register_mechanism(Sealed("sealed_second", second_price=True))
