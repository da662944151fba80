"""Events: what happened, in the past tense.

Every event is a frozen msgspec Struct tagged with its class name in the
field ``type``, and says who may see it in ``to``: an empty tuple is public
market data (paddle numbers only, never identities); otherwise it lists the
user ids it is private to, and ``OPERATORS`` for every operator. The engine
decides ``to``; the gateway only routes. Sealed amounts and secret reserves
never appear in a public event before the close.

Sections follow `exchange.commands`. Add to your own section.
"""

from __future__ import annotations

from typing import Union

import msgspec

OPERATORS = "@operators"
"""Audience token for every user with the operator role."""


class Event(msgspec.Struct, frozen=True, tag=True, tag_field="type", kw_only=True):
    """Base of every event. ``to=()`` means public."""

    to: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# core
# --------------------------------------------------------------------------

class CommandRejected(Event, frozen=True):
    """The command with sequence ``ref`` was refused and changed nothing."""

    ref: int
    code: str
    text: str


class PartyRegistered(Event, frozen=True):
    party: int
    name: str
    country: str
    broker: str


class CreditReviewed(Event, frozen=True):
    party: int
    approved: bool
    credit_limit: int
    currency: str
    agreement_version: str
    score: int


class SessionCreated(Event, frozen=True):
    session: str
    name: str
    currency: str
    starts_at: int
    ends_at: int


class SessionClosed(Event, frozen=True):
    session: str


class PaddleIssued(Event, frozen=True):
    session: str
    paddle: int
    party: int


class DisplayRateSet(Event, frozen=True):
    base: str
    quote: str
    num: int
    den: int


class CreditChanged(Event, frozen=True):
    """A party's committed exposure in a session changed (private)."""

    session: str
    party: int
    exposure: int
    credit_limit: int


# --------------------------------------------------------------------------
# auctions (issue 2)
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# continuous book and call auction (issue 3)
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# settlement (issue 7)
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# keep last: the union of every event
# --------------------------------------------------------------------------

def _concrete(base: type) -> list[type]:
    found: list[type] = []
    for sub in base.__subclasses__():
        found.append(sub)
        found.extend(_concrete(sub))
    return found


EVENT_TYPES: tuple[type[Event], ...] = tuple(_concrete(Event))
AnyEvent = Union[EVENT_TYPES]  # type: ignore[valid-type]
