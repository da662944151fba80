"""A corpus of bad input sent over a real CURVE connection: every message gets
a session-level reject (undecodable, invalid, not permitted) or a business
reject (the engine's reason code), or, for an oversize frame, the connection
is dropped with a log line; a well-behaved broker on another connection is
served after every single one."""

from __future__ import annotations

import json
import os
import random

import msgspec
import pytest
import zmq

from exchange.commands import PlaceBid, PlaceOrder, RegisterParty
from gateway import protocol as p
from tests.integration.gateway_harness import (build_market, client, raw_dealer, recv_message,
                                               recv_until, running)

SEED = int(os.environ.get("LOTEX_FUZZ_SEED", "20170905"))
FUZZ_MESSAGES = 150
MAX_BYTES = 16384    # the harness's max_message_bytes

enc = msgspec.msgpack.encode


def request(cmd: dict, cid: str = "bad-1") -> bytes:
    return enc({"type": "Request", "client_id": cid, "cmd": cmd})


def corpus(paddle_b1: int, paddle_b2: int, lot: str, instrument: str
           ) -> list[tuple[str, bytes | list[bytes], str]]:
    """(name, frames, expected) with expected "session:<code>" or "business:<code>"."""
    good = p.encode(p.Request(client_id="ok-1", cmd=RegisterParty(name="A")))
    bid = {"type": "PlaceBid", "serial": lot, "paddle": paddle_b1, "amount": 6_000_000}
    return [
        ("garbage bytes", b"\xc1\xff\x00garbage\x13\x37", "session:undecodable"),
        ("empty frame", b"", "session:undecodable"),
        ("truncated msgpack", good[:-5], "session:undecodable"),
        ("invalid utf-8", b"\x81\xa4type\xa5Lo\xffon", "session:undecodable"),
        ("two frames", [good, good], "session:undecodable"),
        ("a bare integer", enc(42), "session:invalid_message"),
        ("a list", enc([1, 2, 3]), "session:invalid_message"),
        ("deep nesting", b"\x91" * 16000 + b"\xc0", "session:invalid_message"),
        ("unknown message tag", enc({"type": "Explode"}), "session:invalid_message"),
        ("no type", enc({"client_id": "x", "cmd": {}}), "session:invalid_message"),
        ("unknown command tag", request({"type": "LaunchMissiles"}), "session:invalid_message"),
        ("wrong type: client id", enc({"type": "Request", "client_id": 5,
                                       "cmd": {"type": "RegisterParty", "name": "A"}}),
         "session:invalid_message"),
        ("wrong type: amount as string", request({**bid, "amount": "6000000"}),
         "session:invalid_message"),
        ("wrong type: float amount", request({**bid, "amount": 6e6}),
         "session:invalid_message"),
        ("wrong type: bool paddle", request({**bid, "paddle": True}),
         "session:invalid_message"),
        ("missing field", request({"type": "PlaceBid", "serial": lot, "paddle": paddle_b1}),
         "session:invalid_message"),
        ("unknown field", request({**bid, "reserve": 1}), "session:invalid_message"),
        ("bad enum", request({"type": "PlaceOrder", "session": "S1", "instrument": instrument,
                              "paddle": paddle_b1, "order": 1, "side": "sideways", "qty": 1,
                              "price": 5}), "session:invalid_message"),
        ("int beyond 64 bits", request({**bid, "amount": 1e30}), "session:invalid_message"),
        ("reserved opcode for an int", b"\x83\xa4type\xa7Request\xa9client_id\xa1x\xa3cmd\x84\xa4type"
                               b"\xa8PlaceBid\xa6serial\xa4EN-1\xa6paddle\x65\xa6amount\xc1",
         "session:undecodable"),
        ("Tick from a client", request({"type": "Tick"}), "session:not_permitted"),
        ("empty client id", request({"type": "RegisterParty", "name": "A"}, cid=""),
         "session:bad_client_id"),
        ("long client id", request({"type": "RegisterParty", "name": "A"}, cid="c" * 100),
         "session:bad_client_id"),
        ("reload from a broker", enc({"type": "Reload"}), "session:not_permitted"),
        ("empty batch", enc({"type": "Batch", "requests": []}), "session:bad_batch"),
        ("batch holding a wrong type", enc({"type": "Batch", "requests": [
            {"type": "Request", "client_id": "b-1", "cmd": {**bid, "amount": "6"}}]}),
         "batch:invalid_message"),
        ("batch holding a bare command", enc({"type": "Batch", "requests": [bid]}),
         "batch:invalid_message"),
        ("batch with a field of its own", enc({"type": "Batch", "atomic": True, "requests": [
            {"type": "Request", "client_id": "b-2", "cmd": {**bid, "amount": "6"}}]}),
         "session:invalid_message"),
        ("batch whose requests are no list", enc({"type": "Batch", "requests": 5}),
         "session:invalid_message"),
        ("huge amount", request({**bid, "amount": 2**64 - 1}, "huge-1"), "business:out_of_range"),
        ("huge negative", request({**bid, "amount": -2**63}, "huge-2"), "business:non_positive"),
        ("zero amount", request({**bid, "amount": 0}, "zero-1"), "business:non_positive"),
        ("negative amount", request({**bid, "amount": -30000}, "neg-1"), "business:non_positive"),
        ("zero quantity", request({"type": "PlaceOrder", "session": "S1",
                                   "instrument": instrument, "paddle": paddle_b1, "order": 9,
                                   "side": "buy", "qty": 0, "price": 5}, "zq-1"),
         "business:non_positive"),
        ("other broker's paddle: bid", request({**bid, "paddle": paddle_b2}, "steal-1"),
         "business:not_your_paddle"),
        ("other broker's paddle: order", request({"type": "PlaceOrder", "session": "S1",
                                                  "instrument": instrument,
                                                  "paddle": paddle_b2, "order": 1,
                                                  "side": "buy", "qty": 1, "price": 5},
                                                 "steal-2"), "business:not_your_paddle"),
        ("unknown paddle", request({**bid, "paddle": 999999}, "ghost-1"),
         "business:not_your_paddle"),         # as another's: no oracle of which exist
        ("operator command", request({"type": "CreateSession", "session": "X", "name": "x"},
                                     "op-1"), "business:not_permitted"),
    ]


