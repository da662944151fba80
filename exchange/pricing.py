"""Pricing by an expert inquiry panel drawn at random (Shanghai Technology Exchange).

A lot is first valued, then listed and bid on: the exchange draws a panel of
experts at random from its pool, each gives a price range, and the exchange
tells the seller (and, once the lot is listed, the market) the panel's range.

- The pool (`RegisterExpert`, `RetireExpert`) and every panel's members and
  individual ranges are the operators' alone: who values a lot is never
  published, so no one can lobby the panel.
- The draw (`DrawPanel`) ranks the active experts of the asked field by the
  SHA-256 of (lot, panel round, envelope sequence, expert) and takes the
  first ``size``: random to everyone, yet a pure function of the journal,
  so an auditor recomputes it. One panel of a lot is open at a time.
- `PublishPriceRange` closes the panel: low = the median of the experts'
  lows, high = the median of their highs (the lower median of an even
  count), from at least half the panel. Public if the lot is published, else
  private to the seller's side; publishing the lot then lists the last range.

State: ``state.extra["pricing"]``: a `Pool`.
"""

from __future__ import annotations

import hashlib

import msgspec

from exchange.commands import (DrawPanel, PublishPriceRange, RecordValuation, RegisterExpert,
                               RetireExpert)
from exchange.engine import Ctx, State, handles, private, reacts_to
from exchange.errors import MAX_INT, Reject, positive, register_reasons
from exchange.events import (ExpertRegistered, ExpertRetired, LotScheduled, PanelDrawn,
                             PriceRangePublished, ValuationRecorded)
from exchange.invariants import invariant
from exchange.lots import get_lot, seller_audience

register_reasons({
    "unknown_expert": "no such expert in the pool",
    "too_few_experts": "the pool holds fewer active experts of the field than the panel needs",
    "panel_open": "the lot has a panel that has not published its range yet",
    "no_panel": "the lot has no open panel",
    "not_on_panel": "the expert is not on the lot's open panel",
    "too_few_valuations": "fewer than half of the panel valued the lot",
})

MAX_PANEL = 15
MAX_EXPERT_FIELDS = 20
PRICED = ("draft", "vetted", "scheduled", "passed")     # a lot may be (re)valued while


class Expert(msgspec.Struct, kw_only=True):
    id: int
    name: str
    fields: tuple[str, ...]
    active: bool = True


class Panel(msgspec.Struct, kw_only=True):
    """A lot's panel ``round`` (1, 2, ...): ``experts`` in draw order,
    ``valuations`` expert -> (low, high), ``published`` (low, high) once closed."""

    round: int
    experts: tuple[int, ...]
    field: str
    valuations: dict[int, tuple[int, int]] = {}
    published: tuple[int, int] | None = None


class Range(msgspec.Struct, kw_only=True):
    """A lot's last published range; ``listed``: the public was told it."""

    round: int
    low: int
    high: int
    valuations: int
    panel: int
    listed: bool


class Pool(msgspec.Struct, kw_only=True):
    experts: dict[int, Expert] = {}
    panels: dict[str, Panel] = {}            # serial -> its latest panel
    ranges: dict[str, Range] = {}            # serial -> its last published range


_EMPTY = Pool()


def pool(state: State) -> Pool:
    """Return the pool (read only; `_pool_for_change` makes it)."""
    return state.extra.get("pricing", _EMPTY)


def _pool_for_change(state: State) -> Pool:
    found = state.extra.get("pricing")
    if found is None:
        found = state.extra["pricing"] = Pool()
    return found


def draw_rank(serial: str, round_: int, seq: int, expert: int) -> bytes:
    """The key experts are drawn by: lowest first."""
    return hashlib.sha256(f"panel/{serial}/{round_}/{seq}/{expert}".encode()).digest()


