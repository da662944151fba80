"""Batch order entry over the real gateway: many requests in one message, each
handled as if alone (own client id, own journal entry, own result), answered by
one `Results` once the last is durable."""

from __future__ import annotations

import asyncio

import pytest
import zmq

from exchange.codec import decode_entry
from exchange.commands import RegisterParty, ReviewCredit, Tick
from gateway import protocol as p
from gateway.client import (AsyncClient, BatchRejected, ClientError, ResultTimeout,
                            SessionRejectedError)
from recorder.journal import read_journal
from tests.integration.gateway_harness import (client, logged_on_dealer, raw_dealer,
                                               recv_message, recv_until, running)


def test_a_batch_is_answered_in_order_each_request_as_if_alone(exchange):
    data, _ = exchange
    with client(data, "b1") as b1:
        first = b1.ok(RegisterParty(name="Before"), client_id="before-1")
        cmds = [RegisterParty(name=f"Batch client {i}") for i in range(50)]
        cmds[7] = ReviewCredit(party=first.seq, approved=True)       # a business reject
        ids = [f"batch-{i}" for i in range(50)]
        ids[3] = "before-1"                                          # a resend: not run again
        cmds[3] = RegisterParty(name="Before")
        results = b1.request_batch(cmds, ids)
    assert [r.client_id for r in results] == ids
    assert results[3].resent and results[3].seq == first.seq
    assert not results[7].accepted and results[7].code == "not_permitted"
    fresh = [r for i, r in enumerate(results) if i != 3]
    assert all(not r.resent for r in fresh)
    assert [r.seq for r in fresh] == list(range(first.seq + 1, first.seq + 50))
    assert all(r.accepted for i, r in enumerate(results) if i not in (3, 7))
    entries = [decode_entry(r.payload).env for r in read_journal(data / "journal")]
    journaled = [env.client_id for env in entries if env.client_id.startswith("batch-")]
    assert journaled == [cid for i, cid in enumerate(ids) if i != 3]   # once each, in order


def test_refusals_inside_a_batch_are_answered_in_place(exchange):
    data, _ = exchange
    context = zmq.Context()
    try:
        sock = logged_on_dealer(data, "b1", context)
        sock.send(p.encode(p.Request(client_id="dup-1", cmd=RegisterParty(name="A"))))
        assert recv_until(sock, p.Result).accepted
        sock.send(p.encode(p.Batch(requests=[
            p.Request(client_id="has space", cmd=RegisterParty(name="B")),
            p.Request(client_id="dup-1", cmd=RegisterParty(name="not A")),
            p.Request(client_id="ok-1", cmd=RegisterParty(name="C")),
        ])))
        reply = recv_until(sock, p.Results)
        assert reply is not None
        kinds = [(type(r).__name__, getattr(r, "code", "")) for r in reply.results]
        assert kinds == [("SessionRejected", "bad_client_id"),
                         ("SessionRejected", "duplicate_client_id"), ("Result", "")]
        assert reply.results[2].accepted and reply.results[2].client_id == "ok-1"
        # an empty batch and one over the limit are refused whole
        sock.send(p.encode(p.Batch(requests=[])))
        assert recv_until(sock, p.SessionRejected).code == "bad_batch"
        sock.close()
    finally:
        context.destroy(linger=0)


def test_a_client_id_used_twice_in_one_batch_is_a_resend_or_a_duplicate(exchange):
    """The first use is not yet durable when the second is checked: the original
    command comes from the turn's entries, not the journal."""
    data, _ = exchange
    context = zmq.Context()
    try:
        sock = logged_on_dealer(data, "b1", context)
        sock.send(p.encode(p.Batch(requests=[
            p.Request(client_id="twice-1", cmd=RegisterParty(name="Twice")),
            p.Request(client_id="twice-1", cmd=RegisterParty(name="Twice")),
            p.Request(client_id="twice-1", cmd=RegisterParty(name="Other")),
            p.Request(client_id="twice-2", cmd=RegisterParty(name="Later")),
        ])))
        reply = recv_until(sock, p.Results)
        sock.close()
    finally:
        context.destroy(linger=0)
    assert reply is not None
    first, again, other, later = reply.results
    assert first.accepted and not first.resent
    assert again.resent and again.accepted and again.seq == first.seq
    assert isinstance(other, p.SessionRejected) and other.code == "duplicate_client_id"
    assert later.accepted and later.seq == first.seq + 1
    with client(data, "b1") as b1:                  # a turn later: from the journal
        assert b1.request(RegisterParty(name="Twice"), client_id="twice-1").seq == first.seq
        with pytest.raises(SessionRejectedError) as refused:
            b1.request(RegisterParty(name="Other"), client_id="twice-1")
        assert refused.value.code == "duplicate_client_id"