def check_reply(sock: zmq.Socket, expected: str, name: str) -> None:
    kind, code = expected.split(":")
    if kind == "batch":                       # each request refused alone, in one Results
        reply = recv_until(sock, p.Results)
        assert reply is not None and reply.results, (name, reply)
        assert all(type(r) is p.SessionRejected and r.code == code
                   for r in reply.results), (name, reply)
    elif kind == "session":
        reply = recv_until(sock, p.SessionRejected)
        assert reply is not None and reply.code == code, (name, reply)
    else:
        reply = recv_until(sock, p.Result)
        assert reply is not None and not reply.accepted and reply.code == code, (name, reply)


def test_bad_input_corpus_while_a_good_broker_is_served(tmp_path, capsys):
    with running(tmp_path) as server, client(tmp_path, "op") as op, \
            client(tmp_path, "b1") as b1, client(tmp_path, "b2") as b2:
        market = build_market(op, b1, b2)
        context = zmq.Context()
        try:
            sock = raw_dealer(tmp_path, "b1", "broker", context)
            sock.send(p.encode(p.Logon(heartbeat_ms=5000)))
            assert isinstance(recv_until(sock, p.LogonAccepted), p.LogonAccepted)
            good_orders = 0
            items = corpus(market.paddles["Acme"], market.paddles["Borealis"],
                           market.english, market.instrument)
            for name, frames, expected in items:
                if isinstance(frames, list):
                    sock.send_multipart(frames)
                else:
                    sock.send(frames)
                check_reply(sock, expected, name)
                # the well-behaved broker is served after every bad message
                good_orders += 1
                result = b2.request(PlaceOrder(
                    session="S1", instrument=market.instrument,
                    paddle=market.paddles["Borealis"], order=good_orders, side="buy", qty=1,
                    price=100 + good_orders))
                assert result.accepted, (name, result)

            # an oversize frame: the connection is dropped, the server goes on
            sock.send(b"\x00" * (MAX_BYTES + 1))
            assert recv_message(sock, timeout=1.0) is None
            assert b2.ok(RegisterParty(name="still served")).accepted
            # the same key logs on again over a new connection and is served
            sock.close()
            sock = raw_dealer(tmp_path, "b1", "broker", context)
            sock.send(p.encode(p.Logon()))
            assert isinstance(recv_until(sock, p.LogonAccepted), p.LogonAccepted)

            # seeded fuzz: random bytes and mutated valid messages
            rng = random.Random(SEED)
            valid = p.encode(p.Request(client_id="fz", cmd=PlaceBid(
                serial=market.english, paddle=market.paddles["Acme"], amount=6_000_000)))
            answered = 0
            for i in range(FUZZ_MESSAGES):
                if i % 2:
                    data = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
                else:
                    mutated = bytearray(valid)
                    for _ in range(rng.randint(1, 4)):
                        mutated[rng.randrange(len(mutated))] = rng.getrandbits(8)
                    data = bytes(mutated)
                sock.send(data)
                reply = recv_until(sock, (p.SessionRejected, p.Result), timeout=5)
                assert reply is not None, f"no answer to fuzz message {i} (seed {SEED})"
                answered += 1
            assert answered == FUZZ_MESSAGES
            final = b2.ok(RegisterParty(name="served after the fuzz"))
            assert final.accepted
            assert server.failed is None
            sock.close()
        finally:
            context.destroy(linger=0)
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()
              if line.startswith("{")]
    refused = [line for line in logged if line["event"] == "refused"]
    expected_sessions = sum(1 for _, _, e in items if e.startswith("session:"))
    assert len(refused) >= expected_sessions
    assert {line["code"] for line in refused} >= {"undecodable", "invalid_message",
                                                 "not_permitted", "bad_client_id"}
    assert any(line["event"] == "connection" and line["what"] == "disconnected"
               for line in logged)


