"""English (open ascending) auction with proxy bids: eBay's rule.

A bid is a paddle's maximum; the engine bids for it one increment at a time.
The standing price is the lowest that keeps the leader ahead: the second
highest maximum plus one increment (the increment at that maximum), capped
at the leader's own maximum, never below the starting bid. A lone bidder
stands at the starting bid. Equal maxima: the earlier bid leads, at that
amount. The next bid must be at least the price plus the increment at the
price (the first bid at least the starting bid); the leader may only raise
its own maximum. Each bid is O(log bands) and O(1) otherwise.

Hidden reserve: the public `BidAccepted.reserve_met` says whether the
leader's maximum reaches it; the reserve itself is never shown before the
close. At the close a leader whose maximum meets the reserve buys at
``max(price, reserve)`` (at most its maximum); otherwise the lot passes.
An Ask is met by a bid whose maximum reaches it: that bidder buys at the Ask
at once. Soft close: see `lots.extend_close`. Credit: only the leader holds
a commitment, its maximum with the buyer's premium; an outbid leader is
released.
"""

from __future__ import annotations

from exchange.engine import Ctx, State
from exchange.errors import Reject, positive
from exchange.events import BidAccepted, BidConfirmed, BidVoided
from exchange.lots import (Bid, Lot, Mechanism, award_to_bidder, check_credit, close, display,
                           extend_close, hold, pass_lot, register_mechanism, sell_at_ask,
                           total_due)
from exchange.participants import audience


def proxy_price(lot: Lot) -> int:
    """The standing price from the leader's and the second maximum (0 = none)."""
    if not lot.leader:
        return 0
    starting = lot.terms.starting_bid
    if not lot.second_max:
        return starting
    return min(lot.leader_max, max(starting, lot.second_max + lot.ladder.at(lot.second_max)))


def minimum_bid(lot: Lot) -> int:
    """The least a paddle other than the leader may bid now."""
    if not lot.leader:
        return lot.terms.starting_bid
    return lot.price + lot.ladder.at(lot.price)


def reserve_met(lot: Lot) -> bool:
    return bool(lot.leader) and lot.leader_max >= lot.reserve


