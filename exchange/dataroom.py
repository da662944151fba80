"""Data rooms: a lot's documents, opened to parties that signed its NDA.

Each lot carries a catalogue entry and a data room; the room opens only to
bidders who signed a non-disclosure agreement (Ocean Tomo). lotex keeps the
room's index (name, version, SHA-256 digest, size), where the venue's
document store keeps each file, the NDA register and the access log (each
`OpenDocument` is journaled); the files themselves never pass through the
engine.

Who sees what:

- the index (`DocumentAdded`, `DocumentRemoved`) is public once the lot is
  published; before, it goes to the seller's broker and the operators, and
  publication lists the room's documents publicly;
- a document's location goes to the seller's side when added (the command)
  and, in a `DocumentReleased`, to the broker of a party that signed the NDA
  and asked for it; never to the public;
- a signature (`NdaSigned`) goes to the signer's broker and the operators;
  the seller learns only counts (`DataRoomInterest`), never who;
- the NDA version a room requires (`RequireNda`, `NdaRequired`) is public as
  the index is: a party opens documents only while its last signature is of
  that version (a new version makes everyone sign again).

The room takes documents while the lot is unsold (draft to passed) and is
open while the lot is published and unsold (scheduled, open, choosing,
passed), both only while its session is open, to signers that may bid in
the session (a paddle there, approved, not frozen). After a sale the
settlement's delivery carries what is sold. In a reverse tender the "seller"
is the seeker: its room holds its needs, and the offerers sign.

State: ``state.extra["datarooms"]``: serial -> `Room`, made on first use.
"""

from __future__ import annotations

import msgspec

from exchange.commands import AddDocument, OpenDocument, RemoveDocument, RequireNda, SignNda
from exchange.engine import Ctx, State, handles, reacts_to
from exchange.errors import MAX_REASON, Reject, positive, register_reasons
from exchange.events import (DataRoomInterest, DocumentAdded, DocumentReleased,
                             DocumentRemoved, LotScheduled, NdaRequired, NdaSigned)
from exchange.invariants import invariant
from exchange.lots import seller_audience, visible_lot
from exchange.participants import audience, own_party

register_reasons({
    "unknown_document": "the lot's data room holds no document of that name",
    "nda_required": "the party has not signed the lot's non-disclosure agreement",
    "nda_on_file": "the party signed this version of the lot's NDA already",
    "wrong_nda": "the lot's data room requires another version of its NDA",
    "too_many_documents": "the lot's data room holds the most documents it may",
    "no_paddle": "the party holds no paddle in the lot's session: it is not a bidder there",
})

MAX_DOCUMENTS = 500              # documents in one room at a time
MAX_NAMES = 4 * MAX_DOCUMENTS    # names a room ever held (their version counts are kept)
MAX_DOCUMENT_NAME = 200
TAKES_DOCUMENTS = ("draft", "vetted", "scheduled", "open", "choosing", "passed")
OPEN_TO_SIGNERS = ("scheduled", "open", "choosing", "passed")
_HEX = frozenset("0123456789abcdef")


class Document(msgspec.Struct, kw_only=True):
    name: str
    version: int
    digest: str
    size: int
    location: str


class Room(msgspec.Struct, kw_only=True):
    """A lot's data room. ``versions``: the last version of every name ever
    added (a document removed and added again goes on from it); ``ndas``:
    party -> the NDA version it signed last; ``readers``: party -> openings;
    ``listed``: the index is public (the lot was published)."""

    documents: dict[str, Document] = {}
    versions: dict[str, int] = {}
    ndas: dict[int, str] = {}
    readers: dict[int, int] = {}
    opened: int = 0
    listed: bool = False
    nda: str = ""                        # the NDA version required ("": any)


_NO_ROOMS: dict[str, Room] = {}


def rooms(state: State) -> dict[str, Room]:
    """Return every room by serial (read only: `room_of` makes them)."""
    return state.extra.get("datarooms", _NO_ROOMS)


def room_of(state: State, lot) -> Room:
    """Return the lot's room, made empty on first use: call it only once the
    command is valid (a refused command changes nothing). O(1)."""
    all_rooms = state.extra.get("datarooms")
    if all_rooms is None:
        all_rooms = state.extra["datarooms"] = {}
    room = all_rooms.get(lot.serial)
    if room is None:
        room = all_rooms[lot.serial] = Room(listed=bool(lot.opens_at))
    return room


def _existing(state: State, lot) -> Room:
    """Return the lot's room, or an empty one not kept (for checks). O(1)."""
    return rooms(state).get(lot.serial) or Room()


def _index_audience(state: State, lot, room: Room) -> tuple[str, ...]:
    return () if room.listed else seller_audience(state, lot)


