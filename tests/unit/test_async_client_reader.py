"""An AsyncClient whose socket always has a message waiting still lets its
keeper (heartbeats, resends) and other tasks run: a recv that finds a
message queued returns without yielding to the event loop."""

from __future__ import annotations

import asyncio

from gateway import protocol as p
from gateway.client import AsyncClient


class _Flooded:
    """A socket with a server heartbeat always queued; after ``most`` reads it
    stops the reader."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.reads = 0
        self.data = p.encode(p.Heartbeat())

    async def recv(self) -> bytes:
        self.reads += 1
        if self.reads > self.most:
            raise asyncio.CancelledError
        return self.data


def test_a_flooded_reader_lets_other_tasks_run():
    async def scenario() -> tuple[int, int]:
        client = AsyncClient.__new__(AsyncClient)       # only what the reader uses
        client.socket = _Flooded(most=20_000)
        client.session = type("S", (), {"handle": lambda self, data: "",
                                        "logged_on": None, "logon_error": None,
                                        "notices": (), "answered": []})()
        client._logon_waiter = None
        client._settle = lambda cids: None
        ran = 0

        async def other() -> None:
            nonlocal ran
            while True:
                await asyncio.sleep(0)
                ran += 1

        probe = asyncio.create_task(other())
        await asyncio.sleep(0)
        try:
            await client._reader()
        except asyncio.CancelledError:
            pass
        probe.cancel()
        return ran, client.socket.reads

    ran, reads = asyncio.run(scenario())
    assert reads > 20_000
    assert ran >= 20_000 // 64 - 1            # it ran every 64 messages


class _Scripted:
    """A socket that hands out ``messages`` in order, then stops the reader."""

    def __init__(self, messages: list[bytes]) -> None:
        self.messages = list(messages)

    async def recv(self) -> bytes:
        if not self.messages:
            raise asyncio.CancelledError
        return self.messages.pop(0)


def test_a_message_the_client_cannot_decode_is_counted_and_skipped():
    """A newer server's message type (or garbage) does not end the reader:
    the messages after it are still handled, and it is counted."""
    from gateway.client import _Session
    from gateway.keys import ClientKey

    async def scenario() -> _Session:
        client = AsyncClient.__new__(AsyncClient)
        key = ClientKey(user="b1", role="broker", public_key="", secret_key="",
                        server_public_key="")
        session = _Session(key, 1000, None, True, None)
        client.session = session
        client.socket = _Scripted([
            b"\xc1 not msgpack",
            p.msgspec.msgpack.encode({"type": "FutureMessage", "x": 1}),
            p.encode(p.Notice(seq=7, ts=1, events=[]))])
        client._logon_waiter = None
        client._notice_event = asyncio.Event()
        client._settle = lambda cids: None
        try:
            await client._reader()
        except asyncio.CancelledError:
            pass
        return session

    session = asyncio.run(scenario())
    assert session.undecodable == 2 and "FutureMessage" in session.undecodable_error
    assert [n.seq for n in session.notices] == [7]