@pytest.mark.parametrize("frames", [[b"\x00" * (MAX_BYTES + 1)],
                                    [b"x", b"\x00" * (MAX_BYTES + 1)]])
def test_oversize_before_logon_does_not_hurt_others(tmp_path, frames):
    with running(tmp_path), client(tmp_path, "b2") as b2:
        context = zmq.Context()
        try:
            sock = raw_dealer(tmp_path, "b1", "broker", context)
            sock.send_multipart(frames)
            assert recv_message(sock, timeout=0.5) is None
            assert b2.ok(RegisterParty(name="fine")).accepted
            sock.close()
        finally:
            context.destroy(linger=0)


def test_unread_connection_events_never_stall_the_io_thread(tmp_path):
    """With the loop stalled, 800 connections come and go: 2,400 monitor
    events unread (libzmq's pipe held ~2,000 before its I/O thread blocked,
    and every socket with it). Handshakes still complete; then all are read."""
    from gateway.keys import initialise
    from gateway.server import serve_in_thread, stop_thread
    from tests.integration.gateway_harness import gateway_config

    initialise(tmp_path)
    server, thread = serve_in_thread(tmp_path, gateway_config())
    try:
        server.stop()                                  # the loop reads no monitor now
        thread.join(timeout=10)
        context = zmq.Context()
        try:
            for _ in range(800):                       # accepted, handshake, disconnected
                sock = raw_dealer(tmp_path, "b1", "broker", context)
                watch = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
                assert watch.poll(20_000), "a handshake did not complete"
                sock.disable_monitor()
                watch.close(linger=0)
                sock.close(linger=0)
        finally:
            context.destroy(linger=0)
        counted = {}
        for monitor, port in server.monitors.items():
            while monitor.poll(200):
                monitor.recv_multipart()
                counted[port] = counted.get(port, 0) + 1
        assert counted.get("broker", 0) >= 2 * 800      # accepted and handshake each, at least
    finally:
        stop_thread(server, thread)


def _send_frames(sock: zmq.Socket, n: int) -> None:
    """One message of ``n`` empty frames."""
    for _ in range(n - 1):
        sock.send(b"", zmq.SNDMORE)
    sock.send(b"")