class English(Mechanism):
    name = "english"
    ask_allowed = True

    def validate_terms(self, terms, reserve: int) -> None:
        positive(terms.starting_bid, "starting bid")

    def ties(self, terms) -> str:
        return "equal maxima go to the earlier bid (eBay's proxy rule)"

    def place_bid(self, state: State, ctx: Ctx, lot: Lot, paddle: int, party: int,
                  amount: int) -> None:
        ask = lot.terms.ask
        reaches_ask = 0 < ask <= amount          # buys at the Ask, whatever the increment
        if paddle == lot.leader:
            if amount <= lot.leader_max:
                raise Reject("not_above_own_max", f"paddle {paddle} leads with a maximum of "
                                                  f"{lot.leader_max}; a new one must exceed it")
        elif not reaches_ask:
            minimum = minimum_bid(lot)
            if amount < minimum:
                raise Reject("below_minimum" if not lot.leader else "below_increment",
                             f"the least bid on lot {lot.serial} now is {minimum}")
        if reaches_ask:
            check_credit(state, lot, party, total_due(lot, ask))
            self._record(lot, ctx, paddle, party, amount)
            ctx.emit(BidConfirmed(to=audience(state, party), serial=lot.serial,
                                  session=lot.session, paddle=paddle, amount=amount,
                                  leading=True))
            sell_at_ask(state, ctx, lot, paddle, party)
            return
        due = total_due(lot, amount)
        check_credit(state, lot, party, due)
        self._record(lot, ctx, paddle, party, amount)
        old_party = lot.leader_party
        if not lot.leader:
            lot.leader, lot.leader_party, lot.leader_max = paddle, party, amount
        elif paddle == lot.leader:
            lot.leader_max = amount
        elif amount > lot.leader_max:
            lot.second_max = lot.leader_max
            lot.leader, lot.leader_party, lot.leader_max = paddle, party, amount
        elif amount > lot.second_max:
            lot.second_max = amount
        lot.price = proxy_price(lot)
        if old_party and old_party != lot.leader_party:
            hold(state, ctx, lot, old_party, 0)
        hold(state, ctx, lot, lot.leader_party,
             due if lot.leader_max == amount else total_due(lot, lot.leader_max))
        ctx.emit(BidConfirmed(to=audience(state, party), serial=lot.serial, session=lot.session,
                              paddle=paddle, amount=amount, leading=paddle == lot.leader))
        extend_close(state, ctx, lot)
        quote, shown = display(state, ctx, lot, lot.price)
        ctx.emit(BidAccepted(serial=lot.serial, session=lot.session, paddle=paddle,
                             price=lot.price, leader=lot.leader, reserve_met=reserve_met(lot),
                             bids=lot.bids, closes_at=lot.closes_at, display_currency=quote,
                             display_price=shown))

    @staticmethod
    def _record(lot: Lot, ctx: Ctx, paddle: int, party: int, amount: int) -> None:
        bid = Bid(seq=ctx.seq, ts=ctx.ts, paddle=paddle, party=party, amount=amount)
        lot.history.append(bid)
        lot.bids += 1
        lot.maxes[paddle] = bid

    def on_close(self, state: State, ctx: Ctx, lot: Lot, when: int) -> None:
        if reserve_met(lot):
            close(ctx, lot, "sold")
            tie = "earliest" if lot.second_max == lot.leader_max else "none"
            award_to_bidder(state, ctx, lot, paddle=lot.leader, party=lot.leader_party,
                            hammer=max(lot.price, lot.reserve), how="auction", tie_break=tie)
        else:
            close(ctx, lot, "passed")
            pass_lot(state, ctx, lot, "reserve_not_met" if lot.leader else "no_bids", when,
                     highest_bid=lot.price, highest_paddle=lot.leader)

    def holds(self, lot: Lot) -> dict[int, int]:
        if not lot.leader:
            return {}
        return {lot.leader_party: total_due(lot, lot.leader_max)}

    def void_bids(self, state: State, ctx: Ctx, lot: Lot, party: int, reason: str) -> None:
        """Drop the party's maximum and recompute leader, second maximum and
        price from the maxima left (eBay's rule); the new leader holds its own
        maximum again. Only the leader holds credit for a lot, so a runner-up
        may have committed its credit elsewhere since it was outbid: a maximum
        its party can no longer back lapses too (reason "over_credit_limit")
        and the next one is tried. O(bidders log bidders)."""
        voided = [(paddle, reason) for paddle, bid in lot.maxes.items() if bid.party == party]
        if not voided:
            return
        for paddle, _ in voided:
            del lot.maxes[paddle]
        was_leader = lot.leader_party == party
        if was_leader:
            for bid in self.ranked(lot):
                try:
                    check_credit(state, lot, bid.party, total_due(lot, bid.amount))
                except Reject:
                    del lot.maxes[bid.paddle]
                    voided.append((bid.paddle, "over_credit_limit"))
                    continue
                break
        ranked = self.ranked(lot)
        if ranked:
            top = ranked[0]
            lot.leader, lot.leader_party, lot.leader_max = top.paddle, top.party, top.amount
            lot.second_max = ranked[1].amount if len(ranked) > 1 else 0
        else:
            lot.leader = lot.leader_party = lot.leader_max = lot.second_max = 0
        lot.price = proxy_price(lot)
        if was_leader:
            hold(state, ctx, lot, party, 0)
            if lot.leader:
                hold(state, ctx, lot, lot.leader_party, total_due(lot, lot.leader_max))
        for paddle, why in voided:
            ctx.emit(BidVoided(serial=lot.serial, session=lot.session, paddle=paddle,
                               reason=why, price=lot.price, leader=lot.leader,
                               reserve_met=reserve_met(lot)))

    def ranked(self, lot: Lot) -> list[Bid]:
        return sorted(lot.maxes.values(), key=lambda bid: (-bid.amount, bid.seq))

    def check(self, state: State, lot: Lot) -> None:
        if lot.status != "open":
            return
        if not lot.leader:
            assert not lot.maxes and lot.price == 0 and lot.second_max == 0, lot.serial
            return
        others = [bid.amount for paddle, bid in lot.maxes.items() if paddle != lot.leader]
        assert lot.maxes[lot.leader].amount == lot.leader_max, lot.serial
        assert lot.second_max == max(others, default=0), (lot.serial, lot.second_max, others)
        assert lot.second_max <= lot.leader_max, lot.serial
        assert lot.price == proxy_price(lot), lot.serial
        assert lot.terms.starting_bid <= lot.price <= lot.leader_max, lot.serial
        assert not lot.terms.ask or lot.leader_max < lot.terms.ask, lot.serial
        leaders = [bid for bid in lot.maxes.values() if bid.amount == lot.leader_max]
        assert min(leaders, key=lambda bid: bid.seq).paddle == lot.leader, lot.serial


ENGLISH = register_mechanism(English())