def _managed_lot(state: State, ctx: Ctx, serial: str):
    """Return the lot whose room the sender manages now: refuse unless it is
    an operator or the seller's broker, and the room takes documents."""
    ctx.require_role("broker", "operator")
    lot = visible_lot(state, ctx, serial)
    if not ctx.is_operator and state.parties[lot.seller].broker != ctx.actor:
        raise Reject("not_permitted", f"only the seller's broker or an operator manages the "
                                      f"data room of lot {lot.serial}")
    _takes_documents(state, lot)
    return lot


def _takes_documents(state: State, lot) -> None:
    if lot.status not in TAKES_DOCUMENTS:
        raise Reject("bad_status", f"lot {lot.serial} is {lot.status}: its data room is closed")
    _session_open(state, lot)


def _session_open(state: State, lot) -> None:
    if not state.sessions[lot.session].open:
        raise Reject("session_closed", f"session {lot.session!r} is closed: the data room of "
                                       f"lot {lot.serial} with it")


def _qualified(state: State, lot, party) -> None:
    """Refuse a party that may not bid in the lot's session: no paddle there,
    not approved in its credit review, or frozen after a default."""
    if party.id not in state.sessions[lot.session].by_party:
        raise Reject("no_paddle", f"party {party.id} holds no paddle in session "
                                  f"{lot.session!r}")
    if party.frozen:
        raise Reject("party_frozen", f"the credit of party {party.id} is frozen")
    if not party.approved:
        raise Reject("party_not_approved", f"party {party.id} is not approved")


def _text(value: str, what: str, longest: int) -> str:
    if not value or value != value.strip() or not value.isprintable():
        raise Reject("bad_field", f"{what} must be printable text, without leading or "
                                  f"trailing spaces")
    if len(value) > longest:
        raise Reject("too_long", f"{what} has {len(value)} characters, more than {longest}")
    return value


@handles(AddDocument)
def add_document(state: State, ctx: Ctx, cmd: AddDocument) -> None:
    """Add a document or a new version of one. O(1)."""
    lot = _managed_lot(state, ctx, cmd.serial)
    name = _text(cmd.name, "a document's name", MAX_DOCUMENT_NAME)
    digest = cmd.digest
    if len(digest) != 64 or not _HEX.issuperset(digest):
        raise Reject("bad_field", "a document's digest is its SHA-256: 64 lowercase hex digits")
    size = positive(cmd.size, "a document's size")
    location = _text(cmd.location, "a document's location", 1000)
    room = _existing(state, lot)
    if name not in room.documents and len(room.documents) >= MAX_DOCUMENTS:
        raise Reject("too_many_documents", f"the data room of lot {lot.serial} holds "
                                           f"{MAX_DOCUMENTS} documents, the most it may")
    if name not in room.versions and len(room.versions) >= MAX_NAMES:
        raise Reject("too_many_documents", f"the data room of lot {lot.serial} has held "
                                           f"{MAX_NAMES} document names, the most it may: "
                                           f"add new versions under names it knows")
    room = room_of(state, lot)
    version = room.versions.get(name, 0) + 1
    room.versions[name] = version
    room.documents[name] = Document(name=name, version=version, digest=digest, size=size,
                                    location=location)
    ctx.emit(DocumentAdded(to=_index_audience(state, lot, room), serial=lot.serial,
                           session=lot.session, name=name, version=version, digest=digest,
                           size=size))


@handles(RemoveDocument)
def remove_document(state: State, ctx: Ctx, cmd: RemoveDocument) -> None:
    """Take a document out of the room. O(1)."""
    lot = _managed_lot(state, ctx, cmd.serial)
    room = _existing(state, lot)
    document = room.documents.pop(cmd.name, None)
    if document is None:
        raise Reject("unknown_document", f"the data room of lot {lot.serial} holds no "
                                         f"{cmd.name!r}")
    ctx.emit(DocumentRemoved(to=_index_audience(state, lot, room), serial=lot.serial,
                             session=lot.session, name=document.name,
                             version=document.version))


@handles(RequireNda)
def require_nda(state: State, ctx: Ctx, cmd: RequireNda) -> None:
    """Set the NDA version the room requires. O(1)."""
    lot = _managed_lot(state, ctx, cmd.serial)
    nda = _text(cmd.nda, "the NDA's version", MAX_REASON) if cmd.nda else ""
    if nda == _existing(state, lot).nda:
        raise Reject("bad_field", f"the data room of lot {lot.serial} requires "
                                  f"{nda or 'any NDA version'} already")
    room = room_of(state, lot)
    room.nda = nda
    ctx.emit(NdaRequired(to=_index_audience(state, lot, room), serial=lot.serial,
                         session=lot.session, nda=nda))


