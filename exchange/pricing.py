"""Pricing by an expert inquiry panel drawn at random (Shanghai Technology Exchange).

A lot is first valued, then listed and bid on: the exchange draws a panel of
experts at random from its pool, each gives a price range, and the exchange
tells the seller (and, once the lot is listed, the market) the panel's range.

- The pool (`RegisterExpert`, `RetireExpert`) and every panel's members and
  individual ranges are the operators' alone: who values a lot is never
  published, so no one can lobby the panel.
- The draw (`DrawPanel`) ranks the active experts of the asked field by the
  SHA-256 of (lot, panel round, the entry's sequence number and nanosecond
  time stamp, expert) and takes the first ``size``: its sender cannot
  compute it in advance, yet it is a pure function of the journal, so an
  auditor recomputes it. One panel of a lot is open at a time; it ends with
  its range, a `CancelPanel`, or when the lot opens, is withdrawn or its
  session closes, or (rules 4) sells without opening. A retired expert keeps its seat on an open panel, but its
  ranges stop counting.
- `PublishPriceRange` closes the panel: low = the median of the experts'
  lows, high = the median of their highs (the lower median of an even
  count), from at least half the panel. Public if the lot is published, else
  private to the seller's side; publishing the lot then lists the last range.

State: ``state.extra["pricing"]``: a `Pool`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from exchange.commands import (CancelPanel, DrawPanel, PublishPriceRange, RecordValuation,
                               RegisterExpert, RetireExpert)
from exchange.engine import Ctx, State, handles, private, reacts_to
from exchange.errors import MAX_INT, Reject, positive, published_reason, register_reasons
from exchange.events import (ExpertRegistered, ExpertRetired, LotAwarded, LotOpened, LotScheduled,
                             LotWithdrawn, PanelDiscarded, PanelDrawn, PriceRangePublished,
                             SessionClosed, ValuationRecorded)
from exchange.invariants import invariant
from exchange.lots import get_lot, seller_audience

register_reasons({
    "unknown_expert": "no such expert in the pool",
    "too_few_experts": "the pool holds fewer active experts of the field than the panel needs",
    "panel_open": "the lot has a panel that has not published its range yet",
    "no_panel": "the lot has no open panel",
    "not_on_panel": "the expert is not on the lot's open panel",
    "too_few_valuations": "fewer than half of the panel valued the lot",
    "expert_exists": "an active expert of that name is in the pool",
    "too_many_experts": "the pool holds the most experts it may",
})

MAX_PANEL = 15
MAX_EXPERT_FIELDS = 20
MAX_EXPERTS = 10_000             # in the pool, retired ones included (a draw scans them)
MAX_EXPERT_NAME = 200
PRICED = ("draft", "vetted", "scheduled", "passed")     # a lot may be (re)valued while so


class Expert(msgspec.Struct, kw_only=True):
    id: int
    name: str
    fields: tuple[str, ...]
    active: bool = True


class Panel(msgspec.Struct, kw_only=True):
    """A lot's panel ``round`` (1, 2, ...): ``experts`` in draw order,
    ``valuations`` expert -> (low, high), ``published`` (low, high) once it
    published its range, ``discarded`` if it ended without one."""

    round: int
    experts: tuple[int, ...]
    field: str
    valuations: dict[int, tuple[int, int]] = {}
    published: tuple[int, int] | None = None
    discarded: bool = False
    sold_open: bool = False      # its lot sold while it was open, under rules 3 (it stayed)

    @property
    def open(self) -> bool:
        return self.published is None and not self.discarded


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


def draw_rank(serial: str, round_: int, seq: int, ts: int, expert: int) -> bytes:
    """The key experts are drawn by, lowest first: the lot, the panel's round,
    the entry's sequence number and time (the nanosecond the exchange stamps
    on the command, which its sender cannot know in advance) and the expert."""
    return hashlib.sha256(f"panel/{serial}/{round_}/{seq}/{ts}/{expert}".encode()).digest()


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
    """Add an expert. O(experts) (one person, one seat)."""
    ctx.require_role("operator")
    name = cmd.name
    if not name or name != name.strip() or not name.isprintable():
        raise Reject("bad_field", "an expert needs a name of printable characters, without "
                                  "leading or trailing spaces")
    if len(name) > MAX_EXPERT_NAME:
        raise Reject("too_long", f"an expert's name has at most {MAX_EXPERT_NAME} characters")
    if len(cmd.fields) > MAX_EXPERT_FIELDS:
        raise Reject("too_long", f"an expert has at most {MAX_EXPERT_FIELDS} fields")
    fields = tuple(_field(f) for f in cmd.fields)
    if "" in fields or len(set(fields)) != len(fields):
        raise Reject("bad_field", "an expert's fields are named, once each")
    found = pool(state)
    if len(found.experts) >= MAX_EXPERTS:
        raise Reject("too_many_experts", f"the pool holds {MAX_EXPERTS} experts, the most "
                                         f"it may")
    if any(e.active and e.name == name for e in found.experts.values()):
        raise Reject("expert_exists", f"an active expert named {name!r} is in the pool: one "
                                      f"person, one seat")
    _pool_for_change(state).experts[ctx.seq] = Expert(id=ctx.seq, name=name, fields=fields)
    ctx.emit(ExpertRegistered(to=private(), expert=ctx.seq, name=name, fields=fields))


@handles(RetireExpert)
def retire_expert(state: State, ctx: Ctx, cmd: RetireExpert) -> None:
    """Take an expert out of future draws and out of open panels' counts: its
    ranges there no longer count, and it may give none (e.g. a conflict of
    interest found). O(panels)."""
    ctx.require_role("operator")
    found = pool(state)
    expert = found.experts.get(cmd.expert)
    if expert is None or not expert.active:
        raise Reject("unknown_expert", f"no active expert {cmd.expert} in the pool")
    expert.active = False
    for panel in found.panels.values():
        if panel.open:
            panel.valuations.pop(expert.id, None)
    ctx.emit(ExpertRetired(to=private(), expert=expert.id))


@handles(DrawPanel)
def draw_panel(state: State, ctx: Ctx, cmd: DrawPanel) -> None:
    """Draw the panel. O(experts log experts)."""
    ctx.require_role("operator")
    lot = get_lot(state, cmd.serial)
    _priced(state, lot)
    size = positive(cmd.size, "a panel's size")
    if size > MAX_PANEL:
        raise Reject("out_of_range", f"a panel has at most {MAX_PANEL} experts")
    field = _field(cmd.field)
    found = pool(state)
    panel = found.panels.get(lot.serial)
    if panel is not None and panel.open:
        raise Reject("panel_open", f"panel {panel.round} of lot {lot.serial} has not "
                                   f"published its range")
    round_ = panel.round + 1 if panel is not None else 1
    candidates = [e.id for e in found.experts.values()
                  if e.active and (not field or not e.fields or field in e.fields)]
    if len(candidates) < size:
        raise Reject("too_few_experts", f"the pool holds {len(candidates)} active experts"
                                        + (f" of {field!r}" if field else "")
                                        + f", fewer than {size}")
    chosen = tuple(sorted(candidates,
                          key=lambda e: draw_rank(lot.serial, round_, ctx.seq, ctx.ts, e))[:size])
    _pool_for_change(state).panels[lot.serial] = Panel(round=round_, experts=chosen,
                                                       field=field)
    ctx.emit(PanelDrawn(to=private(), serial=lot.serial, session=lot.session, round=round_,
                        experts=chosen, field=field))


def _priced(state: State, lot) -> None:
    if lot.status not in PRICED:
        raise Reject("bad_status", f"lot {lot.serial} is {lot.status}: a panel values a lot "
                                   f"before it opens, or after a pass")
    if not state.sessions[lot.session].open:
        raise Reject("session_closed", f"session {lot.session!r} is closed")


def _open_panel_of(state: State, ctx: Ctx, serial: str) -> tuple[Any, Panel]:
    """Return a lot being priced and its open panel (operators only)."""
    ctx.require_role("operator")
    lot = get_lot(state, serial)
    _priced(state, lot)
    return lot, _open_panel(state, lot)


def _open_panel(state: State, lot) -> Panel:
    panel = pool(state).panels.get(lot.serial)
    if panel is None or not panel.open:
        raise Reject("no_panel", f"lot {lot.serial} has no open panel")
    return panel


@handles(RecordValuation)
def record_valuation(state: State, ctx: Ctx, cmd: RecordValuation) -> None:
    """Record (or replace) an expert's range. O(1)."""
    lot, panel = _open_panel_of(state, ctx, cmd.serial)
    if cmd.expert not in panel.experts:
        raise Reject("not_on_panel", f"expert {cmd.expert} is not on panel {panel.round} of "
                                     f"lot {lot.serial}")
    if not pool(state).experts[cmd.expert].active:
        raise Reject("unknown_expert", f"expert {cmd.expert} was retired: its ranges no "
                                       f"longer count")
    low, high = positive(cmd.low, "the low"), positive(cmd.high, "the high")
    if low > high:
        raise Reject("bad_field", f"the low ({low}) is above the high ({high})")
    panel.valuations[cmd.expert] = (low, high)
    ctx.emit(ValuationRecorded(to=private(), serial=lot.serial, session=lot.session,
                               round=panel.round, expert=cmd.expert, low=low, high=high))