def test_a_batch_over_the_limit_is_refused_whole(tmp_path):
    with running(tmp_path, max_message_bytes=1 << 20):
        context = zmq.Context()
        try:
            sock = logged_on_dealer(tmp_path, "b1", context)
            sock.send(p.encode(p.Batch(requests=[
                p.Request(client_id=f"over-{i}", cmd=RegisterParty(name="A"))
                for i in range(p.MAX_BATCH + 1)])))
            assert recv_until(sock, p.SessionRejected).code == "bad_batch"
            sock.close()
        finally:
            context.destroy(linger=0)
        with client(tmp_path, "b1") as b1:            # nothing of it was journaled
            assert b1.ok(RegisterParty(name="first")).seq == 1


def test_a_batch_before_logon_is_refused(exchange):
    data, _ = exchange
    context = zmq.Context()
    try:
        sock = raw_dealer(data, "b1", "broker", context)
        sock.send(p.encode(p.Batch(requests=[p.Request(client_id="x-1",
                                                       cmd=RegisterParty(name="A"))])))
        reply = recv_message(sock)
        assert isinstance(reply, p.SessionRejected) and reply.code == "not_logged_on"
        sock.close()
    finally:
        context.destroy(linger=0)


def test_client_refuses_a_batch_out_of_bounds_and_raises_item_rejects(exchange):
    data, _ = exchange
    with client(data, "b1") as b1:
        with pytest.raises(ValueError):
            b1.send_batch([])
        with pytest.raises(ValueError):
            b1.send_batch([RegisterParty(name="x")] * (p.MAX_BATCH + 1))
        limit = b1.session.logged_on.max_message_bytes
        assert limit == 16384                                 # the harness's setting
        with pytest.raises(ValueError, match="bytes"):        # would drop the connection
            b1.send_batch([RegisterParty(name="x" * 100)] * 200)
        assert not b1.session.pending
        assert b1.ok(RegisterParty(name="still connected")).accepted
        b1.ok(RegisterParty(name="A"), client_id="same-1")
        with pytest.raises(SessionRejectedError) as refused:
            b1.request_batch([RegisterParty(name="B")], ["same-1"])
        assert refused.value.code == "duplicate_client_id"
        # one refused request does not hide the others' results
        with pytest.raises(BatchRejected) as mixed:
            b1.request_batch([RegisterParty(name="C"), Tick(), RegisterParty(name="D")])
        first, tick, last = mixed.value.results
        assert first.accepted and last.accepted and last.seq > first.seq
        assert isinstance(tick, SessionRejectedError) and tick.code == "not_permitted"
        assert mixed.value.code == "not_permitted" and not b1.session.results


def test_async_client_batch(exchange):
    data, _ = exchange

    async def scenario() -> None:
        b1 = await AsyncClient.from_data_dir(data, "b1")
        try:
            results = await b1.request_batch([RegisterParty(name=f"A{i}") for i in range(20)])
            assert [r.accepted for r in results] == [True] * 20
            assert [r.seq for r in results] == list(range(results[0].seq, results[0].seq + 20))
            with pytest.raises(BatchRejected) as mixed:
                await b1.request_batch([RegisterParty(name="C"), Tick()])
            first, tick = mixed.value.results
            assert first.accepted and tick.code == "not_permitted"
        finally:
            await b1.close()

    asyncio.run(scenario())


def test_async_client_close_fails_what_waits_and_refuses_what_comes_after(tmp_path):
    from gateway.server import stop_thread
    from tests.integration.test_gateway_turn_limits import _serve
    server, thread = _serve(tmp_path)

    async def scenario() -> None:
        b1 = await AsyncClient.from_data_dir(tmp_path, "b1")
        server.stop()
        thread.join(timeout=10)             # the loop answers nothing any more
        waiting = [asyncio.ensure_future(b1.request(RegisterParty(name=f"W{i}"), timeout=30))
                   for i in range(3)]
        await asyncio.sleep(0.1)
        await b1.close()
        for outcome in await asyncio.gather(*waiting, return_exceptions=True):
            assert isinstance(outcome, ClientError) and "closed" in str(outcome)
        with pytest.raises(ClientError, match="closed"):
            await b1.request(RegisterParty(name="after"))

    try:
        asyncio.run(scenario())
    finally:
        stop_thread(server, thread)


