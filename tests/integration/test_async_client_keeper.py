"""An AsyncClient whose logon goes unanswered moves to a new socket only
once its reader has ended, and a new socket that cannot be made (too many
open files) leaves the old one and the keeper running: it tries again
later instead of dying silently, which ended heartbeats and resends."""

from __future__ import annotations

import asyncio
import errno

import zmq

import gateway.client as gc
from gateway.keys import ClientKey

NOWHERE = "tcp://127.0.0.1:9"        # nothing answers: every logon goes unanswered


def _key() -> ClientKey:
    public, secret = zmq.curve_keypair()
    server, _ = zmq.curve_keypair()
    return ClientKey(user="b1", role="broker", public_key=public.decode(),
                     secret_key=secret.decode(), server_public_key=server.decode())


def test_the_keeper_survives_a_socket_it_cannot_make_and_tries_again(monkeypatch):
    made: list[bool] = []             # for each socket asked for: had the reader ended?
    real = gc._curve_socket
    client = gc.AsyncClient(_key(), NOWHERE, heartbeat_ms=100, resend_after=0.1)

    def flaky(*args: object, **kwargs: object) -> object:
        made.append(not client._tasks or client._tasks[0].done())
        if len(made) == 2:
            raise zmq.ZMQError(errno.EMFILE, "Too many open files")
        return real(*args, **kwargs)

    monkeypatch.setattr(gc, "_curve_socket", flaky)

    async def scenario() -> tuple[bool, object]:
        client._new_socket()
        client._tasks = [asyncio.create_task(client._reader()),
                         asyncio.create_task(client._keeper())]
        for _ in range(400):                       # at most 20 s
            await asyncio.sleep(0.05)
            if len(made) >= 4 or client._tasks[1].done():
                break
        alive, socket = not client._tasks[1].done(), client.socket
        await client.close()
        return alive, socket

    alive, socket = asyncio.run(scenario())
    assert alive and socket is not None
    assert len(made) >= 4                           # it tried again after the failure
    assert all(made)                                # never under a reader still reading