@handles(PublishPriceRange)
def publish_price_range(state: State, ctx: Ctx, cmd: PublishPriceRange) -> None:
    """Close the panel and tell its range. O(panel log panel)."""
    lot, panel = _open_panel_of(state, ctx, cmd.serial)
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


@handles(CancelPanel)
def cancel_panel(state: State, ctx: Ctx, cmd: CancelPanel) -> None:
    """Discard the lot's open panel. O(1)."""
    ctx.require_role("operator")
    lot = get_lot(state, cmd.serial)
    panel = _open_panel(state, lot)
    reason = published_reason(cmd.reason, "cancelling a panel")
    _discard(ctx, lot, panel, reason)


def _discard(ctx: Ctx, lot, panel: Panel, reason: str) -> None:
    panel.discarded = True
    ctx.emit(PanelDiscarded(to=private(), serial=lot.serial, session=lot.session,
                            round=panel.round, reason=reason))


@reacts_to(LotOpened)
def _discard_on_opening(state: State, ctx: Ctx, event: LotOpened) -> None:
    """Bidding sets the price now: a panel still open ends without a range. O(1)."""
    panel = pool(state).panels.get(event.serial)
    if panel is not None and panel.open:
        _discard(ctx, state.lots[event.serial], panel, "the lot opened")