def test_a_request_that_times_out_says_it_stays_pending(tmp_path):
    from gateway.server import stop_thread
    from tests.integration.test_gateway_turn_limits import _serve
    server, thread = _serve(tmp_path)
    try:
        with client(tmp_path, "b1", timeout=0.3) as b1:
            server.stop()
            thread.join(timeout=10)              # the loop answers nothing now
            with pytest.raises(ResultTimeout) as late:
                b1.request(RegisterParty(name="late"), client_id="late-1")
            assert late.value.client_id == "late-1" and "late-1" in b1.session.pending
            assert "never a new one" in str(late.value)
    finally:
        stop_thread(server, thread)


def test_batches_end_a_turn_at_max_batch_entries_and_respect_the_backlog(tmp_path, monkeypatch):
    from gateway.server import Server

    turns: list[int] = []               # entries committed per turn
    commit = Server._commit

    def counting_commit(self) -> None:
        if self.records:
            turns.append(len(self.records))
        commit(self)
    monkeypatch.setattr(Server, "_commit", counting_commit)
    with running(tmp_path, max_batch=64, max_backlog=200):
        context = zmq.Context()
        try:
            sock = logged_on_dealer(tmp_path, "b1", context)
            for b in range(10):                  # 10 batches of 50 sent at once
                sock.send(p.encode(p.Batch(requests=[
                    p.Request(client_id=f"flood-{b}-{i}", cmd=RegisterParty(name=f"P{b}-{i}"))
                    for i in range(50)])))
            answered = 0
            while answered < 10:
                reply = recv_until(sock, p.Results)
                assert reply is not None and all(r.accepted for r in reply.results)
                answered += 1
            sock.close()
        finally:
            context.destroy(linger=0)
    assert sum(turns) >= 500
    assert max(turns) < 64 + 50             # a turn stops once it made max_batch entries


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_server_that_forgot_the_session_gets_one_logon_and_each_request_again_once(
        tmp_path, flavour):
    """After a restart the server answers every pending request
    ``not_logged_on``: the client logs on once, then resends each once (it
    used to log on for every refusal and resend everything after each)."""
    from collections import Counter

    from gateway.server import run_in_thread, stop_thread
    from tests.integration.test_gateway_turn_limits import _serve
    server, thread = _serve(tmp_path)
    sent: Counter = Counter()

    def counted(send):
        def send_counting(data):
            sent[type(p.client_decoder.decode(data)).__name__] += 1
            return send(data)
        return send_counting
    commands = [RegisterParty(name=f"P{i}") for i in range(60)]
    try:
        if flavour == "sync":
            b1 = client(tmp_path, "b1", resend_after=60)
            b1._send = counted(b1._send)
        else:
            loop = asyncio.new_event_loop()
            b1 = loop.run_until_complete(AsyncClient.from_data_dir(tmp_path, "b1",
                                                                   resend_after=60))
            b1._send = counted(b1._send)
        server.stop()
        thread.join(timeout=10)
        server.sessions["broker"].clear()            # as a restarted server knows no one
        if flavour == "sync":
            ids = [b1.send(cmd) for cmd in commands]
            thread = run_in_thread(server)
            results = [b1.result(cid) for cid in ids]
            b1.close()
        else:
            async def scenario():
                futures = [await b1.send(cmd) for cmd in commands]
                return await asyncio.wait_for(asyncio.gather(*futures), 10)
            thread = run_in_thread(server)
            results = loop.run_until_complete(scenario())
            loop.run_until_complete(b1.close())
            loop.close()
        assert all(r.accepted for r in results) and len({r.seq for r in results}) == 60
        assert sent["Logon"] == 1
        assert sent["Request"] == 2 * 60          # sent, refused, sent again once
    finally:
        stop_thread(server, thread)


def test_a_command_msgpack_cannot_carry_is_a_client_error_and_never_pending(exchange):
    from exchange.commands import RetireExpert

    data, _ = exchange
    with client(data, "op") as op:
        huge = RetireExpert(expert=10**30)
        with pytest.raises(ClientError, match="cannot send"):
            op.request_batch([RegisterParty(name="fine", broker="b1"), huge])
        with pytest.raises(ClientError, match="cannot send RetireExpert"):
            op.request(huge)
        assert not op.session.pending
        assert op.ok(RegisterParty(name="after", broker="b1")).accepted


def test_a_text_utf8_cannot_carry_is_a_client_error_too(exchange):
    data, _ = exchange
    with client(data, "b1") as b1:
        broken = RegisterParty(name="bad \udcff byte")     # a lone surrogate, as from argv
        with pytest.raises(ClientError, match="cannot send RegisterParty"):
            b1.request(broken)
        with pytest.raises(ClientError, match="cannot send this batch"):
            b1.request_batch([broken])
        assert not b1.session.pending
