"""Pipelined requests cost the client O(1) each: an answer resolves its own
future (`AsyncClient`), and a resend check walks the requests due, not every
request in flight (both clients). Counted in operations, not seconds."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Iterator

import pytest

from exchange.commands import CancelOrder
from gateway import protocol as p
from gateway.client import AsyncClient, SessionRejectedError, _Session
from gateway.keys import ClientKey

KEY = ClientKey(user="b1", role="broker", public_key="", secret_key="", server_public_key="")
CMD = CancelOrder(session="S1", instrument="NOPE", paddle=1, order=1)
LOGGED_ON = p.LogonAccepted(user="b1", role="broker", heartbeat_ms=1000,
                            cancel_on_disconnect=False, trading_day="2026-01-01", last_seq=0)


class _Counting(dict):
    """A dict that counts the entries looked at: each one iterated or looked up."""

    def __init__(self) -> None:
        super().__init__()
        self.walked = 0

    def __iter__(self) -> Iterator[Any]:
        for key in super().__iter__():
            self.walked += 1
            yield key

    def values(self) -> Any:             # as lazy as a dict's views
        return (super(_Counting, self).__getitem__(key) for key in self)

    def items(self) -> Any:
        return ((key, super(_Counting, self).__getitem__(key)) for key in self)

    def __getitem__(self, key: Any) -> Any:
        self.walked += 1
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        self.walked += 1
        return super().get(key, default)


class _Socket:
    """Stands for the DEALER: keeps what the client sends; the test queues
    what the server would answer."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()

    async def send(self, data: bytes, flags: int = 0) -> None:
        self.sent.append(p.client_decoder.decode(data))

    async def recv(self) -> bytes:
        return await self.inbox.get()


def _client() -> tuple[AsyncClient, _Socket]:
    client = AsyncClient(KEY, "tcp://127.0.0.1:9")
    sock = _Socket()
    client.socket = sock                                 # type: ignore[assignment]
    client.session.logged_on = LOGGED_ON
    client._waiters = _Counting()
    return client, sock


async def _answered(client: AsyncClient, sock: _Socket, answers: list[Any],
                    futures: list[asyncio.Future]) -> list[Any]:
    """Let the reader take ``answers``, one message each; return the outcomes."""
    reader = asyncio.create_task(client._reader())
    for answer in answers:
        sock.inbox.put_nowait(p.encode(answer))
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    return list(outcomes)


def _close(client: AsyncClient) -> None:
    client.socket = None
    client.context.term()


@pytest.mark.parametrize("n", [500, 4000])
def test_each_answer_resolves_its_own_future_without_walking_the_others(n):
    async def scenario() -> tuple[int, list[Any]]:
        client, sock = _client()
        try:
            futures = [await client.send(CMD) for _ in range(n)]
            answers = [p.Result(client_id=r.client_id, seq=i, accepted=True)
                       for i, r in enumerate(sock.sent, 1)]
            outcomes = await _answered(client, sock, answers, futures)
            assert not client._waiters
            return client._waiters.walked, outcomes
        finally:
            _close(client)

    walked, outcomes = asyncio.run(scenario())
    assert [r.seq for r in outcomes] == list(range(1, n + 1))
    # a lookup at the send and one at the answer: 2n (it was n^2 / 2 and more)
    assert walked <= 3 * n, f"{walked} waiters looked at for {n} requests"


def test_refusals_results_and_a_revocation_reach_the_right_futures():
    async def scenario() -> list[Any]:
        client, sock = _client()
        try:
            futures = [await client.send(CMD) for _ in range(4)]
            ids = [r.client_id for r in sock.sent]
            # one refused, one answered in a Results, one answered twice (a resend's
            # copy is dropped), then the session is revoked: the last one fails with it
            answers = [p.SessionRejected(code="throttled", text="slow down", client_id=ids[0]),
                       p.Results(results=[p.Result(client_id=ids[1], seq=7, accepted=True)]),
                       p.Result(client_id=ids[2], seq=8, accepted=False, code="no_order"),
                       p.Result(client_id=ids[2], seq=8, accepted=False, code="no_order"),
                       p.SessionRejected(code="revoked", text="gone")]
            return await _answered(client, sock, answers, futures)
        finally:
            _close(client)

    refused, done, rejected, revoked = asyncio.run(scenario())
    assert isinstance(refused, SessionRejectedError) and refused.code == "throttled"
    assert done.seq == 7 and done.accepted
    assert rejected.code == "no_order" and not rejected.accepted
    assert isinstance(revoked, SessionRejectedError) and revoked.code == "revoked"


def test_a_future_cancelled_by_its_caller_is_replaced_when_its_id_is_sent_again():
    async def scenario() -> p.Result:
        client, sock = _client()
        try:
            first = await client.send(CMD, "mine-1")
            first.cancel()
            again = await client.send(CMD, "mine-1")
            assert again is not first
            [result] = await _answered(
                client, sock, [p.Result(client_id="mine-1", seq=3, accepted=True)], [again])
            return result
        finally:
            _close(client)

    assert asyncio.run(scenario()).seq == 3


def test_an_answer_that_came_before_its_id_was_sent_again_resolves_the_new_future():
    async def scenario() -> p.Result:
        client, sock = _client()
        try:
            first = await client.send(CMD, "mine-2")
            first.cancel()
            await _answered(client, sock, [p.Result(client_id="mine-2", seq=5, accepted=True)],
                            [first])
            again = await client.send(CMD, "mine-2")      # the answer kept is its answer
            assert again.done()
            return again.result()
        finally:
            _close(client)

    assert asyncio.run(scenario()).seq == 5


def test_the_resend_check_walks_the_requests_due_and_one_more():
    session = _Session(KEY, 1000, None, True, None)
    session.logged_on = LOGGED_ON
    session.pending = _Counting()
    start = time.monotonic()
    for i in range(10_000):
        session.sent(f"c-{i}", CMD, start + i)           # sent one a second, in order
    session.sent("c-0", CMD, start + 20_000)              # c-0 resent last: now the newest
    session.pending.walked = 0
    due = session.resendable(start + 12, resend_after=2.0)
    assert due == [f"c-{i}" for i in range(1, 11)]        # sent at start + 1 ... + 10
    assert session.pending.walked <= 2 * (len(due) + 1)
    assert list(session.pending)[-1] == "c-0"


def test_a_batch_and_a_send_of_an_id_already_pending_keep_the_order_last_sent():
    session = _Session(KEY, 1000, None, True, None)
    session.logged_on = LOGGED_ON
    ids, _ = session.batch_message([CMD, CMD, CMD], ["a", "b", "c"])
    session.sent("a", CMD, time.monotonic() + 100)        # "a" sent again, later
    assert list(session.pending) == ["b", "c", "a"]
    assert session.resendable(time.monotonic() + 50, resend_after=2.0) == ["b", "c"]


def test_notices_never_taken_are_kept_to_a_bound_and_the_dropped_counted(monkeypatch):
    import gateway.client as gc
    monkeypatch.setattr(gc, "MAX_UNCLAIMED_NOTICES", 5)
    session = _Session(KEY, 1000, None, True, None)
    for seq in range(1, 13):
        session._absorb(p.Notice(seq=seq, ts=seq, events=[]))
    assert [n.seq for n in session.notices] == [8, 9, 10, 11, 12]
    assert session.notices_dropped == 7