@pytest.mark.parametrize("port,user", [("broker", "b1"), ("data", "viewer")])
def test_a_message_of_many_frames_is_walked_a_bounded_number_a_turn(tmp_path, monkeypatch,
                                                                    port, user):
    """ZeroMQ hands over a message whole, however many frames (its size limit
    is per frame, its queue limits count messages), and every frame must be
    received before the socket's next message. The protocol has one frame a
    message: a message of 20,000 empty frames is received FRAMES_PER_TURN
    (here 1,000) a turn, none kept, then refused `undecodable` once and
    counted; the socket's next message is served as usual."""
    import gateway.server
    from gateway.server import CATCH_UP_PER_TURN, stop_thread
    from tests.integration.test_gateway_turn_limits import _serve
    monkeypatch.setattr(gateway.server, "FRAMES_PER_TURN", 1000)
    server, thread = _serve(tmp_path)
    context = zmq.Context()
    try:
        server.stop()                                   # the test drives the turns
        thread.join(timeout=10)
        sock = raw_dealer(tmp_path, user, port, context)
        sock.sndhwm = 0
        target = server.broker if port == "broker" else server.data

        def turn() -> None:
            server.catch_up_left = CATCH_UP_PER_TURN
            if port == "broker":
                server._drain(target, "broker")
                server._flush()
            else:
                server._serve_data()

        _send_frames(sock, 20_000)
        assert target.poll(30000)
        walked = []
        for _ in range(40):                             # 20 turns are enough
            turn()
            if target not in server.skipping:
                break
            walked.append(server.skipping[target][1])
        steps = [b - a for a, b in zip([0] + walked, walked)]
        assert len(walked) >= 19 and max(steps) <= 1000, steps
        assert target not in server.skipping and server.multipart_refused[port] == 1
        decode = p.server_decoder.decode if port == "broker" else p.data_reply_decoder.decode
        assert sock.poll(10000)
        refusal = decode(sock.recv())
        assert isinstance(refusal, p.SessionRejected) and refusal.code == "undecodable"
        assert "20,000" in refusal.text
        # the next message of the socket is served
        sock.send(p.encode(p.Heartbeat() if port == "broker" else p.SnapshotRequest()))
        assert target.poll(10000)
        turn()
        assert sock.poll(10000)
        answer = decode(sock.recv())
        assert (answer.code == "not_logged_on" if port == "broker"
                else isinstance(answer, p.Snapshot)), answer
        sock.close()
    finally:
        context.destroy(linger=0)
        stop_thread(server, thread)


def test_a_message_of_many_frames_is_refused_while_a_good_broker_is_served(tmp_path):
    """End to end: a broker's message of 50,000 empty frames is refused
    `undecodable` with its count, and the other broker is served before and
    after it; the server counts the message."""
    with running(tmp_path) as server, client(tmp_path, "b2") as b2:
        context = zmq.Context()
        try:
            sock = raw_dealer(tmp_path, "b1", "broker", context)
            sock.sndhwm = 0
            assert b2.ok(RegisterParty(name="before")).accepted
            _send_frames(sock, 50_000)
            refusal = recv_until(sock, p.SessionRejected, timeout=60)
            assert refusal is not None and refusal.code == "undecodable", refusal
            assert "50,000" in refusal.text
            assert b2.ok(RegisterParty(name="after")).accepted
            assert server.multipart_refused["broker"] == 1 and server.failed is None
            sock.close()
        finally:
            context.destroy(linger=0)


