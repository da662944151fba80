"""Abuse of the gateway by authenticated peers (found by a security audit):
a routing id taken over by another broker, resends repeated to multiply the
server's answers, a journal that cannot be read. Each keeps the server
serving, and leaks nothing."""

from __future__ import annotations

import errno
import time

import zmq

from exchange.commands import CreateSession, RegisterParty, ReviewCredit
from gateway import protocol as p
from gateway.client import Endpoints
from gateway.keys import ClientKey
from tests.integration.gateway_harness import (client, raw_dealer, recv_message, recv_until,
                                               running, wait_for)


def test_a_routing_id_taken_by_another_broker_gets_nothing_of_the_first_ones(exchange):
    data, server = exchange
    context = zmq.Context()
    try:
        victim = raw_dealer(data, "b1", "broker", context, b"desk-7")
        victim.send(p.encode(p.Logon(heartbeat_ms=60000, notices=True)))   # 3 min to time out
        assert isinstance(recv_until(victim, p.LogonAccepted), p.LogonAccepted)
        victim.close()                          # its link drops
        assert wait_for(lambda: b"desk-7" not in server.sessions["broker"], timeout=5), \
            "the session outlived its connection"
        thief = raw_dealer(data, "b2", "broker", context, b"desk-7")
        thief.send(p.encode(p.Heartbeat()))
        refused = recv_until(thief, p.SessionRejected)
        assert refused is not None and refused.code == "not_logged_on"
        with client(data, "op") as op:          # private to b1 (and operators)
            party = op.ok(RegisterParty(name="SecretCo", broker="b1")).seq
            op.ok(ReviewCredit(party=party, approved=True, credit_limit=987654321,
                               agreement_version="v1"))
        while (msg := recv_message(thief, timeout=0.5)) is not None:
            assert not isinstance(msg, p.Notice), msg
    finally:
        context.destroy(linger=0)


def test_resent_results_past_the_connections_budget_are_answered_busy(exchange, monkeypatch):
    import gateway.server
    data, _ = exchange
    with client(data, "b1") as b1:
        original = b1.ok(RegisterParty(name="Acme"), client_id="acme-1")
        size = len(original.events)
        monkeypatch.setattr(gateway.server, "RESENT_EVENTS_PER_SECOND", 3 * (size + 1))
        monkeypatch.setattr(gateway.server, "RESENT_WINDOW_NS", 600 * 10**9)
        context = zmq.Context()
        try:
            sock = raw_dealer(data, "b1", "broker", context, b"resender")
            sock.send(p.encode(p.Logon()))
            assert isinstance(recv_until(sock, p.LogonAccepted), p.LogonAccepted)
            again = p.Request(client_id="acme-1", cmd=RegisterParty(name="Acme"))
            sock.send(p.encode(p.Batch(requests=[again] * 50)))
            results = recv_until(sock, p.Results)
            sock.send(p.encode(p.Logon()))                   # a new session: no new budget
            assert isinstance(recv_until(sock, p.LogonAccepted), p.LogonAccepted)
            sock.send(p.encode(p.Batch(requests=[again] * 5)))
            later = recv_until(sock, p.Results)
        finally:
            context.destroy(linger=0)
        answers = [type(r).__name__ + ("" if isinstance(r, p.Result) else ":" + r.code)
                   for r in results.results]
        assert answers == ["Result"] * 3 + ["SessionRejected:busy"] * 47
        assert all(r.resent and r.seq == original.seq for r in results.results[:3])
        assert [getattr(r, "code", "") for r in later.results] == ["busy"] * 5
        assert b1.ok(RegisterParty(name="Borealis")).accepted      # still serving


