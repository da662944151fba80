"""The gateway's session messages, around the engine's commands and events.

Every message is one ZeroMQ frame holding one MessagePack map with a ``type``
field naming it, exactly like the engine's commands and events (see
PROTOCOL.md). Decoders are strict: unknown types, unknown fields and wrong
types are refused at the edge with a `SessionRejected`.

Order sockets (broker and operator ROUTERs; clients use DEALER):
client -> server `Logon`, `Heartbeat`, `Request`, `Batch`, `Logout`, `Reload`,
`Recap`; server -> client `LogonAccepted`, `Heartbeat`, `Result`, `Results`,
`Notice`, `SessionRejected`, `LoggedOut`, `Reloaded`, `RecapDone`.

Market data (PUB, no authentication): `Market`, `FeedHeartbeat`.

Snapshot and replay (ROUTER; clients use DEALER): `SnapshotRequest` ->
`Snapshot`; `ReplayRequest` -> `Replay`; anything else -> `SessionRejected`.
"""

from __future__ import annotations

from typing import Union

import msgspec

from exchange.commands import AnyCommand
from exchange.events import AnyEvent
from exchange.status import CreditLine, Holding, OpenBid, OpenOrder, RoomAccess

MAX_CLIENT_ID = 64
MAX_BATCH = 1000           # requests in one Batch, at most


class Message(msgspec.Struct, frozen=True, tag=True, tag_field="type", kw_only=True,
              forbid_unknown_fields=True):
    """Base of every gateway session message."""


# -- client -> server on the order sockets -----------------------------------

class Logon(Message, frozen=True):
    """Bind this connection to the key's user. ``heartbeat_ms``: how often each
    side sends a Heartbeat when it has nothing else to send (100..60000); the
    server ends a session silent for three intervals. ``cancel_on_disconnect``:
    None keeps the user's setting in the key store (brokers only). ``notices``:
    receive private events caused by others (and by this user's other
    connections)."""

    heartbeat_ms: int = 1000
    cancel_on_disconnect: bool | None = None
    notices: bool = True


class Heartbeat(Message, frozen=True):
    """I am alive (both directions)."""


class Request(Message, frozen=True):
    """Send one engine command. ``client_id``: 1..64 printable ASCII characters,
    unique per user and trading day (UTC)."""

    client_id: str
    cmd: AnyCommand  # type: ignore[valid-type]


class Batch(Message, frozen=True):
    """Send 1..1000 requests in one message (mass order entry). Each is
    handled exactly as if sent alone, in order, with its own client id and
    journal entry; one `Results` answers them all once the last is durable."""

    requests: list[Request]


class Logout(Message, frozen=True):
    """End the session (cancel-on-disconnect applies)."""


class Reload(Message, frozen=True):
    """Reload the key store now (operators only)."""


class Recap(Message, frozen=True):
    """Send again the private events addressed to me (as `Notice`s) of the
    journal entries from ``from_seq`` on, at most ``limit`` (1..10000)
    entries scanned; a `RecapDone` follows. For catching up after a
    disconnection."""

    from_seq: int
    limit: int = 1000


class StatusRequest(Message, frozen=True):
    """Ask for a broker's resting orders, live bids, units and credit now, in ``session``
    ("": every session). A broker asks for its own (``broker`` "" or itself);
    an operator names the broker. A `Status` answers."""

    session: str = ""
    broker: str = ""
    ref: str = ""           # echoed in the `Status` and in a refusal's ``client_id``


ClientMessage = Union[Logon, Heartbeat, Request, Batch, Logout, Reload, Recap, StatusRequest]


# -- server -> client on the order sockets -----------------------------------

class LogonAccepted(Message, frozen=True):
    user: str
    role: str
    heartbeat_ms: int
    cancel_on_disconnect: bool
    trading_day: str       # YYYY-MM-DD, UTC
    last_seq: int          # last durable journal sequence
    max_message_bytes: int = 0   # larger frames from the client drop its connection


class Result(Message, frozen=True):
    """The outcome of a `Request`, sent once it is durable. ``seq``: the journal
    sequence of the command. ``accepted`` False means a business reject:
    ``code`` and ``text`` are the engine's. ``events``: every event of the
    command the user may see (public ones included). ``resent``: this answers
    a resend of a known client id; nothing was done again."""

    client_id: str
    seq: int
    accepted: bool
    code: str = ""
    text: str = ""
    events: list[AnyEvent] = []  # type: ignore[valid-type]
    resent: bool = False


class Notice(Message, frozen=True):
    """Private events for this user caused by another command (or a timer),
    sent once durable. ``seq``: the journal sequence that caused them."""

    seq: int
    ts: int
    events: list[AnyEvent]  # type: ignore[valid-type]


class SessionRejected(Message, frozen=True):
    """A message refused before it reached the engine (nothing was journaled).
    ``client_id`` is set when the message was a Request that could be read."""

    code: str
    text: str
    client_id: str = ""


class Results(Message, frozen=True):
    """The answers to a `Batch`, in its order: for each request its `Result`,
    or the `SessionRejected` that refused it alone."""

    results: list[Union[Result, SessionRejected]]


