"""Reverse tender: a buyer asks, sellers offer sealed prices, the lowest
acceptable offer (or the buyer's choice among acceptable ones) wins.

InnoCentive and Zhubajie style. The lot's owner (``Lot.seller``) is the
buyer; ``starting_bid`` is its published budget and the secret ``reserve``
its ceiling (the budget when 0). Scheduling needs the owner approved and
within its credit limit for the ceiling with premium, which it holds while
the tender runs. Paddles offer to sell: one live offer each, at most the
budget, replaceable or withdrawable until the close; public events carry
only the count. At the close every offer is revealed (lowest first).
``reverse_choice = "lowest"``: the lowest offer at or below the ceiling wins
at its own price (ties by the lot's tie-break policy). ``"buyer"``: the lot
waits in status ``choosing`` for `ChooseOffer` until ``closes_at +
choice_window`` and passes if none comes; the choice is the tender's award
among offers made before its close, so it is taken after the session closed
too (which does not strand the lot: its timer passes it). The award: the
owner pays the offer plus premium; the winning paddle's party receives it
less commission.
"""

from __future__ import annotations

from exchange import credit
from exchange.engine import Ctx, State, on_timer
from exchange.errors import Reject, above_zero, positive
from exchange.lots import (Bid, Lot, Mechanism, award, break_tie, ceiling, close, hold,
                           pass_lot, register_mechanism, total_due, window_end)
from exchange.events import BidVoided, SealedBidCounted
from exchange.participants import audience, get_party
from exchange.sealed import record_live, reveal, withdraw_live


class Reverse(Mechanism):
    name = "reverse"

    def ties(self, terms) -> str:
        if terms.reverse_choice == "buyer":
            return "the buyer chooses among the offers"
        return ""                            # equal lowest offers: the lot's policy

    def validate_terms(self, terms, reserve: int) -> None:
        positive(terms.starting_bid, "budget")
        if reserve > terms.starting_bid:
            raise Reject("bad_field", "a tender's ceiling (reserve) cannot exceed its budget")
        if terms.reverse_choice == "buyer":
            above_zero(terms.choice_window, "choice window")  # at most: lots._validate_terms

    def on_schedule_check(self, state: State, lot: Lot) -> None:
        owner = get_party(state, lot.seller)
        if not owner.approved or owner.frozen:
            raise Reject("party_not_approved", f"the tender's buyer (party {owner.id}) has "
                                               f"not passed the credit review")
        credit.check(state, lot.session, owner.id, ("lot", lot.serial),
                     total_due(lot, ceiling(lot)), currency=lot.currency)

    def on_schedule(self, state: State, ctx: Ctx, lot: Lot) -> None:
        hold(state, ctx, lot, lot.seller, total_due(lot, ceiling(lot)))

    def place_bid(self, state: State, ctx: Ctx, lot: Lot, paddle: int, party: int,
                  amount: int) -> None:
        if amount > lot.terms.starting_bid:
            raise Reject("above_budget", f"the budget of tender {lot.serial} is "
                                         f"{lot.terms.starting_bid}")
        record_live(state, ctx, lot, paddle, party, amount)

    def withdraw_bid(self, state: State, ctx: Ctx, lot: Lot, paddle: int, party: int) -> None:
        withdraw_live(state, ctx, lot, paddle, party)

    def on_close(self, state: State, ctx: Ctx, lot: Lot, when: int) -> None:
        ranked = self.ranked(lot)
        acceptable = [bid for bid in ranked if bid.amount <= ceiling(lot)]
        if not acceptable:
            close(ctx, lot, "passed")
            reveal(ctx, lot, ranked)
            pass_lot(state, ctx, lot, "no_acceptable_offer" if ranked else "no_bids", when,
                     highest_bid=ranked[0].amount if ranked else 0,
                     highest_paddle=ranked[0].paddle if ranked else 0)
            return
        if lot.terms.reverse_choice == "buyer":
            lot.status = "choosing"
            lot.choose_by = window_end(ctx, when, lot.terms.choice_window)
            state.schedule(lot.choose_by, "reverse_choice_end", lot.serial, lot.round)
            close(ctx, lot, "choosing", decision_by=lot.choose_by)
            reveal(ctx, lot, ranked)
            return
        low = acceptable[0].amount
        winner, rule = break_tie(lot, [bid for bid in acceptable if bid.amount == low])
        close(ctx, lot, "sold")
        reveal(ctx, lot, ranked)
        award(state, ctx, lot, paddle=winner.paddle, buyer=lot.seller, seller=winner.party,
              hammer=winner.amount, how="auction", tie_break=rule)

    def void_bids(self, state: State, ctx: Ctx, lot: Lot, party: int, reason: str) -> None:
        """Drop the party's live offers (only it and operators hear which; the
        public count follows); they held nothing. O(offers)."""
        voided = [paddle for paddle, bid in lot.live.items() if bid.party == party]
        for paddle in voided:
            del lot.live[paddle]
            ctx.emit(BidVoided(to=audience(state, party), serial=lot.serial,
                               session=lot.session, paddle=paddle, reason=reason))
        if voided:
            ctx.emit(SealedBidCounted(serial=lot.serial, session=lot.session, bids=len(lot.live)))

    def holds(self, lot: Lot) -> dict[int, int]:
        return {lot.seller: total_due(lot, ceiling(lot))}

    def ranked(self, lot: Lot) -> list[Bid]:
        return sorted(lot.live.values(), key=lambda bid: (bid.amount, bid.seq))

    def check(self, state: State, lot: Lot) -> None:
        for paddle, bid in lot.live.items():
            assert bid.paddle == paddle and 0 < bid.amount <= lot.terms.starting_bid, lot.serial
        if lot.status == "choosing":
            assert lot.choose_by >= lot.closes_at, lot.serial


REVERSE = register_mechanism(Reverse())


@on_timer("reverse_choice_end")
def _choice_due(state: State, ctx: Ctx, serial: str, round_: int) -> None:
    lot = state.lots.get(serial)
    if lot is None or lot.status != "choosing" or lot.round != round_:
        return
    ranked = REVERSE.ranked(lot)          # empty if the offers' parties were frozen since
    pass_lot(state, ctx, lot, "no_choice", lot.choose_by,
             highest_bid=ranked[0].amount if ranked else 0,
             highest_paddle=ranked[0].paddle if ranked else 0)