def test_a_journal_that_cannot_be_read_answers_busy_and_the_server_goes_on(tmp_path,
                                                                           monkeypatch):
    with running(tmp_path, feed_ring=1) as server, client(tmp_path, "op") as op:
        for n in range(4):                       # public: the ring keeps the last two
            op.ok(CreateSession(session=f"S{n}", name="fd"))

        def out_of_descriptors(*args, **kwargs):
            raise OSError(errno.EMFILE, "Too many open files")

        monkeypatch.setattr(server.journal, "read", out_of_descriptors)
        context = zmq.Context()
        try:
            viewer = raw_dealer(tmp_path, "viewer", "data", context)
            viewer.send(p.encode(p.ReplayRequest(from_seq=1)))   # before the ring: the journal
            assert viewer.poll(10000)
            answer = p.data_reply_decoder.decode(viewer.recv())
        finally:
            context.destroy(linger=0)
        assert isinstance(answer, p.SessionRejected) and answer.code == "busy"
        assert "Too many open files" in answer.text
        assert op.ok(CreateSession(session="S9", name="still serving")).accepted
        assert server.failed is None


def test_the_server_raises_its_open_file_limit_to_the_hard_limit():
    import resource

    from gateway.server import raise_descriptor_limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        got = raise_descriptor_limit(most=min(hard, 4096))
        assert got == min(hard, 4096) == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_max_connections_is_lowered_to_fit_the_open_file_limit():
    """Four ports full must leave the server descriptors for its journal."""
    import resource

    from gateway.server import DESCRIPTORS_KEPT, connection_cap
    assert connection_cap(1024, 65536) == 1024
    assert connection_cap(1024, resource.RLIM_INFINITY) == 1024
    assert connection_cap(1024, 300) == (300 - DESCRIPTORS_KEPT) // 4
    assert 4 * connection_cap(1024, 300) + DESCRIPTORS_KEPT <= 300
    assert connection_cap(1024, 10) == 1


def test_a_connection_made_with_a_key_since_rotated_cannot_log_on_again(exchange):
    from gateway.keys import KeyStore
    data, _ = exchange
    context = zmq.Context()
    try:
        old = raw_dealer(data, "b1", "broker", context)          # the key before rotation
        old.send(p.encode(p.Logon(heartbeat_ms=60000)))
        assert isinstance(recv_until(old, p.LogonAccepted), p.LogonAccepted)
        viewer = raw_dealer(data, "viewer", "data", context)
        viewer.send(p.encode(p.SnapshotRequest()))
        assert isinstance(p.data_reply_decoder.decode(viewer.recv()), p.Snapshot)
        KeyStore(data).rotate("b1")
        KeyStore(data).rotate("viewer")
        with client(data, "op") as op:
            op.reload_keys()
        ended = recv_until(old, p.LoggedOut)
        assert ended is not None and ended.reason == "revoked"
        old.send(p.encode(p.Logon(heartbeat_ms=60000)))           # the same connection
        refused = recv_until(old, p.SessionRejected)
        assert refused is not None and refused.code == "revoked" and "replaced" in refused.text
        viewer.send(p.encode(p.SnapshotRequest()))
        answer = p.data_reply_decoder.decode(viewer.recv())
        assert isinstance(answer, p.SessionRejected) and answer.code == "revoked"
        with client(data, "b1") as b1:                            # the new key serves
            assert b1.ok(RegisterParty(name="Acme")).accepted
    finally:
        context.destroy(linger=0)


