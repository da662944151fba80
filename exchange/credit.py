"""Credit limits across every lot and book of a session.

A party's exposure in a session is the sum of its commitments: standing high
bids and proxy maxima (English), live sealed bids, accepted Dutch and Ask
purchases, won lots with the buyer's premium, and resting buy orders. Each
commitment has a key chosen by the module that owns it (for example
``("lot", serial)`` or ``("order", book, order_id)``); setting a key replaces
its amount, setting it to zero releases it. Every operation is O(1).
"""

from __future__ import annotations

from typing import Hashable

import msgspec

from exchange.engine import State
from exchange.errors import Reject


class Exposure(msgspec.Struct, kw_only=True):
    total: int = 0
    items: dict = {}  # key -> amount (minor units)


def exposure(state: State, session: str, party: int) -> Exposure:
    """Return (creating if needed) the exposure of ``party`` in ``session``."""
    exposures = state.exposure
    key = (session, party)
    found = exposures.get(key)
    if found is None:
        found = exposures[key] = Exposure()
    return found


def committed(state: State, session: str, party: int, key: Hashable) -> int:
    """Return the amount committed under ``key``, 0 if none."""
    found = state.exposure.get((session, party))
    return 0 if found is None else found.items.get(key, 0)


def headroom(state: State, session: str, party: int, key: Hashable = None) -> int:
    """Return how much more ``party`` may commit, counting ``key``'s amount as free."""
    limit = state.parties[party].credit_limit
    found = state.exposure.get((session, party))
    if found is None:
        return limit
    return limit - found.total + found.items.get(key, 0)


def check(state: State, session: str, party: int, key: Hashable, amount: int,
          currency: str | None = None) -> None:
    """Reject unless ``party`` can commit ``amount`` under ``key`` (replacing what
    the key holds) within its credit limit, in the limit's currency."""
    holder = state.parties[party]
    if currency is not None and currency != holder.currency:
        raise Reject("wrong_currency", f"the credit limit is in {holder.currency}, "
                                       f"the commitment in {currency}")
    room = holder.credit_limit    # `headroom`, with the party looked up once
    found = state.exposure.get((session, party))
    if found is not None:
        room += found.items.get(key, 0) - found.total
    if amount > room:
        raise Reject("over_credit_limit",
                     f"committing {amount} would exceed the credit limit of "
                     f"{holder.credit_limit} {holder.currency} (room left {room})")


def commit(state: State, session: str, party: int, key: Hashable, amount: int) -> Exposure:
    """Set the commitment under ``key`` to ``amount``; zero releases it. No check:
    call `check` first when the commitment grows. Return the party's exposure."""
    exposures = state.exposure
    found = exposures.get((session, party))
    if found is None:
        found = exposures[(session, party)] = Exposure()
    items = found.items
    old = items.get(key, 0)
    if amount:
        items[key] = amount
    elif old:
        del items[key]
    found.total += amount - old
    return found


def add(state: State, session: str, party: int, key: Hashable, amount: int) -> Exposure:
    """Add ``amount`` to the commitment under ``key`` (`commit` of the sum, with
    one lookup). Return the party's exposure."""
    exposures = state.exposure
    found = exposures.get((session, party))
    if found is None:
        found = exposures[(session, party)] = Exposure()
    items = found.items
    old = items.get(key, 0)
    new = old + amount
    if new:
        items[key] = new
    elif old:
        del items[key]
    found.total += amount
    return found


def release(state: State, session: str, party: int, key: Hashable) -> None:
    """Release the commitment under ``key``."""
    commit(state, session, party, key, 0)
