"""Abuse of the gateway by authenticated peers (found by a security audit):
a routing id taken over by another broker, resends repeated to multiply the
server's answers, a journal that cannot be read. Each keeps the server
serving, and leaks nothing."""

from __future__ import annotations

import errno

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
