"""`Client.recap()` and `Client.reload_keys()` across a reconnection, and
refusals that are about another message: a Recap or Reload that reaches a
restarted server before the client's new Logon is refused `not_logged_on`
and must be asked again once logged on; a refusal of no client id (a request
the server could not read) must not be raised by a later, unrelated call."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Iterator

import msgspec
import pytest

from exchange.commands import RegisterParty
from gateway.client import Client, SessionRejectedError
from gateway.keys import initialise
from gateway.server import serve_in_thread, stop_thread
from tests.integration.gateway_harness import client, gateway_config, running, wait_for


def _free_ports() -> dict[str, int]:
    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    return dict(broker_port=free(), operator_port=free(), feed_port=free(), data_port=free())


class _Restarts:
    """A server on fixed ports that can be stopped, and started again from
    the client's first wait after a call went out (so the call reaches the new
    server before the client's new Logon does)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.config = gateway_config(**_free_ports())
        self.running: list[Any] = []

    def start(self) -> None:
        self.running.append(serve_in_thread(self.data_dir, self.config))

    def stop(self) -> None:
        stop_thread(*self.running.pop())

    def at_first_wait(self, c: Client) -> None:
        pump = c._pump

        def first(deadline: float, once: bool = False) -> bool:
            c._pump = pump                          # type: ignore[method-assign]
            self.start()
            return pump(deadline, once)
        c._pump = first                             # type: ignore[method-assign]


@pytest.fixture
def restarts(tmp_path: Path) -> Iterator[_Restarts]:
    initialise(tmp_path)
    server = _Restarts(tmp_path)
    server.start()
    try:
        yield server
    finally:
        while server.running:
            server.stop()


def _client(data_dir: Path, user: str) -> Client:
    # no keeper thread: only the call under test uses the socket, so its
    # message is the first to reach the restarted server
    return client(data_dir, user, heartbeat_ms=200, resend_after=0.5, timeout=5,
                  keepalive=False)


def test_a_recap_refused_by_a_restarted_server_before_the_logon_is_asked_again(
        tmp_path, restarts):
    b1 = _client(tmp_path, "b1")
    try:
        registered = b1.ok(RegisterParty(name="Acme"))
        logons = b1.session.logons
        restarts.stop()
        restarts.at_first_wait(b1)
        notices = b1.recap(1)
        assert b1.session.logons == logons + 1                  # it did log on again
        assert [n.seq for n in notices] == [registered.seq]
        assert any(type(e).__name__ == "PartyRegistered" for e in notices[0].events)
    finally:
        b1.close()


def test_a_reload_refused_by_a_restarted_server_before_the_logon_is_asked_again(
        tmp_path, restarts):
    op = _client(tmp_path, "op")
    try:
        logons = op.session.logons
        restarts.stop()
        restarts.at_first_wait(op)
        assert op.reload_keys() >= 1
        assert op.session.logons == logons + 1
    finally:
        op.close()


def _unreadable(c: Client) -> None:
    """Send a request the server cannot read and whose client id is no string:
    it is refused `invalid_message` with no client id."""
    c._send(msgspec.msgpack.encode({"type": "Request", "client_id": 5,
                                    "cmd": {"type": "RegisterParty", "name": "A"}}))


@pytest.mark.parametrize("settled", [True, False], ids=["refused-before", "refused-meanwhile"])
def test_a_refusal_of_another_message_is_not_raised_by_recap_or_reload(tmp_path, settled):
    with running(tmp_path):
        b1, op = client(tmp_path, "b1"), client(tmp_path, "op")
        try:
            registered = b1.ok(RegisterParty(name="Acme"))
            for c in (b1, op):
                _unreadable(c)
                if settled:              # the refusal is in before the call is made
                    assert wait_for(lambda c=c: (c.poll(0.05), "" in c.session.errors)[1])
            notices = b1.recap(1)
            assert [n.seq for n in notices] == [registered.seq]
            assert op.reload_keys() >= 1
        finally:
            b1.close()
            op.close()


def test_a_recap_or_reload_refused_itself_still_raises(tmp_path):
    with running(tmp_path):
        b1 = client(tmp_path, "b1")
        try:
            with pytest.raises(SessionRejectedError) as refused:
                b1.recap(1, limit=0)
            assert refused.value.code == "bad_request"
            with pytest.raises(SessionRejectedError) as refused:
                b1.reload_keys()
            assert refused.value.code == "not_permitted"
        finally:
            b1.close()
