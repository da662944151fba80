"""What if the auctions had run under other rules? Re-run them through the real engine.

Two inputs:

- a bid CSV in the layout of the eBay data set (``auctionid, bid, bidtime,
  bidder, bidderrate, openbid, price, item, auction_type``; see
  tests/data/ebay-auctions/README.md): each auction goes through
  `exchange.ebay` (its own fresh engine, the recorded bids at their times);
- a lotex journal: every English or sealed-bid lot of the recorded sessions
  is set up again in a fresh engine with its own terms (starting bid,
  reserve, Ask, schedule, increments unless others are asked for) under the
  chosen rules, and the bids that were placed on it (accepted or not) are
  sent again at their recorded times (sealed withdrawals too), each paddle
  a party of its own but the seller's, which bids as the lot's seller again
  (and is refused again, ``own_lot``). Every paddle has unlimited credit in
  the re-run, so a bid or withdrawal the engine refused for a reason about
  its sender rather than its price or timing (`BIDDER_REFUSALS`: another
  broker's or an unknown paddle, a frozen or unapproved party, over its
  credit limit, a wrong currency) is left out, not sent again, and counted
  (``left_out``, with the reasons in the note); one refused for its amount or
  time (below the minimum or increment, the lot closed or not open yet) is
  sent again, as under other terms it may count. A standing bid the exchange
  voided (its party frozen after a default or no longer approved, or a
  runner-up that could no longer back its maximum) is voided again at its
  recorded time (the note counts them). These are
  private amounts (sealed bids, proxy maxima, secret reserves): only an
  operator may re-run a journal (``viewer``, see `replay.access`). The recorded
  price is the one the lot's auction gave (hammer at the close or at the
  Ask); a lot that passed has none. A relisted lot is re-run as its first
  round was, up to the relisting (its note says so): a later round is
  another auction. Dutch, reverse and bid-ask lots have no bids that
  another rule could read and are listed as skipped.

For each auction: the recorded price and the price under the rules
(empty: no sale), and whether they agree to the cent. The last line reads
``reproduced N of M closing prices``. O(bids) per auction.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from exchange import ebay
from exchange.commands import (CreateLot, CreateSession, ExtendLot, IssuePaddle, PlaceBid,
                               RegisterParty, ReviewCredit, ScheduleLot, VetLot, WithdrawBid)
from exchange.driver import Driver
from exchange.errors import MAX_INT
from exchange.events import CommandRejected
from exchange.increments import TABLES
from replay.access import PUBLIC, AccessDenied, Viewer
from replay.source import ReplayError, Source

COLUMNS = ["auction", "item", "bids", "recorded", "price", "difference", "reproduced",
           "refused", "left_out", "note"]
MONEY = ("recorded", "price", "difference")
MINUTE = 60 * 10**9
RERUNNABLE = ("english", "sealed_first", "sealed_second")
MAX_SOFT_MINUTES = 7 * 24 * 60          # a soft-close window or extension of a week at most
# Refusals of a recorded bid or withdrawal that are about who sent it, not its
# amount or time: no mechanism or terms would have accepted it, so a journal's
# re-run leaves it out (every re-run paddle is its own approved party with
# unlimited credit and would be accepted). ``own_lot`` is not here: the
# seller's paddle bids as the seller again and is refused again.
BIDDER_REFUSALS = frozenset((
    "not_permitted",         # the sender's role may not bid
    "unknown_paddle",        # an operator's bid with a paddle the session never issued
    "not_your_paddle",       # another broker's paddle (or none)
    "party_frozen",          # the party's credit frozen after a default
    "party_not_approved",    # no credit review passed, or approval withdrawn
    "over_credit_limit",     # more than the party could commit
    "wrong_currency",        # a bid, or a credit limit, in another currency than the lot's
))


@dataclass
class Report:
    rows: list[dict[str, Any]] = field(default_factory=list)
    reproduced: int = 0
    total: int = 0

    @property
    def summary(self) -> str:
        return f"reproduced {self.reproduced} of {self.total} closing prices"

    def add(self, auction: str, item: str, bids: int, recorded: int | None, price: int | None,
            refused: int, note: str = "", left_out: int | None = None) -> None:
        same = recorded == price
        self.rows.append(dict(auction=auction, item=item, bids=bids, recorded=recorded,
                              price=price, reproduced=same, refused=refused, left_out=left_out,
                              note=note or None,
                              difference=price - recorded if price is not None
                              and recorded is not None else None))
        self.total += 1
        self.reproduced += same


def run_path(path: str | os.PathLike, *, rules: str = "english", increments: str | None = None,
             soft_window_min: int | None = None, soft_extend_min: int | None = None,
             limit: int = 0, viewer: Viewer = PUBLIC) -> Report:
    """Re-run a bid CSV or a lotex journal (a directory; operators only) under
    ``rules``. Soft close (english-soft-close): the given window and extension
    in minutes; by default a journal lot's own, else 5 and 5."""
    if rules not in ebay.RULES:
        raise ReplayError(f"unknown rules {rules!r}; choose from {', '.join(ebay.RULES)}")
    if limit < 0:
        raise ReplayError(f"--limit must not be negative (0: every auction), not {limit}")
    for value, option in ((soft_window_min, "--soft-window"), (soft_extend_min, "--soft-extend")):
        if value is not None and not 1 <= value <= MAX_SOFT_MINUTES:
            raise ReplayError(f"{option} must be 1 to {MAX_SOFT_MINUTES} minutes, not {value}")
    if Path(path).is_dir():
        return run_journal(Source.open(path), rules=rules, increments=increments or "lot",
                           limit=limit, viewer=viewer,
                           soft_window=None if soft_window_min is None else soft_window_min * MINUTE,
                           soft_extend=None if soft_extend_min is None else soft_extend_min * MINUTE)
    options = dict(soft_window=(5 if soft_window_min is None else soft_window_min) * MINUTE,
                   soft_extend=(5 if soft_extend_min is None else soft_extend_min) * MINUTE)
    increments = increments or "ebay2003"
    if increments not in TABLES:
        raise ReplayError(f"unknown increment table {increments!r}; known: "
                          f"{', '.join(sorted(TABLES))}")
    return run_csv(path, rules=rules, increments=increments, limit=limit, **options)