def test_failed_handshakes_and_connections_log_a_bounded_number_of_lines(tmp_path, capsys):
    from gateway.logs import LogBudget
    with running(tmp_path) as server:
        server.zap.refusals = LogBudget(3, 10**12)
        server.connection_lines = LogBudget(4, 10**12)
        capsys.readouterr()
        context = zmq.Context()
        strangers = []
        try:
            endpoint = Endpoints.load(tmp_path).broker
            server_key = ClientKey.load(tmp_path / "clients" / "b1.json").server_public_key
            for _ in range(12):                          # keys nobody registered
                public, secret = zmq.curve_keypair()
                sock = context.socket(zmq.DEALER)
                strangers.append(sock)
                sock.linger = 0
                sock.curve_serverkey = server_key.encode()
                sock.curve_publickey, sock.curve_secretkey = public, secret
                sock.connect(endpoint)
                sock.send(p.encode(p.Logon()))
            seen = []
            wait_for(lambda: seen.append(capsys.readouterr().err) or
                     "".join(seen).count('"connection"') >= 4, timeout=10)
            with client(tmp_path, "b1") as b1:           # served throughout
                assert b1.ok(RegisterParty(name="Acme")).accepted
            seen.append(capsys.readouterr().err)
        finally:
            for sock in strangers:
                sock.close()
            context.destroy(linger=0)
    text = "".join(seen)
    assert text.count('"auth_refused"') == 3
    assert text.count('"connection"') == 4


SLOW_SERVER = '''
import sys, time
from pathlib import Path
sys.path.insert(0, str(Path.cwd()))             # the repository: tests.integration
import gateway.server as gs
from tests.integration.gateway_harness import running
drain, flag, stop = gs.Server._drain, Path(sys.argv[2]), Path(sys.argv[3])
def slow_drain(self, sock, port):
    if port == "broker" and flag.exists():       # one slow turn: events queue behind it
        flag.unlink()
        time.sleep(0.6)
    return drain(self, sock, port)
gs.Server._drain = slow_drain
with running(Path(sys.argv[1])):
    print("up", flush=True)
    deadline = time.monotonic() + 30
    while not stop.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
'''


