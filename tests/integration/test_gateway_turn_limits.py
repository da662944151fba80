"""What one client may take on in a loop turn, and how many sessions: resends
and refused requests make no journal entry, so the turn counts requests too
(a Logon or Logout as 16), resends older than the results kept in memory are
read back from the journal within the turn's catch-up work or answered
`busy` (the client sends them again later), a turn's Reloads share one
reload, and one user's sessions are capped."""

from __future__ import annotations

import asyncio
import time

import zmq

from exchange.commands import CreateSession, RegisterParty
from gateway import protocol as p
from tests.integration.gateway_harness import (client, gateway_config, logged_on_dealer,
                                               raw_dealer, recv_until)


def _serve(data, **overrides):
    """A server in a thread on ``data`` (keys made); the test may stop its
    loop to drive turns itself, and stops it with `stop_thread`."""
    from gateway.keys import initialise
    from gateway.server import serve_in_thread
    initialise(data)
    return serve_in_thread(data, gateway_config(**overrides))


def _turns(server) -> list[int]:
    """With the loop stopped, let what was sent arrive (same host), then
    drain the broker socket turn by turn: how many answers each turn queued."""
    time.sleep(0.5)
    per_turn = []
    while server.broker.poll(1000):
        before = len(server.outbox)
        server._drain(server.broker, "broker")
        per_turn.append(len(server.outbox) - before)
    return per_turn


def test_a_turn_handles_at_most_max_batch_requests_of_a_socket(tmp_path):
    """Ten Batches of ten resends wait in the broker socket; one drain takes
    two of them (20 requests >= max_batch 16), the rest wait for later turns."""
    from gateway.server import stop_thread
    server, thread = _serve(tmp_path, max_batch=16)
    context = zmq.Context()
    try:
        sock = logged_on_dealer(tmp_path, "b1", context)
        ids = [f"flood-{i}" for i in range(10)]
        cmds = [RegisterParty(name=f"Flood {i}") for i in range(10)]
        sock.send(p.encode(p.Batch(requests=[p.Request(client_id=c, cmd=m)
                                             for c, m in zip(ids, cmds)])))
        first = recv_until(sock, p.Results)
        assert first is not None and all(r.accepted for r in first.results)
        server.stop()                              # the test drives the turns
        thread.join(timeout=10)
        resend = p.encode(p.Batch(requests=[p.Request(client_id=c, cmd=m)
                                            for c, m in zip(ids, cmds)]))
        for _ in range(10):
            sock.send(resend)
        assert _turns(server) == [2, 2, 2, 2, 2]   # Results queued by each turn
        server._flush()
        answers = [recv_until(sock, p.Results) for _ in range(10)]
        assert all(a is not None and [r.seq for r in a.results] ==
                   [r.seq for r in first.results] and all(r.resent for r in a.results)
                   for a in answers)
        sock.close()
    finally:
        context.destroy(linger=0)
        stop_thread(server, thread)