@reacts_to(LotAwarded)
def _discard_on_sale(state: State, ctx: Ctx, event: LotAwarded) -> None:
    """Since rules 4, a panel still open when its lot sells (at the Ask before
    it opened, by negotiation after a pass) ends without a range. O(1)."""
    panel = pool(state).panels.get(event.serial)
    if panel is not None and panel.open:
        if ctx.rules < 4:
            panel.sold_open = True
        else:
            _discard(ctx, state.lots[event.serial], panel, "the lot sold")


@reacts_to(LotWithdrawn)
def _discard_on_withdrawal(state: State, ctx: Ctx, event: LotWithdrawn) -> None:
    panel = pool(state).panels.get(event.serial)
    if panel is not None and panel.open:
        _discard(ctx, state.lots[event.serial], panel, "the lot was withdrawn")


@reacts_to(SessionClosed)
def _discard_on_session_close(state: State, ctx: Ctx, event: SessionClosed) -> None:
    """O(panels)."""
    for serial, panel in pool(state).panels.items():
        lot = state.lots[serial]
        if panel.open and lot.session == event.session:
            _discard(ctx, lot, panel, "the session closed")


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
        assert not (panel.published is not None and panel.discarded), serial
        if panel.open:
            assert all(found.experts[e].active for e in panel.valuations), serial
            assert panel.sold_open or state.lots[serial].status not in ("sold", "settled"), \
                serial                                   # (rules 3 kept it: sold_open)
        if panel.published is not None:
            assert panel.published[0] <= panel.published[1], serial
            told = found.ranges[serial]
            assert (told.round, told.low, told.high) == (panel.round, *panel.published), serial
    for serial, told in found.ranges.items():
        assert 0 < told.low <= told.high and 2 * told.valuations >= told.panel, serial
        assert told.valuations <= told.panel <= MAX_PANEL, serial
        assert told.listed == bool(state.lots[serial].opens_at), serial