def _open_to_signers(state: State, lot) -> None:
    if lot.status not in OPEN_TO_SIGNERS:
        raise Reject("bad_status", f"lot {lot.serial} is {lot.status}: its data room is "
                                   f"open only while it is published and unsold")
    _session_open(state, lot)


def _interest(state: State, ctx: Ctx, lot, room: Room) -> None:
    ctx.emit(DataRoomInterest(to=seller_audience(state, lot), serial=lot.serial,
                              session=lot.session, ndas=len(room.ndas),
                              readers=len(room.readers), opened=room.opened))


@handles(SignNda)
def sign_nda(state: State, ctx: Ctx, cmd: SignNda) -> None:
    """Record a party's signature of the lot's NDA. O(1)."""
    ctx.require_role("broker", "operator")
    lot = visible_lot(state, ctx, cmd.serial)
    party = own_party(state, ctx, cmd.party)
    if party.id == lot.seller:
        raise Reject("own_lot", f"party {party.id} is the seller of lot {lot.serial}")
    _open_to_signers(state, lot)
    _qualified(state, lot, party)
    nda = _text(cmd.nda, "the NDA's version", MAX_REASON)
    required = _existing(state, lot).nda
    if required and nda != required:
        raise Reject("wrong_nda", f"the data room of lot {lot.serial} requires NDA "
                                  f"{required!r}, not {nda!r}")
    if _existing(state, lot).ndas.get(party.id) == nda:
        raise Reject("nda_on_file", f"party {party.id} signed NDA {nda!r} of lot {lot.serial} "
                                    f"already")
    room = room_of(state, lot)
    room.ndas[party.id] = nda
    ctx.emit(NdaSigned(to=audience(state, party.id), serial=lot.serial, session=lot.session,
                       party=party.id, nda=nda))
    _interest(state, ctx, lot, room)


@handles(OpenDocument)
def open_document(state: State, ctx: Ctx, cmd: OpenDocument) -> None:
    """Release a document's location to a party that signed the NDA (the
    seller's party needs none). O(1)."""
    ctx.require_role("broker", "operator")
    lot = visible_lot(state, ctx, cmd.serial)
    party = own_party(state, ctx, cmd.party)
    seller = party.id == lot.seller
    if seller:
        _takes_documents(state, lot)
    else:
        _open_to_signers(state, lot)
        _qualified(state, lot, party)
    room = _existing(state, lot)
    if not seller and party.id not in room.ndas:
        raise Reject("nda_required", f"party {party.id} has not signed the NDA of lot "
                                     f"{lot.serial}")
    if not seller and room.nda and room.ndas[party.id] != room.nda:
        raise Reject("nda_required", f"party {party.id} signed NDA {room.ndas[party.id]!r} "
                                     f"of lot {lot.serial}; its data room now requires "
                                     f"{room.nda!r}")
    document = room.documents.get(cmd.name)
    if document is None:
        raise Reject("unknown_document", f"the data room of lot {lot.serial} holds no "
                                         f"{cmd.name!r}")
    ctx.emit(DocumentReleased(to=audience(state, party.id), serial=lot.serial,
                              session=lot.session, party=party.id, name=document.name,
                              version=document.version, digest=document.digest,
                              size=document.size, location=document.location))
    if not seller:
        room.readers[party.id] = room.readers.get(party.id, 0) + 1
        room.opened += 1
        _interest(state, ctx, lot, room)


@reacts_to(LotScheduled)
def _list_on_publication(state: State, ctx: Ctx, event: LotScheduled) -> None:
    """List a room's documents publicly when its lot is first published. O(documents)."""
    room = rooms(state).get(event.serial)
    if room is None or room.listed:
        return
    room.listed = True
    if room.nda:
        ctx.emit(NdaRequired(serial=event.serial, session=event.session, nda=room.nda))
    for document in room.documents.values():
        ctx.emit(DocumentAdded(serial=event.serial, session=event.session, name=document.name,
                               version=document.version, digest=document.digest,
                               size=document.size))


@invariant
def _rooms_consistent(state) -> None:
    for serial, room in rooms(state).items():
        lot = state.lots[serial]
        assert room.listed == bool(lot.opens_at), serial
        assert len(room.documents) <= MAX_DOCUMENTS and len(room.versions) <= MAX_NAMES, serial
        for name, document in room.documents.items():
            assert document.name == name and 1 <= document.version <= room.versions[name]
            assert len(document.digest) == 64 and document.size > 0, (serial, name)
        for party in room.ndas:
            assert party in state.parties and party != lot.seller, (serial, party)
        assert all(party in room.ndas and n > 0 for party, n in room.readers.items()), serial
        assert room.opened == sum(room.readers.values()), serial