def test_old_resends_are_read_back_in_order_and_over_budget_are_busy(tmp_path, monkeypatch):
    """Results older than the 8 kept in memory come back from the journal:
    in order, one start and then 8 units each; once the turn's catch-up work
    is spent the resend is refused `busy`, and the client sends it again
    until every original result is back, each exactly once."""
    import gateway.server
    from gateway.server import COST_JOURNAL, COST_JOURNAL_START, stop_thread
    monkeypatch.setattr(gateway.server, "RECENT_RESULTS", 8)
    # one start and 5 entries read back a turn
    monkeypatch.setattr(gateway.server, "CATCH_UP_PER_TURN",
                        COST_JOURNAL_START + 5 * COST_JOURNAL)
    server, thread = _serve(tmp_path)
    try:
        with client(tmp_path, "b1", resend_after=0.2) as b1:
            ids = [f"old-{i}" for i in range(20)]
            cmds = [RegisterParty(name=f"Old {i}") for i in range(20)]
            originals = b1.request_batch(cmds, client_ids=ids)
            for i in range(10):                        # the 20 age out of memory
                b1.ok(RegisterParty(name=f"New {i}"))
            again = b1.request_batch(cmds, client_ids=ids)
            assert [(r.seq, r.events, r.resent) for r in again] == \
                [(r.seq, r.events, True) for r in originals]
            refused = server.refusals.windows.get(("b1", "broker"))
            assert refused is not None and refused[1] >= 3    # at most 5 a turn: busy ones
        # the asyncio client keeps a `busy` request pending and resends it too
        again = asyncio.run(_async_resend(tmp_path, cmds, ids))
        assert [(r.seq, r.events, r.resent) for r in again] == \
            [(r.seq, r.events, True) for r in originals]
        server.stop()
        thread.join(timeout=10)
        # white box: the cost of reading back in order
        server.catch_up_left = 10 * COST_JOURNAL_START
        server.read_back = None
        first = originals[0].seq
        for n, entry in enumerate(originals[:6]):
            assert server._original(entry.seq) == (cmds[n], entry.events)
        assert server.catch_up_left == 10 * COST_JOURNAL_START - COST_JOURNAL_START \
            - 6 * COST_JOURNAL
        assert server._original(first) == (cmds[0], originals[0].events)   # behind: anew
        assert server.catch_up_left == 10 * COST_JOURNAL_START - 2 * COST_JOURNAL_START \
            - 7 * COST_JOURNAL
        server.catch_up_left = 0
        assert server._original(originals[1].seq) is None                 # budget spent
    finally:
        stop_thread(server, thread)


async def _async_resend(data, cmds, ids):
    from gateway.client import AsyncClient
    b1 = await AsyncClient.from_data_dir(data, "b1", resend_after=0.2)
    try:
        return await b1.request_batch(cmds, client_ids=ids)
    finally:
        await b1.close()


def test_a_flood_of_reloads_costs_one_reload_a_turn(tmp_path):
    """Each `Reload` reads the key store (~0.2 ms with 20 users, more with
    more): fifty sent at once are all answered, from one reload a turn."""
    from gateway.server import run_in_thread, stop_thread
    server, thread = _serve(tmp_path)
    reads = []
    users = server.keystore.users
    server.keystore.users = lambda: reads.append(1) or users()
    context = zmq.Context()
    try:
        sock = logged_on_dealer(tmp_path, "op", context, port="operator")
        server.stop()                             # all fifty wait for one turn
        thread.join(timeout=10)
        for _ in range(50):
            sock.send(p.encode(p.Reload()))
        time.sleep(0.5)
        thread = run_in_thread(server)
        answers = [recv_until(sock, p.Reloaded) for _ in range(50)]
        active = sum(1 for u in users().values() if not u.revoked)
        assert [a.users if a is not None else None for a in answers] == [active] * 50
        assert len(reads) == 1
        sock.close()
    finally:
        context.destroy(linger=0)
        stop_thread(server, thread)


def test_logons_count_as_many_requests_in_a_turn(tmp_path):
    """A Logon (or Logout) takes ~25 us with its log line: a turn takes
    max_batch / SESSION_CHANGE_COST of them (16 / 16: one), the rest wait."""
    from gateway.server import SESSION_CHANGE_COST, stop_thread
    assert SESSION_CHANGE_COST == 16
    server, thread = _serve(tmp_path, max_batch=16)
    context = zmq.Context()
    try:
        sock = logged_on_dealer(tmp_path, "b1", context)
        server.stop()                              # the test drives the turns
        thread.join(timeout=10)
        for _ in range(4):
            sock.send(p.encode(p.Logon()))
        assert _turns(server) == [1, 1, 1, 1]      # one LogonAccepted a turn
        sock.close()
    finally:
        context.destroy(linger=0)
        stop_thread(server, thread)