class LoggedOut(Message, frozen=True):
    """The session ended (answer to `Logout`, or the server ended it)."""

    reason: str = ""


class Reloaded(Message, frozen=True):
    users: int   # active users after the reload


class RecapDone(Message, frozen=True):
    """The end of a recap: every entry up to ``through`` was scanned; ask
    again from ``through + 1`` if ``more``."""

    through: int
    more: bool


class Status(Message, frozen=True):
    """A broker's state after every journal entry up to ``seq`` (all durable):
    its clients' resting orders, live bids, units, credit and data-room
    signatures per session;
    ``session`` and ``broker`` as asked ("" session: all)."""

    seq: int
    session: str
    broker: str
    ref: str
    orders: list[OpenOrder]
    bids: list[OpenBid]
    holdings: list[Holding]
    credit: list[CreditLine]
    rooms: list[RoomAccess] = []


ServerMessage = Union[LogonAccepted, Heartbeat, Result, Results, Notice, SessionRejected,
                      LoggedOut, Reloaded, RecapDone, Status]


# -- market data (PUB) ---------------------------------------------------------

class Market(Message, frozen=True):
    """The public events of one journal entry. ``seq`` is the entry's journal
    sequence; ``prev`` the seq of the previous Market message (0 for none):
    if ``prev`` is above what you hold, you missed messages (ask a replay)."""

    seq: int
    prev: int
    ts: int
    events: list[AnyEvent]  # type: ignore[valid-type]


class FeedHeartbeat(Message, frozen=True):
    """Nothing published for a while; ``seq`` is the last Market message sent."""

    seq: int
    ts: int


FeedMessage = Union[Market, FeedHeartbeat]


# -- snapshot and replay (ROUTER) ----------------------------------------------

class SnapshotRequest(Message, frozen=True):
    """The current public state of a session, or of one lot or instrument
    (``key``), as the public events that make it, covering the feed up to
    ``Snapshot.seq``. Empty ``session`` and ``key``: the whole market."""

    session: str = ""
    key: str = ""


class Snapshot(Message, frozen=True):
    seq: int      # covers every Market message with seq <= this
    session: str
    key: str
    events: list[AnyEvent]  # type: ignore[valid-type]
    ts: int = 0   # the feed's time when it was taken (a FeedHeartbeat's then), ns UTC


class ReplayRequest(Message, frozen=True):
    """Every Market message with ``from_seq <= seq <= to_seq`` (0: up to the
    latest), at most ``limit`` (1..10000) per answer."""

    from_seq: int
    to_seq: int = 0
    limit: int = 1000


class Replay(Message, frozen=True):
    """Market messages in order. ``through``: every message with seq at or
    below it up to the request's ``to_seq`` is included (ask again from
    ``through + 1`` if ``more``)."""

    messages: list[Market]
    through: int
    more: bool


class ReplayOut(msgspec.Struct, tag="Replay", tag_field="type", kw_only=True):
    """Encode-only twin of `Replay` that embeds Market messages as they were
    sent (`msgspec.Raw`): a replay answer is never decoded and encoded again."""

    messages: list[msgspec.Raw]
    through: int
    more: bool


DataRequest = Union[SnapshotRequest, ReplayRequest]
DataReply = Union[Snapshot, Replay, SessionRejected]


# -- codecs --------------------------------------------------------------------

_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode
client_decoder = msgspec.msgpack.Decoder(ClientMessage)
server_decoder = msgspec.msgpack.Decoder(ServerMessage)
feed_decoder = msgspec.msgpack.Decoder(FeedMessage)
data_request_decoder = msgspec.msgpack.Decoder(DataRequest)
data_reply_decoder = msgspec.msgpack.Decoder(DataReply)


# -- session-level reject codes (stable API, like the engine's reason codes) ---

SESSION_REJECTS: dict[str, str] = {
    "undecodable": "the frame is not one MessagePack message",
    "invalid_message": "the message does not match the schema (type, fields or field types)",
    "not_logged_on": "send Logon first",
    "bad_client_id": "a client id is 1 to 64 printable ASCII characters",
    "duplicate_client_id": "this client id was used today for a different command",
    "not_permitted": "this user or connection may not send this message",
    "not_your_client": "the party is not among the broker's clients in the key store",
    "revoked": "the user's key was revoked",
    "bad_heartbeat": "heartbeat_ms must be between 100 and 60000",
    "too_many_sessions": "the user already holds the most sessions the server allows",
    "internal_error": "the exchange failed to process the command; nothing was recorded",
    "entry_too_large": "the command's outcome (its journal entry) is larger than the journal "
                       "takes; nothing was done",
    "bad_request": "the snapshot, replay, recap or status request has values out of range",
    "bad_batch": "a Batch holds 1 to 1000 requests",
    "throttled": "the broker sent more requests in the last second than the exchange allows "
                 "(max_requests_per_second); nothing was done",
    "busy": "the exchange cannot look this resend up now: send it again later, same client id",
    "journal_damaged": "the journal entries this needs are damaged on the server; nothing was "
                       "done: ask the exchange's operator",
}
