"""Liquidity providers on unit-licence books, as IPXI's rulebook had them.

An operator appoints a paddle as liquidity provider on a units instrument
(`AppointLiquidityProvider`) with a quoting obligation: while the book
trades continuously, the provider's own resting orders must buy
``min_qty`` units at some price and sell ``min_qty`` at a price at most
``max_spread`` above it, for at least ``presence_bp`` of the time. Its
*quote for the obligation* is the worst price it must go to on each side to
fill ``min_qty`` from its own orders, best first.

The engine measures the time exactly from the journal's clock: between two
commands nothing changes, so after each command that touches a provider's
orders (or changes the book's phase) it adds the time since the last such
command (since rules 6, for a timer's change, up to when it was due) to the
provider's trading time (if the book traded continuously) and quoting time
(if the quote met the obligation), then looks at the book again.
`ReportLiquidity` reports every provider of a book so far (``reset``: and
starts a new period); `EndLiquidityProvider`, or the book closing, reports
for the last time (``final``). The reports and the appointment are
private to the provider's broker and the operators: the market learns
nothing of who provides liquidity.

Costs: a book without providers pays one attribute test per order rested,
changed or gone; with providers, a command that touches a provider's orders
costs O(k log k) for the provider's k resting orders.
"""

from __future__ import annotations

import msgspec

from exchange import market
from exchange.book import BUY
from exchange.commands import AppointLiquidityProvider, EndLiquidityProvider, ReportLiquidity
from exchange.engine import Ctx, State, handles, reacts_to
from exchange.errors import Reject, positive, register_reasons
from exchange.events import LiquidityProviderAppointed, LiquidityReport, PhaseChanged
from exchange.invariants import invariant
from exchange.participants import audience

register_reasons({
    "provider_exists": "the paddle is a liquidity provider on the instrument already",
    "not_a_provider": "the paddle is not a liquidity provider on the instrument",
    "no_providers": "the instrument has no liquidity providers",
    "too_many_providers": "the instrument has as many liquidity providers as it may",
})

MAX_PROVIDERS = 100
"""Liquidity providers an instrument may have at once."""
FULL = 10_000
"""Basis points in the whole."""


class Provider(msgspec.Struct, kw_only=True):
    """A liquidity provider's obligation and what is measured of it, in
    ``Instrument.providers[paddle]``."""

    paddle: int
    party: int
    max_spread: int
    min_qty: int
    presence_bp: int
    since: int                # the measured period starts here (ns UTC)
    counted_to: int           # ... and is counted up to here
    trading_ns: int = 0       # of it, the book traded continuously
    quoting_ns: int = 0       # of that, the quote met the obligation
    trading: bool = False     # the book trades continuously since ``counted_to``
    quoting: bool = False     # ... and the quote meets the obligation
    orders: dict = {}         # order id -> Order: the provider's resting orders (and gone ones
                              # not yet pruned: an order has gone once the book holds another)


def note_order(provider: Provider, order: market.Order) -> None:
    """Index an order the provider rested. O(1)."""
    provider.orders[order.key[1]] = order


def quote(inst: market.Instrument, provider: Provider) -> tuple[int, int] | None:
    """Return the provider's quote for its obligation, (bid, ask): the lowest
    bid and the highest ask it must reach to buy and to sell ``min_qty`` from
    its own resting orders, best first; None if a side falls short.
    O(k log k) for its k indexed orders."""
    live = inst.book.orders
    paddle = provider.paddle
    bids: list[tuple[int, int]] = []
    asks: list[tuple[int, int]] = []
    for oid, order in provider.orders.items():
        if order.qty and live.get((paddle, oid)) is order:
            (bids if order.side == BUY else asks).append((order.price, order.qty))
    bid = _reach(sorted(bids, reverse=True), provider.min_qty)
    ask = _reach(sorted(asks), provider.min_qty)
    if bid is None or ask is None:
        return None
    return bid, ask


def _reach(levels: list[tuple[int, int]], qty: int) -> int | None:
    """Return the price at which ``levels`` (best first) add up to ``qty``."""
    for price, size in levels:
        qty -= size
        if qty <= 0:
            return price
    return None


def meets(inst: market.Instrument, provider: Provider) -> bool:
    """Whether the provider meets its obligation now: the book trades
    continuously and its quote is within ``max_spread``."""
    if inst.phase != "continuous":
        return False
    found = quote(inst, provider)
    return found is not None and found[1] - found[0] <= provider.max_spread


def _prune(inst: market.Instrument, provider: Provider) -> None:
    live = inst.book.orders
    paddle = provider.paddle
    gone = [oid for oid, order in provider.orders.items()
            if not order.qty or live.get((paddle, oid)) is not order]
    for oid in gone:
        del provider.orders[oid]


def _count(inst: market.Instrument, provider: Provider, now: int) -> None:
    """Count the time since ``counted_to`` as it was, then look again. O(k log k)."""
    elapsed = now - provider.counted_to
    if elapsed > 0:
        if provider.trading:
            provider.trading_ns += elapsed
            if provider.quoting:
                provider.quoting_ns += elapsed
        provider.counted_to = now
    _prune(inst, provider)
    provider.trading = inst.phase == "continuous"
    provider.quoting = meets(inst, provider)


def refresh(state: State, ctx: Ctx, inst: market.Instrument,
            touched: dict[int, None] | None) -> None:
    """After a command changed ``inst``: count for the providers whose orders
    it ``touched`` (None: every provider, for a change of phase); a closed
    book reports every provider for the last time and forgets them. Since
    rules 6 what a timer changed counts up to when it was due (a session's
    end, an expiry), not to the later clock command that fired it."""
    providers = inst.providers
    now = ctx.due or ctx.ts
    if inst.phase == "closed":
        for provider in providers.values():
            _count(inst, provider, now)
            _report(state, ctx, inst, provider, final=True)
        inst.providers = {}
        return
    for paddle in (providers if touched is None else touched):
        provider = providers.get(paddle)
        if provider is not None:
            _count(inst, provider, now)