def test_a_disconnection_seen_late_ends_no_session_of_the_next_peer_on_its_fd(tmp_path):
    """Peer A drops while a turn drains; peer B gets A's file descriptor and
    logs on in that turn: A's late event must not end B's session."""
    import subprocess
    import sys
    import time
    from pathlib import Path
    flag, stop = tmp_path / "slow", tmp_path / "stop"
    script = tmp_path / "slow_server.py"
    script.write_text(SLOW_SERVER)
    data = tmp_path / "data"
    server = subprocess.Popen([sys.executable, str(script), str(data), str(flag), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              cwd=Path(__file__).parents[2])
    context = zmq.Context()
    try:
        assert server.stdout.readline().strip() == "up"
        a = raw_dealer(data, "b1", "broker", context)
        a.send(p.encode(p.Logon(heartbeat_ms=60000)))
        assert isinstance(recv_until(a, p.LogonAccepted), p.LogonAccepted)
        flag.touch()
        a.send(p.encode(p.Heartbeat()))          # wakes the slow turn
        time.sleep(0.1)
        a.close()                                # dropped while that turn sleeps
        time.sleep(0.2)
        b = raw_dealer(data, "b2", "broker", context)
        b.send(p.encode(p.Logon(heartbeat_ms=60000)))
        assert isinstance(recv_until(b, p.LogonAccepted), p.LogonAccepted)
        time.sleep(0.3)
        b.send(p.encode(p.Request(client_id="late-1", cmd=RegisterParty(name="Borealis"))))
        answer = recv_until(b, (p.Result, p.SessionRejected))
        assert isinstance(answer, p.Result) and answer.accepted, answer
    finally:
        stop.touch()
        context.destroy(linger=0)
        try:
            server.wait(timeout=20)
        finally:
            if server.poll() is None:
                server.kill()
            server.stdout.close()


def test_a_broker_that_never_reads_is_queued_at_most_max_queued_bytes(tmp_path):
    """`send_hwm` counts messages: a Results answering 1,000 refused requests
    is ~97 KB, so a broker that sends such Batches and never reads made
    ZeroMQ hold up to 10,000 of them. Messages to a connection with more than
    `max_queued_bytes` sent and not acknowledged by its TCP peer are dropped
    (counted): all it can be sent once it reads again is that much, the
    kernel's buffers and one message; another broker is served meanwhile."""
    from exchange.commands import Tick
    from gateway.tables import id_key
    cap = 1 << 20
    batches = 40                                        # ~3.9 MB of answers, 4 x the cap
    with running(tmp_path, max_message_bytes=65536, max_queued_bytes=cap,
                 max_requests_per_second=0) as server, client(tmp_path, "b2") as b2:
        context = zmq.Context()
        try:
            sock = raw_dealer(tmp_path, "b1", "broker", context, rcvbuf=65536, rcvhwm=1,
                              sndhwm=0)        # rcvbuf: no autotuning of the reader's buffer
            sock.send(p.encode(p.Logon(heartbeat_ms=60000)))
            assert isinstance(recv_until(sock, p.LogonAccepted), p.LogonAccepted)
            batch = p.encode(p.Batch(requests=[p.Request(client_id=f"t{i}", cmd=Tick())
                                               for i in range(1000)]))
            for i in range(batches):
                sock.send(batch)
                if i % 10 == 0:                        # the other broker is served meanwhile
                    assert b2.ok(RegisterParty(name=f"served {i}")).accepted
            sock.send(p.encode(p.Request(client_id="last", cmd=RegisterParty(name="last"))))
            assert wait_for(lambda: server.ids_today.get(id_key("b1", "last")) is not None,
                            timeout=120)
            assert wait_for(lambda: server.durable_seq >= server.next_seq - 1 and
                            not server.outbox)
            conn = next(c for c in server.sessions["broker"].values() if c.user == "b1")
            assert conn.dropped > 0
            received = 0
            messages = 0
            while sock.poll(1000):                     # now it reads: what was kept for it
                received += len(sock.recv())
                messages += 1
            one = len(batch) * 97 // 41                 # a Results of 1,000 refusals, ~97 KB
            print(f"received {received:,} bytes in {messages} messages; dropped {conn.dropped}")
            assert messages + conn.dropped == batches + 1
            assert received <= cap + 2 * one + (1 << 20)   # + what its kernel and ZeroMQ hold
            assert b2.ok(RegisterParty(name="still served")).accepted
            sock.close()
        finally:
            context.destroy(linger=0)


def test_a_viewer_that_never_reads_is_queued_at_most_max_queued_bytes(tmp_path):
    """The same on the data socket, where answers are large: a viewer asks
    for 100 snapshots of 3,000 book levels (~200 KB each) and never reads;
    what it is sent is bounded by `max_queued_bytes`, the rest dropped."""
    from exchange.commands import PlaceOrder
    from tests.integration.gateway_harness import build_market
    cap = 1 << 20
    with running(tmp_path, max_message_bytes=1 << 20, max_queued_bytes=cap,
                 max_requests_per_second=0) as server, client(tmp_path, "op") as op, \
            client(tmp_path, "b1") as b1, client(tmp_path, "b2") as b2:
        market = build_market(op, b1, b2)
        seller = market.paddles["Seller"]
        for first in range(1, 3001, 1000):
            b1.request_batch([PlaceOrder(session="S1", instrument=market.instrument,
                                         paddle=seller, order=i, side="sell", qty=1,
                                         price=1_000_000 + i)
                              for i in range(first, first + 1000)], timeout=60)
        context = zmq.Context()
        try:
            sock = raw_dealer(tmp_path, "viewer", "data", context, rcvbuf=65536, rcvhwm=1)
            request = p.encode(p.SnapshotRequest(session="S1"))
            sock.send(request)
            assert sock.poll(10000)
            one = len(sock.recv())
            assert one > 150_000
            for _ in range(100):
                sock.send(request)
            peers = server.sessions_of[server.data]        # routing id -> DataPeer
            assert len(peers) == 1
            peer = next(iter(peers.values()))
            # every answer sent (sent // one counts them: ~42 bytes each over) or dropped
            assert wait_for(lambda: peer.dropped + peer.sent // one >= 101, timeout=60)
            assert b2.ok(RegisterParty(name="served meanwhile")).accepted
            received = messages = 0
            while sock.poll(1000):
                received += len(sock.recv())
                messages += 1
            print(f"received {received:,} bytes in {messages} messages; dropped {peer.dropped}")
            assert messages + peer.dropped == 100 and peer.dropped > 0
            assert received <= cap + 2 * one + (1 << 20)
            sock.close()
        finally:
            context.destroy(linger=0)


def _established(port: int) -> int:
    """TCP connections of this host in state ESTABLISHED whose local port is
    ``port`` (the server's side of its connections), from /proc/net/tcp."""
    count = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].split(":")[1], 16) == port:
                count += 1
    return count


