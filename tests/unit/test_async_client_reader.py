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