def run_csv(path: str | os.PathLike, *, rules: str, increments: str, limit: int = 0,
            **options: int) -> Report:
    """Re-run every auction of an eBay-layout CSV through `exchange.ebay`."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc}") from None
    except UnicodeDecodeError:
        raise ReplayError(f"{path} is not UTF-8 text: give a bid CSV in "
                          f"the eBay layout or a lotex journal directory") from None
    except csv.Error as exc:
        raise ReplayError(f"{path} is not a readable CSV file: {exc}") from None
    try:
        auctions = ebay.auctions_from_rows(rows)
    except (KeyError, ValueError, IndexError) as exc:
        raise ReplayError(f"{path} is not in the eBay bid layout (auctionid, bid, bidtime, "
                          f"bidder, openbid, price, item, auction_type): {exc}") from None
    if limit:
        auctions = auctions[:limit]
    report = Report()
    for auction in auctions:
        try:
            outcome = ebay.run(auction, rules, increments, **options)
        except ValueError as exc:             # the engine refused the auction's setup
            raise ReplayError(f"cannot re-run {exc}") from None
        report.add(auction.auction_id, auction.item, len(auction.bids), outcome.recorded,
                   outcome.price, outcome.bids_refused)
    return report


# --------------------------------------------------------------------------
# a lotex journal
# --------------------------------------------------------------------------

@dataclass
class _Lot:
    serial: str
    terms: Any = None
    reserve: int = 0
    session: str = ""
    seller: int = 0                 # the seller's party
    seller_paddles: set[int] = field(default_factory=set)  # paddles of it that bid (refused)
    opened: Any = None              # the first LotOpened
    recorded: int | None = None
    how: str = ""
    # (ts, kind, paddle, amount): kind "bid", "withdraw" or "void" (the exchange voided it)
    bids: list[tuple[int, str, int, int]] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)  # refusal code -> bids left out
    extended: tuple[int, int] | None = None   # (closes_at, hard_end) an operator moved it to
    relisted: bool = False          # its first round is over: nothing after counts


def _collect(source: Source) -> dict[str, _Lot]:
    """Each lot's first round: its terms, opening, operator extension, bids
    and outcome up to its relisting (a later round is another auction)."""
    lots: dict[str, _Lot] = {}
    paddle_party: dict[tuple[str, int], int] = {}     # (session, paddle) -> party
    for _, entry in source.entries(label="reading bids"):
        env = entry.env
        cmd = env.cmd
        for event in entry.events:
            name = type(event).__name__
            if name == "PaddleIssued":
                paddle_party[(event.session, event.paddle)] = event.party
                continue
            serial = getattr(event, "serial", None)
            if serial in lots and lots[serial].relisted:
                continue
            if name == "LotRelisted" and serial in lots:
                lots[serial].relisted = True
            elif name == "LotCreated":
                lot = lots.setdefault(event.serial, _Lot(event.serial))
                lot.terms, lot.reserve = event.terms, event.reserve
                lot.session, lot.seller = event.session, event.seller
            elif name == "LotScheduled" and event.serial in lots:
                lots[event.serial].terms = event.terms
            elif name == "LotExtended" and type(cmd) is ExtendLot and event.serial in lots:
                lots[event.serial].extended = (event.closes_at, event.hard_end)
            elif name == "LotOpened" and event.serial in lots and lots[event.serial].opened is None:
                lots[event.serial].opened = event
            elif name == "BidVoided" and serial in lots and lots[serial].opened is not None:
                lots[serial].bids.append((env.ts, "void", event.paddle, 0))
            elif name == "LotAwarded" and event.serial in lots:
                lot = lots[event.serial]
                if not lot.how:
                    lot.how = event.how
                    if event.how in ("auction", "ask"):
                        lot.recorded = event.hammer
        serial = getattr(cmd, "serial", None)
        if serial in lots and not lots[serial].relisted:
            lot = lots[serial]
            refusal = next((event.code for event in entry.events
                            if type(event) is CommandRejected), None)
            if type(cmd) in (PlaceBid, WithdrawBid) and lot.opened is not None \
                    and refusal in BIDDER_REFUSALS:
                lot.left_out[refusal] = lot.left_out.get(refusal, 0) + 1
            elif type(cmd) in (PlaceBid, WithdrawBid) and lot.opened is not None:
                lot.bids.append((env.ts, "bid", cmd.paddle, cmd.amount) if type(cmd) is PlaceBid
                                else (env.ts, "withdraw", cmd.paddle, 0))
                if paddle_party.get((lot.session, cmd.paddle)) == lot.seller:
                    lot.seller_paddles.add(cmd.paddle)
    return lots


def run_journal(source: Source, *, rules: str, increments: str = "lot", limit: int = 0,
                soft_window: int | None = None, soft_extend: int | None = None,
                hard_extra: int = 60 * MINUTE, viewer: Viewer = PUBLIC) -> Report:
    """Re-run the English and sealed-bid lots of a journal under ``rules``;
    only for an operator (``viewer``): the bids re-run are private."""
    if not viewer.operator:
        raise AccessDenied("whatif on a journal re-runs private bids (sealed amounts, proxy "
                           "maxima, reserves): give --operator-key FILE (an operator's key, "
                           "checked against the key store)")
    if increments not in TABLES and increments != "lot":
        raise ReplayError(f"unknown increment table {increments!r}; known: "
                          f"{', '.join(sorted(TABLES))}, lot")
    report = Report()
    done = 0
    for lot in _collect(source).values():
        if lot.terms is None or lot.opened is None:
            continue
        if limit and done >= limit:
            break
        done += 1
        if lot.terms.mechanism not in RERUNNABLE:
            report.rows.append(dict(auction=lot.serial, item=lot.terms.title, bids=len(lot.bids),
                                    recorded=lot.recorded,
                                    note=f"skipped: {lot.terms.mechanism} bids do not carry over"))
            continue
        price, refused = _rerun(lot, rules, increments, soft_window, soft_extend, hard_extra)
        left_out = sum(lot.left_out.values())
        voided = sum(1 for bid in lot.bids if bid[1] == "void")
        report.add(lot.serial, lot.terms.title,
                   sum(1 for bid in lot.bids if bid[1] == "bid"), lot.recorded, price, refused,
                   left_out=left_out,
                   note=f"recorded {lot.terms.mechanism}"
                        + (f", sold by {lot.how}" if lot.how and lot.recorded is None else "")
                        + (", relisted: first round only" if lot.relisted else "")
                        + (f", left out {left_out} refused for their sender ("
                           + ", ".join(f"{code} {n}" for code, n in sorted(lot.left_out.items()))
                           + ")" if left_out else "")
                        + (f", {voided} voided again as recorded" if voided else ""))
    return report


def _rerun(lot: _Lot, rules: str, increments: str, soft_window: int | None,
           soft_extend: int | None, hard_extra: int) -> tuple[int | None, int]:
    """Run one lot again in a fresh engine; return (hammer or None, bids refused)."""
    opened = lot.opened
    soft = rules == "english-soft-close"
    own = lot.terms.soft_window and lot.terms.soft_extend
    if soft_window is None:
        soft_window = lot.terms.soft_window if own else 5 * MINUTE
    if soft_extend is None:
        soft_extend = lot.terms.soft_extend if own else 5 * MINUTE
    closes, recorded_hard_end = lot.extended or (lot.terms.closes_at, lot.terms.hard_end)
    hard_end = max(recorded_hard_end, closes + hard_extra) if soft else closes
    terms = msgspec.structs.replace(
        lot.terms, mechanism=ebay.MECHANISM[rules],
        increments=lot.terms.increments if increments == "lot" else increments,
        opens_at=opened.opens_at, closes_at=closes, hard_end=hard_end,
        soft_window=soft_window if soft else 0, soft_extend=soft_extend if soft else 0,
        negotiation_window=0,      # an English auction has no tie-break policy (rules 5)
        tie_break=lot.terms.tie_break if ebay.MECHANISM[rules] != "english" else "earliest")
    setup = opened.opens_at - MINUTE
    d = Driver(start_ts=setup)

    def ok(cmd: Any, **kw: Any) -> list[Any]:
        events = d.send(cmd, **kw)
        refused = next((event for event in events if type(event) is CommandRejected), None)
        if refused is not None:
            raise ReplayError(f"cannot re-run lot {lot.serial} under {rules}: the engine "
                              f"refused its {type(cmd).__name__}: {refused.code}: {refused.text}")
        return events

    ok(CreateSession(session="whatif", name=f"what if: {lot.serial}", currency=terms.currency),
       ts=setup)
    seller = ok(RegisterParty(name="(seller)"), actor="whatif", role="broker")[0].party
    ok(ReviewCredit(party=seller, approved=True, credit_limit=MAX_INT, currency=terms.currency,
                    agreement_version="whatif"))
    paddles: dict[int, int] = {}
    parties: dict[int, int] = {}            # recorded paddle -> its re-run party
    for _, _, paddle, _ in lot.bids:
        if paddle in paddles:
            continue
        if paddle in lot.seller_paddles:      # the seller's own bids: refused again (own_lot)
            party = seller
        else:
            party = ok(RegisterParty(name=f"paddle {paddle}"), actor="whatif",
                       role="broker")[0].party
            ok(ReviewCredit(party=party, approved=True, credit_limit=MAX_INT,
                            currency=terms.currency, agreement_version="whatif"))
        parties[paddle] = party
        paddles[paddle] = ok(IssuePaddle(session="whatif", party=party))[0].paddle
    ok(CreateLot(serial=lot.serial, session="whatif", seller=seller, terms=terms,
                 reserve=lot.reserve), actor="whatif", role="broker")
    ok(VetLot(serial=lot.serial, score=0, approved=True))
    ok(ScheduleLot(serial=lot.serial))
    refused = 0
    for ts, kind, paddle, amount in lot.bids:
        if kind == "void":                  # withdrawing the approval voids the party's bids
            if paddle not in lot.seller_paddles:
                party = parties[paddle]
                ok(ReviewCredit(party=party, approved=False, currency=terms.currency),
                   ts=max(ts, setup))
                ok(ReviewCredit(party=party, approved=True, credit_limit=MAX_INT,
                                currency=terms.currency, agreement_version="whatif"))
            continue
        cmd = (PlaceBid(serial=lot.serial, paddle=paddles[paddle], amount=amount) if kind == "bid"
               else WithdrawBid(serial=lot.serial, paddle=paddles[paddle]))
        events = d.send(cmd, actor="whatif", role="broker", ts=max(ts, setup))
        refused += any(type(event) is CommandRejected for event in events)
    d.tick(hard_end)
    sale = d.engine.state.lots[lot.serial].sale
    if sale is None:
        return None, refused
    return sale.hammer, refused