def median_low(values: list[int]) -> int:
    """The median of integers; the lower of the two middle ones for an even count."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def _field(text: str) -> str:
    if text != text.strip() or not text.isprintable() or len(text) > 100:
        raise Reject("bad_field", "a technology field is printable text of at most 100 "
                                  "characters, without leading or trailing spaces")
    return text


@handles(RegisterExpert)
def register_expert(state: State, ctx: Ctx, cmd: RegisterExpert) -> None:
    """Add an expert. O(fields)."""
    ctx.require_role("operator")
    name = cmd.name.strip()
    if not name:
        raise Reject("bad_field", "an expert needs a name")
    if len(cmd.fields) > MAX_EXPERT_FIELDS:
        raise Reject("too_long", f"an expert has at most {MAX_EXPERT_FIELDS} fields")
    fields = tuple(_field(f) for f in cmd.fields if f)
    if len(set(fields)) != len(fields):
        raise Reject("bad_field", "an expert's fields are named once each")
    _pool_for_change(state).experts[ctx.seq] = Expert(id=ctx.seq, name=name, fields=fields)
    ctx.emit(ExpertRegistered(to=private(), expert=ctx.seq, name=name, fields=fields))


@handles(RetireExpert)
def retire_expert(state: State, ctx: Ctx, cmd: RetireExpert) -> None:
    """Take an expert out of future draws (the panels it sits on keep it). O(1)."""
    ctx.require_role("operator")
    expert = pool(state).experts.get(cmd.expert)
    if expert is None or not expert.active:
        raise Reject("unknown_expert", f"no active expert {cmd.expert} in the pool")
    expert.active = False
    ctx.emit(ExpertRetired(to=private(), expert=expert.id))


@handles(DrawPanel)
def draw_panel(state: State, ctx: Ctx, cmd: DrawPanel) -> None:
    """Draw the panel. O(experts log experts)."""
    ctx.require_role("operator")
    lot = get_lot(state, cmd.serial)
    _priced(lot)
    size = positive(cmd.size, "a panel's size")
    if size > MAX_PANEL:
        raise Reject("out_of_range", f"a panel has at most {MAX_PANEL} experts")
    field = _field(cmd.field)
    found = pool(state)
    panel = found.panels.get(lot.serial)
    if panel is not None and panel.published is None:
        raise Reject("panel_open", f"panel {panel.round} of lot {lot.serial} has not "
                                   f"published its range")
    round_ = panel.round + 1 if panel is not None else 1
    candidates = [e.id for e in found.experts.values()
                  if e.active and (not field or not e.fields or field in e.fields)]
    if len(candidates) < size:
        raise Reject("too_few_experts", f"the pool holds {len(candidates)} active experts"
                                        + (f" of {field!r}" if field else "")
                                        + f", fewer than {size}")
    chosen = tuple(sorted(candidates, key=lambda e: draw_rank(lot.serial, round_, ctx.seq, e))
                   [:size])
    _pool_for_change(state).panels[lot.serial] = Panel(round=round_, experts=chosen,
                                                       field=field)
    ctx.emit(PanelDrawn(to=private(), serial=lot.serial, session=lot.session, round=round_,
                        experts=chosen, field=field))


def _priced(lot) -> None:
    if lot.status not in PRICED:
        raise Reject("bad_status", f"lot {lot.serial} is {lot.status}: a panel values a lot "
                                   f"before it opens, or after a pass")


def _open_panel(state: State, lot) -> Panel:
    panel = pool(state).panels.get(lot.serial)
    if panel is None or panel.published is not None:
        raise Reject("no_panel", f"lot {lot.serial} has no open panel")
    return panel


@handles(RecordValuation)
def record_valuation(state: State, ctx: Ctx, cmd: RecordValuation) -> None:
    """Record (or replace) an expert's range. O(1)."""
    ctx.require_role("operator")
    lot = get_lot(state, cmd.serial)
    _priced(lot)
    panel = _open_panel(state, lot)
    if cmd.expert not in panel.experts:
        raise Reject("not_on_panel", f"expert {cmd.expert} is not on panel {panel.round} of "
                                     f"lot {lot.serial}")
    low, high = positive(cmd.low, "the low"), positive(cmd.high, "the high")
    if low > high:
        raise Reject("bad_field", f"the low ({low}) is above the high ({high})")
    panel.valuations[cmd.expert] = (low, high)
    ctx.emit(ValuationRecorded(to=private(), serial=lot.serial, session=lot.session,
                               round=panel.round, expert=cmd.expert, low=low, high=high))


@handles(PublishPriceRange)
def publish_price_range(state: State, ctx: Ctx, cmd: PublishPriceRange) -> None:
    """Close the panel and tell its range. O(panel log panel)."""
    ctx.require_role("operator")
    lot = get_lot(state, cmd.serial)
    _priced(lot)
    panel = _open_panel(state, lot)
    given = [panel.valuations[e] for e in panel.experts if e in panel.valuations]
    if 2 * len(given) < len(panel.experts):
        raise Reject("too_few_valuations", f"{len(given)} of the {len(panel.experts)} experts "
                                           f"of panel {panel.round} valued lot {lot.serial}; "
                                           f"at least half must")
    low, high = median_low([v[0] for v in given]), median_low([v[1] for v in given])
    panel.published = (low, high)
    told = Range(round=panel.round, low=low, high=high, valuations=len(given),
                 panel=len(panel.experts), listed=bool(lot.opens_at))
    _pool_for_change(state).ranges[lot.serial] = told
    ctx.emit(_range(lot, told, () if told.listed else seller_audience(state, lot)))


def _range(lot, told: Range, to: tuple[str, ...]) -> PriceRangePublished:
    return PriceRangePublished(to=to, serial=lot.serial, session=lot.session, round=told.round,
                               low=told.low, high=told.high, currency=lot.currency,
                               valuations=told.valuations, panel=told.panel)


@reacts_to(LotScheduled)
def _list_on_publication(state: State, ctx: Ctx, event: LotScheduled) -> None:
    """List the lot's last published range when the lot is first published. O(1)."""
    told = pool(state).ranges.get(event.serial)
    if told is None or told.listed:
        return
    told.listed = True
    ctx.emit(_range(state.lots[event.serial], told, ()))


@invariant
def _pricing_consistent(state) -> None:
    found = pool(state)
    for expert_id, expert in found.experts.items():
        assert expert.id == expert_id
    for serial, panel in found.panels.items():
        assert serial in state.lots and 1 <= len(panel.experts) <= MAX_PANEL, serial
        assert len(set(panel.experts)) == len(panel.experts), serial
        assert all(e in found.experts for e in panel.experts), serial
        assert set(panel.valuations) <= set(panel.experts), serial
        assert all(0 < low <= high <= MAX_INT for low, high in panel.valuations.values())
        if panel.published is not None:
            assert panel.published[0] <= panel.published[1], serial
    for serial, told in found.ranges.items():
        assert 0 < told.low <= told.high and 2 * told.valuations >= told.panel, serial
        assert not told.listed or state.lots[serial].opens_at, serial