def test_a_user_holds_at_most_max_sessions_per_user(tmp_path):
    """Each private event goes to every listening session of its user, so
    the sessions of one user are capped: a Logon beyond is refused
    `too_many_sessions`; after a Logout there is room again."""
    from tests.integration.gateway_harness import running
    with running(tmp_path, max_sessions_per_user=2):
        context = zmq.Context()
        try:
            first = logged_on_dealer(tmp_path, "b1", context)
            second = logged_on_dealer(tmp_path, "b1", context)
            third = raw_dealer(tmp_path, "b1", "broker", context)
            third.send(p.encode(p.Logon()))
            refused = recv_until(third, p.SessionRejected)
            assert refused is not None and refused.code == "too_many_sessions"
            first.send(p.encode(p.Logon()))        # the same connection again: still its own
            assert recv_until(first, p.LogonAccepted) is not None
            first.send(p.encode(p.Logout()))
            assert recv_until(first, p.LoggedOut) is not None
            third.send(p.encode(p.Logon()))
            assert recv_until(third, p.LogonAccepted) is not None
            for sock in (first, second, third):
                sock.close()
        finally:
            context.destroy(linger=0)


def _answers(sock) -> list[str]:
    """The next Results message: per request "ok" (a Result) or the session reject's code."""
    results = recv_until(sock, p.Results)
    assert results is not None
    return ["ok" if type(r) is p.Result and r.accepted else r.code for r in results.results]


def test_a_broker_beyond_max_requests_per_second_is_throttled_over_all_its_connections(
        tmp_path):
    """The allowance is the broker's, not a connection's: five a second here,
    shared by its two connections; a request beyond it is refused `throttled`
    and makes no journal entry; another broker and the operators are served
    meanwhile; a second later the broker has a second's worth again."""
    from tests.integration.gateway_harness import running
    with running(tmp_path, max_requests_per_second=5) as server:
        context = zmq.Context()
        try:
            first = logged_on_dealer(tmp_path, "b1", context)
            second = logged_on_dealer(tmp_path, "b1", context)
            other = logged_on_dealer(tmp_path, "b2", context)
            operator = logged_on_dealer(tmp_path, "op", context, port="operator")

            def batch(prefix: str, n: int) -> bytes:
                return p.encode(p.Batch(requests=[
                    p.Request(client_id=f"{prefix}-{i}", cmd=RegisterParty(name=f"{prefix} {i}"))
                    for i in range(n)]))

            entries = server.next_seq
            first.send(batch("a", 4))
            second.send(batch("b", 4))
            answers = _answers(first) + _answers(second)
            assert sorted(answers) == ["ok"] * 5 + ["throttled"] * 3, answers
            assert server.next_seq == entries + 5            # refused: nothing journaled
            other.send(batch("c", 5))
            assert _answers(other) == ["ok"] * 5
            operator.send(p.encode(p.Batch(requests=[
                p.Request(client_id=f"s-{i}", cmd=CreateSession(session=f"S{i}", name="day"))
                for i in range(8)])))
            assert _answers(operator) == ["ok"] * 8       # operators are not throttled
            first.send(batch("d", 1))
            refused = recv_until(first, p.Results).results[0]
            assert refused.code == "throttled" and "'b1' sent more than 5 requests" in refused.text
            assert refused.client_id == "d-0"
            first.send(p.encode(p.Batch(requests=[                 # a resend of what acted
                p.Request(client_id="a-0", cmd=RegisterParty(name="a 0"))])))
            resent = recv_until(first, p.Results).results[0]
            assert type(resent) is p.Result and resent.resent and resent.accepted
            time.sleep(1.05)
            second.send(batch("e", 6))
            assert _answers(second) == ["ok"] * 5 + ["throttled"]
            for sock in (first, second, other, operator):
                sock.close()
        finally:
            context.destroy(linger=0)