def test_each_port_holds_at_most_max_connections_feed_included(tmp_path):
    """Every connection costs the server a descriptor, an anonymous feed
    subscriber's too (no key needed): each port holds at most
    `max_connections` (here 4) and hangs up any beyond, counted, so
    connections alone cannot take every descriptor; the other ports, and a
    subscriber already connected, are served meanwhile."""
    from exchange.commands import SetDisplayRate
    from gateway.client import FeedClient
    with running(tmp_path, max_connections=4) as server, client(tmp_path, "op") as op:
        context = zmq.Context()
        subs: list[zmq.Socket] = []
        try:
            feed_port = int(server.endpoints["feed"].rsplit(":", 1)[1])
            with FeedClient.from_data_dir(tmp_path, "viewer") as watcher:
                watcher.start()
                assert wait_for(lambda: len(server.connections["feed"]) == 1)
                for _ in range(12):                     # anonymous: no key at all
                    sub = context.socket(zmq.SUB)
                    sub.linger = 0
                    sub.reconnect_ivl = 60000           # hung up, it stays away
                    sub.setsockopt(zmq.SUBSCRIBE, b"")
                    sub.connect(server.endpoints["feed"])
                    subs.append(sub)
                assert wait_for(lambda: server.connections_refused["feed"] == 9)
                assert len(server.connections["feed"]) == 4
                assert wait_for(lambda: _established(feed_port) == 4)   # its descriptors
                op.ok(SetDisplayRate(base="USD", quote="CNY", num=7, den=1))  # other ports
                updates = list(watcher.updates(timeout=5.0, max_messages=1))
                assert [type(e).__name__ for m in updates for e in m.events] == \
                    ["DisplayRateSet"]                          # the first subscriber is fed
            assert wait_for(lambda: not server.connections["data"])   # the watcher's gone
            subs.extend(raw_dealer(tmp_path, "viewer", "data", context) for _ in range(6))
            assert wait_for(lambda: server.connections_refused["data"] >= 2)   # (they retry)
            assert len(server.connections["data"]) == 4 and server.failed is None
        finally:
            for sock in subs:
                sock.close()
            context.destroy(linger=0)


def test_a_data_peer_whose_descriptor_is_reused_is_forgotten(tmp_path):
    """A viewer that sends and closes at once may have its disconnection read
    before its request, which then makes it a peer no disconnection will end:
    a new connection on its descriptor forgets it, so such peers never pile up."""
    from gateway.keys import initialise
    from gateway.server import serve_in_thread, stop_thread
    from tests.integration.gateway_harness import gateway_config
    initialise(tmp_path)
    server, thread = serve_in_thread(tmp_path, gateway_config())
    try:
        server.stop()                                  # its loop no longer runs: drive it
        thread.join(timeout=10)
        stale = server._data_peer(b"\0gone", "viewer", 41)
        fresh = server._data_peer(b"\0next", "viewer", 41)
        peers = server.sessions_of[server.data]
        assert stale not in peers.values() and list(peers.values()) == [fresh]
        assert server.by_fd[("data", 41)] is fresh
        again = server._data_peer(b"\0next", "viewer", 42)    # its routing id on another fd
        assert list(peers.values()) == [again] and ("data", 41) not in server.by_fd
    finally:
        stop_thread(server, thread)


