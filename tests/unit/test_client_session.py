"""The client's bookkeeping (`_Session`) and drivers without a server: an
answer that says a command acted wins over a refusal of another copy of it,
which says nothing was done."""

from __future__ import annotations

import asyncio
import time

import pytest

from exchange.commands import CancelOrder, RegisterParty
from gateway import protocol as p
from gateway.client import AsyncClient, SessionRejectedError, _Session
from gateway.keys import ClientKey

KEY = ClientKey(user="b1", role="broker", public_key="", secret_key="", server_public_key="")
CMD = CancelOrder(session="S1", instrument="NOPE", paddle=1, order=1)
LOGGED_ON = p.LogonAccepted(user="b1", role="broker", heartbeat_ms=1000,
                            cancel_on_disconnect=False, trading_day="2026-01-01", last_seq=0)


def _session() -> _Session:
    session = _Session(KEY, 1000, None, True, None)
    session._absorb(LOGGED_ON)
    return session


def _refused(code: str, cid: str) -> p.SessionRejected:
    return p.SessionRejected(code=code, text="nothing was done", client_id=cid)


def _acted(cid: str, resent: bool = False) -> p.Result:
    return p.Result(client_id=cid, seq=9, accepted=True, resent=resent)


@pytest.mark.parametrize("code", ["throttled", "busy", "internal_error"])
def test_a_refused_copy_then_an_accepted_resend_gives_the_result(code):
    session = _session()
    session.sent("c-1", CMD, time.monotonic())
    session.sent("c-1", CMD, time.monotonic())           # resent before the refusal came
    session.handle(p.encode(_refused(code, "c-1")))     # the first copy's answer
    assert session.take("c-1") is None and "c-1" in session.pending   # the resend decides
    session.handle(p.encode(_acted("c-1")))
    assert session.take("c-1").seq == 9
    assert not session.pending and not session.errors


@pytest.mark.parametrize("code", ["throttled", "busy", "journal_damaged"])
def test_a_result_then_a_refused_copy_keeps_the_result(code):
    session = _session()
    session.sent("c-1", CMD, time.monotonic())
    session.sent("c-1", CMD, time.monotonic())
    session.handle(p.encode(_acted("c-1")))
    session.handle(p.encode(_refused(code, "c-1")))     # the resend's answer, later
    assert session.take("c-1").seq == 9
    assert not session.errors


def test_a_refusal_of_the_only_copy_is_the_answer():
    session = _session()
    session.sent("c-1", CMD, time.monotonic())
    session.handle(p.encode(_refused("throttled", "c-1")))
    with pytest.raises(SessionRejectedError) as refused:
        session.take("c-1")
    assert refused.value.code == "throttled" and not session.pending


def test_both_copies_refused_gives_the_refusal():
    session = _session()
    for _ in range(2):
        session.sent("c-1", CMD, time.monotonic())
    session.handle(p.encode(_refused("throttled", "c-1")))
    session.handle(p.encode(_refused("throttled", "c-1")))
    with pytest.raises(SessionRejectedError):
        session.take("c-1")
    assert not session.pending


def test_copies_sent_before_a_new_logon_are_not_awaited():
    session = _session()
    session.sent("c-1", CMD, time.monotonic())           # lost with the old connection
    session._absorb(LOGGED_ON)                            # logged on again ...
    session.sent("c-1", CMD, time.monotonic())           # ... and resent
    session.handle(p.encode(_refused("throttled", "c-1")))
    with pytest.raises(SessionRejectedError):
        session.take("c-1")


class _Socket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()

    async def send(self, data: bytes, flags: int = 0) -> None:
        self.sent.append(data)

    async def recv(self) -> bytes:
        return await self.inbox.get()

    def close(self, linger: int = 0) -> None:
        pass


