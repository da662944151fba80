"""What a broker holds right now: its clients' resting orders, live bids, units,
credit and the data rooms they may read.

A read-only query of the engine's state (FIX's order mass status and position
requests in one): a broker whose own systems lost track (a restart, a cut
line) asks for it instead of replaying its private events. It changes
nothing and makes no journal entry; the gateway answers it once everything
applied before it is durable. Only the broker's own parties appear, so the
answer carries nothing another broker could not see of its own.
"""

from __future__ import annotations

import msgspec

from exchange import dataroom
from exchange.book import IOC, POST_ONLY, SELL
from exchange.engine import State


class OpenOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A resting order: ``qty`` is what it has left; ``tif`` "gtc", "gtd" or
    "ioc" (waiting for a call period's uncross)."""

    session: str
    instrument: str
    paddle: int
    order: int
    side: str
    price: int
    qty: int
    tif: str
    post_only: bool
    expires: int


class OpenBid(msgspec.Struct, frozen=True, kw_only=True):
    """A live bid on an open lot: an English proxy maximum (``leading``: its
    paddle leads, the lot standing at ``price``) or a sealed bid or tender
    offer (``leading`` False and ``price`` 0: nothing of the others is told
    before the close); or a tender offer awaiting the buyer's choice."""

    session: str
    serial: str
    paddle: int
    mechanism: str
    amount: int
    leading: bool
    price: int


class Holding(msgspec.Struct, frozen=True, kw_only=True):
    """A party's units of an instrument; ``offered`` of them rest in sells."""

    session: str
    instrument: str
    paddle: int
    party: int
    units: int
    offered: int


class CreditLine(msgspec.Struct, frozen=True, kw_only=True):
    """What a party has committed in a session against its limit."""

    session: str
    paddle: int
    party: int
    exposure: int
    credit_limit: int
    currency: str
    frozen: bool


class RoomAccess(msgspec.Struct, frozen=True, kw_only=True):
    """A party's signature of a lot's NDA, while the lot's data room is open
    (published and unsold, its session open): ``nda`` the version it signed last, ``current``
    whether it is the one the room requires (or the room requires none), and
    how many documents it ``opened``."""

    session: str
    serial: str
    paddle: int
    party: int
    nda: str
    current: bool
    opened: int


class BrokerStatus(msgspec.Struct, frozen=True, kw_only=True):
    orders: list[OpenOrder]
    bids: list[OpenBid]
    holdings: list[Holding]
    credit: list[CreditLine]
    rooms: list[RoomAccess]


def _tif(order) -> tuple[str, bool]:
    if order.tif == IOC:
        return "ioc", False
    timed = "gtd" if order.expires else "gtc"
    return timed, order.tif == POST_ONLY


def broker_status(state: State, broker: str, session: str = "") -> BrokerStatus:
    """Return ``broker``'s resting orders (by paddle, oldest first), live
    bids, holdings and credit, in one session or ("") all. O(paddles and
    lots of those sessions + the books + the broker's paddles and orders in
    them); `status_work` counts that."""
    orders: list[OpenOrder] = []
    bids: list[OpenBid] = []
    holdings: list[Holding] = []
    credit: list[CreditLine] = []
    access: list[RoomAccess] = []
    rooms = dataroom.rooms(state)
    parties = state.parties
    mine_in: dict[str, dict[int, int]] = {}          # session -> the broker's paddle -> party
    for found in _sessions(state, session):
        mine = {paddle: party for paddle, party in found.paddles.items()
                if parties[party].broker == broker}
        if not mine:
            continue
        mine_in[found.id] = mine
        for serial in found.lots:
            lot = state.lots[serial]
            room = rooms.get(serial)
            if room is not None and room.ndas and lot.status in dataroom.OPEN_TO_SIGNERS \
                    and found.open:                     # a room closes with its session
                _room_access(found, serial, room, mine, access)
            if lot.status != "open" and lot.status != "choosing":
                continue
            english = lot.mechanism == "english"
            placed = lot.maxes if english else lot.live
            for paddle in _smaller(mine, placed):       # in the broker's paddle order
                bid = placed.get(paddle)
                if bid is not None:
                    bids.append(OpenBid(session=found.id, serial=serial, paddle=paddle,
                                        mechanism=lot.mechanism, amount=bid.amount,
                                        leading=english and lot.leader == paddle,
                                        price=lot.price if english else 0))
        for paddle, party_id in mine.items():
            party = parties[party_id]
            exposure = state.exposure.get((found.id, party_id))
            credit.append(CreditLine(session=found.id, paddle=paddle, party=party_id,
                                     exposure=exposure.total if exposure is not None else 0,
                                     credit_limit=party.credit_limit, currency=party.currency,
                                     frozen=party.frozen))
    for inst in state.books.values() if mine_in else ():   # (no paddle here: no book)
        mine = mine_in.get(inst.session)
        if mine is None:
            continue
        book = inst.book
        for paddle in mine:                              # (the book's owners are paddles)
            for (_, oid), order in book.owned_by(paddle).items():
                tif, post_only = _tif(order)
                orders.append(OpenOrder(session=inst.session, instrument=inst.id, paddle=paddle,
                                        order=oid, side="sell" if order.side == SELL else "buy",
                                        price=order.price, qty=order.qty, tif=tif,
                                        post_only=post_only, expires=order.expires))
        held = inst.holdings
        if len(held) < len(mine):                       # walk the smaller side
            paddle_of = state.sessions[inst.session].by_party
            owners = [(paddle_of[party_id], party_id) for party_id in held
                      if paddle_of.get(party_id) in mine]
            owners.sort()
        else:
            owners = [(paddle, party_id) for paddle, party_id in mine.items()]
        for paddle, party_id in owners:
            units = held.get(party_id, 0)
            if units:
                holdings.append(Holding(session=inst.session, instrument=inst.id, paddle=paddle,
                                        party=party_id, units=units,
                                        offered=inst.offered.get(party_id, 0)))
    return BrokerStatus(orders=orders, bids=bids, holdings=holdings, credit=credit,
                        rooms=access)


def _room_access(found, serial: str, room, mine: dict[int, int],
                 access: list[RoomAccess]) -> None:
    """Append the broker's parties' signatures in ``room``, walking the smaller
    of its signers and the broker's paddles, in paddle order."""
    if len(room.ndas) < len(mine):
        paddle_of = found.by_party
        signers = sorted((paddle_of[party], party) for party in room.ndas
                         if paddle_of.get(party) in mine)
    else:
        signers = [(paddle, party) for paddle, party in mine.items() if party in room.ndas]
    for paddle, party in signers:
        nda = room.ndas[party]
        access.append(RoomAccess(session=found.id, serial=serial, paddle=paddle, party=party,
                                 nda=nda, current=not room.nda or nda == room.nda,
                                 opened=room.readers.get(party, 0)))


def _smaller(mine: dict[int, int], placed: dict) -> list[int]:
    """The broker's paddles that may have a bid in ``placed``, walking the
    smaller of the two: O(min(len(mine), len(placed)))."""
    if len(placed) < len(mine):
        return sorted(paddle for paddle in placed if paddle in mine)
    return list(mine)


def _sessions(state: State, session: str) -> list:
    if not session:
        return list(state.sessions.values())
    found = state.sessions.get(session)
    return [found] if found is not None else []


def status_work(state: State, session: str = "", broker: str = "") -> int:
    """Return a bound of the items `broker_status` walks for ``broker`` in
    ``session`` (""): paddles and lots; the broker's own paddles once for
    each lot (its data room), each open lot (its bids) and each book (its
    orders and holders), and the broker's resting orders. Nothing others
    bid, signed or rest counts (the walk takes the smaller of the two
    sides, so a bound by those would tell the broker how many others have);
    every book of the exchange counts 1 (each is looked at); 0 for a session
    that does not exist (nothing is walked for it). O(sessions + paddles +
    lots + books x the broker's paddles)."""
    if session and session not in state.sessions:
        return 0
    lots = state.lots
    parties = state.parties
    work = len(state.books)
    mine_in: dict[str, list[int]] = {}
    for found in _sessions(state, session):
        work += len(found.paddles) + len(found.lots)
        mine = [paddle for paddle, party in found.paddles.items()
                if parties[party].broker == broker]
        if not mine:
            continue
        mine_in[found.id] = mine
        work += len(mine) * len(found.lots)              # a data room, had it one
        for serial in found.lots:
            lot = lots[serial]
            if lot.status == "open" or lot.status == "choosing":
                work += len(mine)
    for inst in state.books.values() if mine_in else ():
        mine = mine_in.get(inst.session)
        if mine is not None:
            book = inst.book
            work += len(mine) + sum(len(book.owned_by(paddle)) for paddle in mine)
    return work
