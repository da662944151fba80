"""PROTOCOL.md is the contract for clients in any language: every command,
event and reason code the engine knows must be documented there."""

from pathlib import Path

import exchange  # noqa: F401  (registers every module's reason codes)
from exchange.commands import COMMAND_TYPES
from exchange.errors import REASONS
from exchange.events import EVENT_TYPES

PROTOCOL = (Path(__file__).parents[2] / "PROTOCOL.md").read_text()


def test_every_command_is_documented():
    missing = [t.__name__ for t in COMMAND_TYPES if f"`{t.__name__}`" not in PROTOCOL]
    assert not missing, f"commands missing from PROTOCOL.md: {missing}"


def test_every_event_is_documented():
    missing = [t.__name__ for t in EVENT_TYPES if f"`{t.__name__}`" not in PROTOCOL]
    assert not missing, f"events missing from PROTOCOL.md: {missing}"


def test_every_reason_code_is_documented():
    missing = [code for code in REASONS if f"`{code}`" not in PROTOCOL]
    assert not missing, f"reason codes missing from PROTOCOL.md: {missing}"


def test_every_gateway_message_and_session_reject_is_documented():
    import typing

    from gateway import protocol as p
    messages = [t.__name__ for union in (p.ClientMessage, p.ServerMessage, p.FeedMessage,
                                         p.DataRequest, p.DataReply)
                for t in typing.get_args(union)]
    missing = [name for name in messages if f"`{name}`" not in PROTOCOL]
    missing += [code for code in p.SESSION_REJECTS if f"`{code}`" not in PROTOCOL]
    assert not missing, f"gateway messages or codes missing from PROTOCOL.md: {missing}"
