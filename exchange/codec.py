"""Encode and decode the one schema: msgpack on the wire and in the journal,
JSON for files and people. Decoders are strict: unknown tags, unknown fields
and wrong types raise `msgspec.ValidationError` at the edge."""

from __future__ import annotations

from typing import Any

import msgspec

from exchange.commands import AnyCommand, Envelope
from exchange.events import AnyEvent

_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)
_command_decoder = msgspec.msgpack.Decoder(AnyCommand)
_event_decoder = msgspec.msgpack.Decoder(AnyEvent)
_events_decoder = msgspec.msgpack.Decoder(list[AnyEvent])
_json_encoder = msgspec.json.Encoder()


class Entry(msgspec.Struct, frozen=True):
    """One journal record (kind ENTRY): a sequenced command and every event
    the engine produced for it, in order. The record's seq equals ``env.seq``."""

    env: Envelope
    events: list[AnyEvent]  # type: ignore[valid-type]


_entry_decoder = msgspec.msgpack.Decoder(Entry)


class _EntryEnvelope(msgspec.Struct, frozen=True):
    """An `Entry` read for its envelope alone: the same bytes, with ``events``
    kept as raw msgpack (skipped, not decoded into objects)."""

    env: Envelope
    events: msgspec.Raw


_entry_envelope_decoder = msgspec.msgpack.Decoder(_EntryEnvelope)

DecodeError = (msgspec.DecodeError, msgspec.ValidationError)


def encode(obj: Any) -> bytes:
    """Encode any schema value (command, envelope, event or list) as msgpack."""
    return _encoder.encode(obj)


def decode_envelope(data: bytes) -> Envelope:
    return _envelope_decoder.decode(data)


def decode_command(data: bytes) -> Any:
    return _command_decoder.decode(data)


def decode_event(data: bytes) -> Any:
    return _event_decoder.decode(data)


def decode_events(data: bytes) -> list[Any]:
    return _events_decoder.decode(data)


def encode_entry(entry: Entry) -> bytes:
    """Encode a journal `Entry` as msgpack."""
    return _encoder.encode(entry)


def decode_entry(data: bytes) -> Entry:
    """Decode a journal `Entry`; strict like every decoder here."""
    return _entry_decoder.decode(data)


def decode_entry_envelope(data: bytes) -> Envelope:
    """Decode only the envelope of a journal `Entry` (what a replay without an
    event check needs): the envelope is strict as in `decode_entry`; the events
    must be present but are skipped undecoded, about twice as fast overall."""
    return _entry_envelope_decoder.decode(data).env


def to_json(obj: Any) -> bytes:
    return _json_encoder.encode(obj)


def command_from_json(data: bytes | str) -> Any:
    return msgspec.json.decode(data, type=AnyCommand)


def event_from_json(data: bytes | str) -> Any:
    return msgspec.json.decode(data, type=AnyEvent)