def test_a_feed_subscriber_that_never_reads_is_hung_up_past_max_queued_bytes(tmp_path):
    """The feed's queue is per subscriber and counted in messages
    (`feed_hwm`, 100,000): anyone may subscribe, so a thousand subscribers
    that never read could make ZeroMQ hold gigabytes. One with more than
    `max_queued_bytes` published and not acknowledged by its TCP peer is hung
    up (counted, logged) while a subscriber that reads is fed everything."""
    import threading
    from exchange.commands import PlaceOrder
    from tests.integration.gateway_harness import build_market
    cap = 256 << 10
    with running(tmp_path, max_queued_bytes=cap, max_requests_per_second=0,
                 max_message_bytes=1 << 20) as server, \
            client(tmp_path, "op") as op, client(tmp_path, "b1") as b1, \
            client(tmp_path, "b2") as b2:
        market = build_market(op, b1, b2)
        seller = market.paddles["Seller"]
        feed_port = int(server.endpoints["feed"].rsplit(":", 1)[1])
        context = zmq.Context()
        stop = threading.Event()
        received: list[int] = []

        def read(sock: zmq.Socket) -> None:
            while not stop.is_set():
                if sock.poll(50):
                    message = p.feed_decoder.decode(sock.recv())
                    if isinstance(message, p.Market):
                        received.append(message.seq)
        try:
            slow = context.socket(zmq.SUB)
            slow.linger = 0
            slow.rcvbuf, slow.rcvhwm = 65536, 1         # no autotuning of its buffer
            slow.reconnect_ivl = 60000                  # hung up, it stays away
            reader = context.socket(zmq.SUB)
            reader.linger = 0
            for sock in (slow, reader):
                sock.setsockopt(zmq.SUBSCRIBE, b"")
                sock.connect(server.endpoints["feed"])
            assert wait_for(lambda: len(server.feed_peers) == 2)
            thread = threading.Thread(target=read, args=(reader,), daemon=True)
            thread.start()
            time.sleep(0.3)                             # both subscriptions arrive
            for start in range(1, 8001, 1000):          # ~8,000 Market messages, ~1.5 MB
                results = b1.request_batch([PlaceOrder(session="S1", instrument=market.instrument,
                                             paddle=seller, order=i, side="sell", qty=1,
                                             price=1_000_000 + i)
                                  for i in range(start, start + 1000)], timeout=60)
                if start == 1:
                    first = results[0].seq
            last = results[-1].seq
            assert wait_for(lambda: server.feed_hung_up == 1, timeout=30)
            assert wait_for(lambda: _established(feed_port) == 1)
            assert wait_for(lambda: received and received[-1] == last, timeout=30)
            published = [seq for seq in received if seq >= first]
            assert published == list(range(first, last + 1))    # each order's, none missed
            assert len(server.feed_peers) == 1 and server.failed is None
        finally:
            stop.set()
            thread.join()
            context.destroy(linger=0)


def _set_role(data, user: str, role: str) -> None:
    """Change ``user``'s role in the key store, as an edit of users.json."""
    import json
    import os
    users_file = data / "keys" / "users.json"
    body = json.loads(users_file.read_text())
    body["users"][user]["role"] = role
    tmp = users_file.with_name(".users.json.edit")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, users_file)