def test_async_a_refused_copy_then_an_accepted_resend_resolves_with_the_result():
    async def scenario() -> p.Result:
        client = AsyncClient(KEY, "tcp://127.0.0.1:9")
        sock = _Socket()
        client.socket = sock                              # type: ignore[assignment]
        client.session.logged_on = LOGGED_ON
        reader = asyncio.create_task(client._reader())
        try:
            future = await client.send(CMD, "c-1")
            await client._resend("c-1")
            sock.inbox.put_nowait(p.encode(_refused("throttled", "c-1")))
            sock.inbox.put_nowait(p.encode(_acted("c-1")))
            return await asyncio.wait_for(future, 5)
        finally:
            reader.cancel()
            client.socket = None
            client.context.term()

    assert asyncio.run(scenario()).seq == 9


def test_a_result_and_a_refusal_both_kept_give_the_result():
    session = _session()
    session.results["c-1"] = _acted("c-1")
    session.errors["c-1"] = SessionRejectedError("busy", "later", "c-1")
    assert session.take("c-1").seq == 9
    assert not session.errors


def _big(n: int) -> RegisterParty:
    return RegisterParty(name="n" * n)


def test_a_request_larger_than_a_message_is_refused_before_it_is_pending():
    from gateway.client import Client, MessageTooLarge
    c = Client(KEY, "tcp://127.0.0.1:9")
    try:
        c.session._absorb(LOGGED_ON.__class__(**{**_fields(LOGGED_ON), "max_message_bytes": 4096}))
        c.socket = _SyncSocket()                                  # type: ignore[assignment]
        with pytest.raises(MessageTooLarge) as refused:
            c.send(_big(5000))
        assert refused.value.code == "message_too_large" and refused.value.limit == 4096
        assert "max_message_bytes" in str(refused.value) and "4,096" in str(refused.value)
        # CURVE adds 33 bytes to each message on the wire: the server counts them
        with pytest.raises(MessageTooLarge):
            c.send(_big(4096 - 60))
        assert not c.session.pending and not c.socket.sent
        c.send(_big(100))
        assert len(c.session.pending) == 1 and len(c.socket.sent) == 1
    finally:
        c.socket = None
        c.close()


def test_async_a_request_larger_than_a_message_is_refused_before_it_is_pending():
    from gateway.client import MessageTooLarge

    async def scenario() -> None:
        client = AsyncClient(KEY, "tcp://127.0.0.1:9")
        sock = _Socket()
        client.socket = sock                              # type: ignore[assignment]
        client.session._absorb(LOGGED_ON.__class__(**{**_fields(LOGGED_ON),
                                                      "max_message_bytes": 4096}))
        try:
            with pytest.raises(MessageTooLarge):
                await client.send(_big(5000), "c-1")
            assert not client.session.pending and not sock.sent and not client._waiters
        finally:
            client.socket = None
            client.context.term()

    asyncio.run(scenario())


def _fields(msg: object) -> dict:
    return {f: getattr(msg, f) for f in msg.__struct_fields__}


class _SyncSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, flags: int = 0) -> None:
        self.sent.append(data)

    def close(self, linger: int = 0) -> None:
        pass


def test_async_notices_end_at_close_and_raise_at_revocation():
    async def consume(client: AsyncClient) -> list[int]:
        return [n.seq async for n in client.notices()]

    async def scenario(revoke: bool) -> object:
        client = AsyncClient(KEY, "tcp://127.0.0.1:9")
        sock = _Socket()
        client.socket = sock                              # type: ignore[assignment]
        client.session.logged_on = LOGGED_ON
        client._tasks = [asyncio.create_task(client._reader())]
        consumer = asyncio.create_task(consume(client))
        sock.inbox.put_nowait(p.encode(p.Notice(seq=4, ts=1, events=[])))
        await asyncio.sleep(0.05)
        if revoke:
            sock.inbox.put_nowait(p.encode(p.SessionRejected(code="revoked", text="gone")))
            await asyncio.sleep(0.05)
        else:
            await client.close()
        done, _ = await asyncio.wait([consumer], timeout=2)
        try:
            return consumer.result() if done else "still waiting"
        except SessionRejectedError as exc:
            return exc.code
        finally:
            consumer.cancel()
            if revoke:
                await client.close()

    assert asyncio.run(scenario(revoke=False)) == [4]
    assert asyncio.run(scenario(revoke=True)) == "revoked"
