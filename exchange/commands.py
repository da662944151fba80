"""Commands: what a user asks the engine to do, in the imperative.

Every command is a frozen msgspec Struct tagged with its class name in the
field ``type``. The same types are the wire format (gateway), the journal
format (recorder) and the replay format. Fields are named once and never
renamed; money is an int in minor units of the lot's currency, time an int
of nanoseconds UTC.

The gateway wraps each command in an `Envelope` that carries what only the
server may say: the sequence number, the time, and the authenticated user
and role. The engine trusts the envelope and nothing in the command body
about who sent it.

Sections: core (participants, sessions, clock), auctions (issue 2),
continuous book (issue 3), settlement (issue 7). Add to your own section.
"""

from __future__ import annotations

from typing import Literal, Union

import msgspec


class Command(msgspec.Struct, frozen=True, tag=True, tag_field="type", kw_only=True,
              forbid_unknown_fields=True):
    """Base of every command."""


Role = Literal["operator", "broker", "viewer", "system"]


# --------------------------------------------------------------------------
# core: clock, participants, sessions, display rates
# --------------------------------------------------------------------------

class Tick(Command, frozen=True):
    """Advance the engine clock to the envelope's time and fire what is due."""


class RegisterParty(Command, frozen=True):
    """Register a client (bidder or seller) of the sending broker.

    The party id is the envelope's sequence number. An operator may register
    a party for a broker by naming it in ``broker``.
    """

    name: str
    country: str = ""
    broker: str = ""


class ReviewCredit(Command, frozen=True):
    """Record an operator's credit review of a party (operator only)."""

    party: int
    approved: bool
    credit_limit: int = 0
    currency: str = "USD"
    agreement_version: str = ""
    score: int = 0


class CreateSession(Command, frozen=True):
    """Open a trading session that groups lots; may span days (operator only)."""

    session: str
    name: str
    currency: str = "USD"
    starts_at: int = 0
    ends_at: int = 0


class CloseSession(Command, frozen=True):
    """Close a session to new paddles and lots (operator only)."""

    session: str


class IssuePaddle(Command, frozen=True):
    """Issue an anonymous paddle number to an approved party (operator only)."""

    session: str
    party: int


class SetDisplayRate(Command, frozen=True):
    """Set the display rate from one currency to another: 1 unit of ``base``
    shows as ``num / den`` units of ``quote``. Display only (operator only)."""

    base: str
    quote: str
    num: int
    den: int


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
# keep last: the union of every command and the envelope
# --------------------------------------------------------------------------

def _concrete(base: type) -> list[type]:
    found: list[type] = []
    for sub in base.__subclasses__():
        found.append(sub)
        found.extend(_concrete(sub))
    return found


COMMAND_TYPES: tuple[type[Command], ...] = tuple(_concrete(Command))
AnyCommand = Union[COMMAND_TYPES]  # type: ignore[valid-type]


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """A sequenced command as the engine receives it and the journal keeps it."""

    seq: int
    ts: int
    actor: str
    role: Role
    cmd: AnyCommand
    client_id: str = ""