def test_an_invalid_request_is_refused_under_its_client_id(tmp_path):
    """A request the server can read as msgpack but not as a valid command is
    refused under each client id it carries, so its sender stops resending."""
    from gateway.client import SessionRejectedError
    with running(tmp_path), client(tmp_path, "b1", resend_after=0.2) as b1:
        context = zmq.Context()
        try:
            sock = raw_dealer(tmp_path, "b1", "broker", context)
            sock.send(p.encode(p.Logon(heartbeat_ms=5000)))
            assert isinstance(recv_until(sock, p.LogonAccepted), p.LogonAccepted)
            sock.send(request({"type": "RegisterParty", "name": 5}, cid="typed-1"))
            reply = recv_until(sock, p.SessionRejected)
            assert (reply.code, reply.client_id) == ("invalid_message", "typed-1")
            # in a Batch, each request that does not match is refused alone and the
            # others are done, as if each were sent alone
            sock.send(enc({"type": "Batch", "requests": [
                {"type": "Request", "client_id": "typed-2", "cmd": {"type": "Tock"}},
                {"type": "Request", "client_id": "typed-3",
                 "cmd": {"type": "RegisterParty", "name": "A"}},
                {"type": "Request", "client_id": 7, "cmd": {}}]}))
            answers = recv_until(sock, p.Results).results
            assert [(type(a).__name__, a.client_id) for a in answers] == [
                ("SessionRejected", "typed-2"), ("Result", "typed-3"), ("SessionRejected", "")]
            assert answers[0].code == answers[2].code == "invalid_message"
            assert answers[1].accepted
            # a Batch whose own fields are wrong is refused under each id it carries
            sock.send(enc({"type": "Batch", "requests": "no list", "client_id": "typed-4"}))
            assert (recv_until(sock, p.SessionRejected).client_id) == ""
            sock.send(enc({"type": "Batch", "extra": 1, "requests": [
                {"type": "Request", "client_id": "typed-5",
                 "cmd": {"type": "RegisterParty", "name": "B"}}]}))
            reply = recv_until(sock, p.SessionRejected)
            assert (reply.code, reply.client_id) == ("invalid_message", "typed-5")
        finally:
            context.destroy(linger=0)
        # the client library: the refusal answers the request, which is not resent
        cid = b1.send(RegisterParty(name=123))             # the client does not check types
        with pytest.raises(SessionRejectedError) as refused:
            b1.result(cid)
        assert refused.value.code == "invalid_message"


def test_refusals_under_client_ids_count_against_the_throttle(tmp_path):
    """Each client id an invalid Batch carries makes an answer: they count
    against the broker's throttle, so 800 ids in 8 KB cannot make the
    server answer 800 times beyond the broker's rate (a Batch whose own
    fields are wrong: one `throttled`; one whose requests do not match: each
    refused alone in its Results, `throttled` beyond the rate)."""
    with running(tmp_path, max_requests_per_second=500):
        context = zmq.Context()
        try:
            sock = raw_dealer(tmp_path, "b1", "broker", context)
            sock.send(p.encode(p.Logon(heartbeat_ms=5000)))
            assert isinstance(recv_until(sock, p.LogonAccepted), p.LogonAccepted)
            sock.send(enc({"type": "Batch", "extra": 0,
                           "requests": [{"client_id": str(i)} for i in range(800)]}))   # 8 KB
            first = recv_until(sock, p.SessionRejected)
            assert (first.code, first.client_id) == ("throttled", "")
            assert recv_message(sock, timeout=0.5) is None        # one answer, not 800
            sock.send(enc({"type": "Batch",
                           "requests": [{"client_id": f"x{i}"} for i in range(800)]}))
            answers = recv_until(sock, p.Results).results
            codes = [a.code for a in answers]
            done = codes.count("invalid_message")   # about a second's worth answered
            assert len(codes) == 800 and set(codes) == {"invalid_message", "throttled"}
            assert done < 600, done
            assert recv_message(sock, timeout=0.5) is None
        finally:
            context.destroy(linger=0)


def test_refused_messages_keep_a_session_alive(tmp_path):
    """The server ends a session that has sent nothing for three heartbeat
    intervals: a message it refuses (undecodable, invalid) is something sent,
    so the session lives on (it once timed out, cancelling the broker's
    orders if it asked for that)."""
    import time
    with running(tmp_path):
        context = zmq.Context()
        try:
            sock = raw_dealer(tmp_path, "b1", "broker", context)
            sock.send(p.encode(p.Logon(heartbeat_ms=200)))
            assert isinstance(recv_until(sock, p.LogonAccepted), p.LogonAccepted)
            seen = []
            end = time.monotonic() + 2.0               # ten intervals
            sent = 0
            while time.monotonic() < end:
                sent += 1
                sock.send(request({"type": "RegisterParty", "name": 5}, cid="alive-1")
                          if sent % 2 else b"\xc1")
                while (message := recv_message(sock, timeout=0.1)) is not None:
                    seen.append(message)
            assert not [m for m in seen if type(m) is p.LoggedOut], seen
            assert {m.code for m in seen if type(m) is p.SessionRejected} == {
                "invalid_message", "undecodable"}
            sock.send(request({"type": "RegisterParty", "name": "Alive"}, cid="alive-2"))
            assert recv_until(sock, p.Result).accepted
        finally:
            context.destroy(linger=0)
