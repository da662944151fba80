"""`codec.decode_entry_envelope`: the envelope of a journal entry, read without
decoding its events, equal to what `decode_entry` gives and as strict."""

from __future__ import annotations

import msgspec
import pytest

from exchange.codec import DecodeError, Entry, decode_entry, decode_entry_envelope, encode_entry
from exchange.commands import CreateSession, Envelope
from exchange.events import SessionCreated


def _entry() -> Entry:
    env = Envelope(seq=7, ts=123, actor="op", role="operator",
                   cmd=CreateSession(session="S", name="spring"), client_id="c-1")
    return Entry(env=env, events=[SessionCreated(session="S", name="spring", currency="USD",
                                                 starts_at=0, ends_at=0)])


def test_envelope_alone_equals_the_whole_entrys():
    data = encode_entry(_entry())
    assert decode_entry_envelope(data) == decode_entry(data).env == _entry().env


def test_envelope_alone_is_strict_about_the_envelope_and_needs_events():
    def raw(role: str) -> bytes:
        return msgspec.msgpack.encode({"env": {"seq": 1, "ts": 1, "actor": "x", "role": role,
                                               "cmd": {"type": "Tick"}, "client_id": ""},
                                       "events": []})
    assert decode_entry_envelope(raw("system")).role == "system"
    with pytest.raises(DecodeError):
        decode_entry_envelope(raw("king"))
    no_events = msgspec.msgpack.encode({"env": msgspec.to_builtins(_entry().env)})
    with pytest.raises(DecodeError):
        decode_entry_envelope(no_events)


def test_an_envelope_of_the_first_rules_encodes_as_before_versions_were_recorded():
    """An entry journaled before envelopes carried a rules version re-encodes
    to the same bytes (a replay check compares them); later ones carry it."""
    from exchange.commands import RULES, CreateSession, Envelope
    old = msgspec.msgpack.encode({"seq": 3, "ts": 9, "actor": "op", "role": "operator",
                                  "cmd": {"type": "Tick"}, "client_id": ""})
    env = msgspec.msgpack.decode(old, type=Envelope)
    assert env.rules == 1 and msgspec.msgpack.encode(env) == old
    new = Envelope(seq=4, ts=9, actor="op", role="operator", client_id="c-1", rules=RULES,
                   cmd=CreateSession(session="S", name="s"))
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(new), type=Envelope).rules == RULES
    assert b"rules" in msgspec.msgpack.encode(new)