def _private_only_entries(b1, n: int) -> None:
    """n journal entries that publish nothing: bids on a lot that does not
    exist (business rejects, journaled, told to the sender only)."""
    from exchange.commands import PlaceBid
    cmds = [PlaceBid(serial="NO-SUCH-LOT", paddle=101, amount=1) for _ in range(1000)]
    for _ in range(n // 1000):
        b1.request_batch(cmds, timeout=60)


def test_a_replay_from_the_journal_is_charged_every_entry_it_reads(tmp_path, monkeypatch):
    """A replay older than the ring reads the journal from a mark before
    ``from_seq``; marks of Market messages alone left a run of 3,000
    private-only entries between two of them, all read and decoded for one
    request but charged as one entry. The ring marks every
    ENTRY_MARK_EVERY-th entry too: the reading starts at most that far back,
    and every entry it reads is charged to the turn's catch-up work."""
    from exchange.commands import SetDisplayRate
    from gateway.server import CATCH_UP_PER_TURN, COST_JOURNAL, COST_JOURNAL_START, stop_thread
    from gateway.tables import ENTRY_MARK_EVERY
    from recorder.journal import Journal
    from tests.integration.gateway_harness import build_market
    server, thread = _serve(tmp_path, feed_ring=1, max_requests_per_second=0,
                            max_message_bytes=1 << 20)
    context = zmq.Context()
    try:
        with client(tmp_path, "op") as op, client(tmp_path, "b1") as b1, \
                client(tmp_path, "b2") as b2:
            build_market(op, b1, b2)
            _private_only_entries(b1, 3000)
            gap_end = server.durable_seq
            for num in range(2, 6):                    # the gap leaves the ring of 1
                op.ok(SetDisplayRate(base="USD", quote="CNY", num=num, den=1))
        server.stop()                                  # the test drives the turns
        thread.join(timeout=10)
        read = [0]
        plain = Journal.read

        def counted(journal, *args, **kw):
            for record in plain(journal, *args, **kw):
                read[0] += 1
                yield record
        monkeypatch.setattr(Journal, "read", counted)
        viewer = raw_dealer(tmp_path, "viewer", "data", context)
        viewer.send(p.encode(p.ReplayRequest(from_seq=gap_end, to_seq=gap_end)))
        assert server.data.poll(10000)
        server.catch_up_left = CATCH_UP_PER_TURN
        server._serve_data()
        spent = CATCH_UP_PER_TURN - server.catch_up_left
        assert viewer.poll(10000)
        answer = p.data_reply_decoder.decode(viewer.recv())
        assert isinstance(answer, p.Replay)
        assert (answer.messages, answer.through, answer.more) == ([], gap_end, False)
        assert 1 <= read[0] <= ENTRY_MARK_EVERY + 1     # from the last entry mark on
        assert spent >= COST_JOURNAL_START + COST_JOURNAL * (read[0] - 1)  # (one past the end)
        viewer.close()
    finally:
        context.destroy(linger=0)
        stop_thread(server, thread)


def test_a_brokers_refused_requests_count_against_its_throttle(tmp_path):
    """A request refused at session level costs the loop and makes an answer
    as an accepted one does: it counts against the broker's throttle (here
    one a second), beyond it is refused `throttled`, and the broker's next
    request finds its allowance spent."""
    from exchange.commands import Tick
    from tests.integration.gateway_harness import running
    with running(tmp_path, max_requests_per_second=1) as server:
        context = zmq.Context()
        try:
            sock = logged_on_dealer(tmp_path, "b1", context)
            entries = server.next_seq
            sock.send(p.encode(p.Batch(requests=[p.Request(client_id=f"t-{i}", cmd=Tick())
                                                 for i in range(4)])))
            assert _answers(sock) == ["not_permitted"] + ["throttled"] * 3
            sock.send(p.encode(p.Batch(requests=[
                p.Request(client_id="r-1", cmd=RegisterParty(name="late"))])))
            assert _answers(sock) == ["throttled"]
            assert server.next_seq == entries                # nothing journaled
            sock.close()
        finally:
            context.destroy(linger=0)