def test_a_role_changed_in_the_key_store_ends_the_users_sessions_and_connections(exchange):
    """b1 made a viewer in the key store: its open broker session ends
    (LoggedOut `revoked`) and every further message of that connection, a
    Logon again, a StatusRequest, a command, is refused `revoked`, nothing
    acted on; its data-socket connection, made as a broker, is refused too.
    A connection made after the change, under the new role, serves."""
    data, server = exchange
    context = zmq.Context()
    try:
        b1 = raw_dealer(data, "b1", "broker", context)
        b1.send(p.encode(p.Logon(heartbeat_ms=60000)))
        assert isinstance(recv_until(b1, p.LogonAccepted), p.LogonAccepted)
        b1_data = raw_dealer(data, "b1", "data", context)
        b1_data.send(p.encode(p.SnapshotRequest()))
        assert isinstance(p.data_reply_decoder.decode(b1_data.recv()), p.Snapshot)
        viewer = raw_dealer(data, "viewer", "data", context)   # its role is unchanged
        seq = server.next_seq

        _set_role(data, "b1", "viewer")
        with client(data, "op") as op:
            assert op.reload_keys() == 4
        ended = recv_until(b1, p.LoggedOut, timeout=5)
        assert ended is not None and ended.reason == "revoked"
        for msg in (p.StatusRequest(),
                    p.Request(client_id="demoted-1", cmd=RegisterParty(name="Evil Co")),
                    p.Logon(heartbeat_ms=60000)):
            b1.send(p.encode(msg))
            refused = recv_until(b1, p.SessionRejected, timeout=5)
            assert refused is not None and refused.code == "revoked", msg
            assert "role changed to viewer" in refused.text
        assert server.next_seq == seq                      # nothing was journaled
        b1_data.send(p.encode(p.SnapshotRequest()))
        answer = p.data_reply_decoder.decode(b1_data.recv())
        assert isinstance(answer, p.SessionRejected) and answer.code == "revoked"
        assert "role changed to viewer" in answer.text
        viewer.send(p.encode(p.SnapshotRequest()))
        assert isinstance(p.data_reply_decoder.decode(viewer.recv()), p.Snapshot)
        again = raw_dealer(data, "b1", "data", context)      # as a viewer now
        again.send(p.encode(p.SnapshotRequest()))
        assert isinstance(p.data_reply_decoder.decode(again.recv()), p.Snapshot)
        assert not any(conn.user == "b1" for conn in list(server.sessions["broker"].values()))
    finally:
        context.destroy(linger=0)


def test_a_broker_made_an_operator_keeps_no_broker_session(exchange):
    """A promotion ends the session too: a broker made an operator must log
    on again on the operator socket (its broker connection is refused)."""
    data, _ = exchange
    context = zmq.Context()
    try:
        b2 = raw_dealer(data, "b2", "broker", context)
        b2.send(p.encode(p.Logon(heartbeat_ms=60000)))
        assert isinstance(recv_until(b2, p.LogonAccepted), p.LogonAccepted)
        _set_role(data, "b2", "operator")
        with client(data, "op") as op:
            op.reload_keys()
        ended = recv_until(b2, p.LoggedOut, timeout=5)
        assert ended is not None and ended.reason == "revoked"
        b2.send(p.encode(p.Logon(heartbeat_ms=60000)))
        refused = recv_until(b2, p.SessionRejected, timeout=5)
        assert refused is not None and refused.code == "revoked"
        now_operator = raw_dealer(data, "b2", "operator", context)  # same key, new role
        now_operator.send(p.encode(p.Logon(heartbeat_ms=60000)))
        accepted = recv_until(now_operator, p.LogonAccepted, timeout=5)
        assert accepted is not None and accepted.role == "operator"
    finally:
        context.destroy(linger=0)


def test_accepted_handshakes_log_a_bounded_number_of_lines(tmp_path, capsys):
    """A user whose key is good, reconnecting without end (a viewer key is
    handed out widely), logs at most the budget's handshakes a window."""
    from gateway.logs import LogBudget
    with running(tmp_path) as server:
        server.zap.acceptances = LogBudget(3, 10**12)
        capsys.readouterr()
        seen = []
        for _ in range(8):
            with client(tmp_path, "b1") as b1:
                assert b1.ok(RegisterParty(name="Acme")).accepted
            seen.append(capsys.readouterr().err)
    text = "".join(seen)
    assert text.count('"auth_accepted"') == 3
    assert text.count('"logon"') == 8                    # logons are a session's own line