def _report(state: State, ctx: Ctx, inst: market.Instrument, provider: Provider,
            final: bool) -> None:
    trading, quoting, required = provider.trading_ns, provider.quoting_ns, provider.presence_bp
    ctx.emit(LiquidityReport(
        to=audience(state, provider.party), session=inst.session, instrument=inst.id,
        paddle=provider.paddle, party=provider.party, since=provider.since,
        until=provider.counted_to, trading_ns=trading, quoting_ns=quoting,
        presence_bp=quoting * FULL // trading if trading else FULL, required_bp=required,
        met=quoting * FULL >= required * trading, final=final))


@reacts_to(PhaseChanged)
def _on_phase_changed(state: State, ctx: Ctx, event: PhaseChanged) -> None:
    inst = state.books.get(event.instrument)
    if inst is not None and inst.providers:
        refresh(state, ctx, inst, None)


def _provider(inst: market.Instrument, paddle: int) -> Provider:
    provider = inst.providers.get(paddle)
    if provider is None:
        raise Reject("not_a_provider", f"paddle {paddle} is not a liquidity provider on "
                                       f"{inst.id!r}")
    return provider


@handles(AppointLiquidityProvider)
def appoint(state: State, ctx: Ctx, cmd: AppointLiquidityProvider) -> None:
    """Appoint a provider; its resting orders count from now. O(resting orders)."""
    inst = market._operator_live_instrument(state, ctx, cmd.session, cmd.instrument)
    if inst.kind != "units":
        raise Reject("wrong_kind", "liquidity providers quote unit licence rights, not a "
                                   "patent")
    party = market._paddle_owner(state, ctx, cmd.session, cmd.paddle)
    positive(cmd.max_spread, "max_spread")
    positive(cmd.min_qty, "min_qty")
    if not 0 < cmd.presence_bp <= FULL:
        raise Reject("bad_field", f"presence_bp must be 1 to {FULL}, got {cmd.presence_bp}")
    providers = inst.providers
    if cmd.paddle in providers:
        raise Reject("provider_exists", f"paddle {cmd.paddle} is a liquidity provider on "
                                        f"{inst.id!r} already: end it first to change terms")
    if len(providers) >= MAX_PROVIDERS:
        raise Reject("too_many_providers", f"{inst.id!r} has {MAX_PROVIDERS} liquidity "
                                           f"providers, the most it may")
    provider = Provider(paddle=cmd.paddle, party=party, max_spread=cmd.max_spread,
                        min_qty=cmd.min_qty, presence_bp=cmd.presence_bp, since=ctx.ts,
                        counted_to=ctx.ts)
    for (paddle, _), order in inst.book.orders.items():
        if paddle == cmd.paddle:
            note_order(provider, order)
    if not providers:
        providers = inst.providers = {}      # its own dict, not the shared default
    providers[cmd.paddle] = provider
    _count(inst, provider, ctx.ts)
    ctx.emit(LiquidityProviderAppointed(
        to=audience(state, party), session=inst.session, instrument=inst.id, paddle=cmd.paddle,
        party=party, max_spread=cmd.max_spread, min_qty=cmd.min_qty,
        presence_bp=cmd.presence_bp))


@handles(EndLiquidityProvider)
def end(state: State, ctx: Ctx, cmd: EndLiquidityProvider) -> None:
    """End an appointment with its final report. O(k log k)."""
    ctx.require_role("operator")
    inst = market._instrument(state, cmd.session, cmd.instrument)
    provider = _provider(inst, cmd.paddle)
    _count(inst, provider, ctx.ts)
    _report(state, ctx, inst, provider, final=True)
    del inst.providers[cmd.paddle]


@handles(ReportLiquidity)
def report(state: State, ctx: Ctx, cmd: ReportLiquidity) -> None:
    """Report every provider of the instrument; ``reset`` starts a new period.
    O(providers' orders)."""
    ctx.require_role("operator")
    inst = market._instrument(state, cmd.session, cmd.instrument)
    if not inst.providers:
        raise Reject("no_providers", f"{inst.id!r} has no liquidity providers")
    for provider in inst.providers.values():
        _count(inst, provider, ctx.ts)
        _report(state, ctx, inst, provider, final=False)
        if cmd.reset:
            provider.since = ctx.ts
            provider.trading_ns = provider.quoting_ns = 0


@invariant
def _providers_check(state: State) -> None:
    for inst in state.books.values():
        if not inst.providers:
            continue
        assert inst.kind == "units" and inst.phase != "closed", (inst.id, inst.phase)
        assert len(inst.providers) <= MAX_PROVIDERS
        paddles = state.sessions[inst.session].paddles
        for paddle, provider in inst.providers.items():
            assert provider.paddle == paddle and paddles[paddle] == provider.party
            assert 0 <= provider.quoting_ns <= provider.trading_ns, provider
            assert provider.since <= provider.counted_to <= state.now, provider
            assert provider.trading_ns <= provider.counted_to - provider.since, provider
            for (owner, oid), order in inst.book.orders.items():
                if owner == paddle:              # every resting order is indexed
                    assert provider.orders.get(oid) is order, (inst.id, paddle, oid)
            # what was counted last is what the book says now
            assert provider.trading == (inst.phase == "continuous"), (inst.id, provider)
            assert provider.quoting == meets(inst, provider), (inst.id, provider)
