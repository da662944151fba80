"""PROTOCOL.md as the only spec: a client written from the document alone.

The wire side uses nothing of lotex: bare pyzmq sockets with CURVE options,
``msgspec.msgpack`` on plain dicts, and ``json`` for the key and endpoint
files. Only the server is started with the test harness. Every step below is
what PROTOCOL.md says a client in any language does, over real sockets."""

from __future__ import annotations

import datetime
import json
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

enc = msgspec.msgpack.encode
dec = msgspec.msgpack.decode

TIMEOUT = 5.0            # seconds, on every receive
LONG_HEARTBEAT = 10_000  # ms: sessions that must not time out during a test
CREDIT = 1_000_000       # cents: the credit limit of b1's parties
IDENTITY_FIELDS = {"party", "buyer", "seller", "broker", "user", "actor",
                   "buyer_name", "seller_name", "buy_order", "sell_order"}


# --- the raw client --------------------------------------------------------------------------

def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def client_ids():
    """YYYYMMDD-<random>-<counter>, as "Client ids" suggests."""
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    tag = uuid.uuid4().hex[:8]
    n = 0
    while True:
        n += 1
        yield f"{day}-{tag}-{n}"


class Raw:
    """One DEALER connection on the broker, operator or data socket."""

    def __init__(self, data_dir: Path, user: str, port: str, ctx: zmq.Context) -> None:
        key = load_json(data_dir / "clients" / f"{user}.json")
        self.key = key
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.curve_serverkey = key["server_public_key"].encode()
        self.sock.curve_publickey = key["public_key"].encode()
        self.sock.curve_secretkey = key["secret_key"].encode()
        self.sock.connect(load_json(data_dir / "endpoints.json")[port])
        self.ids = client_ids()
        self.notices: list[dict[str, Any]] = []
        self.heartbeats = 0

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.send(enc(msg))

    def recv(self, timeout: float = TIMEOUT) -> dict[str, Any] | None:
        if not self.sock.poll(int(timeout * 1000), zmq.POLLIN):
            return None
        msg = dec(self.sock.recv())
        assert isinstance(msg, dict) and isinstance(msg.get("type"), str), msg
        return msg

    def recv_answer(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message that is not a Heartbeat or a Notice (kept aside)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg = self.recv(left)
            if msg is None:
                break
            if msg["type"] == "Heartbeat":
                self.heartbeats += 1
            elif msg["type"] == "Notice":
                self.notices.append(msg)
            else:
                return msg
        raise AssertionError("no answer within the timeout")

    def logon(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("heartbeat_ms", LONG_HEARTBEAT)
        self.send({"type": "Logon", **fields})
        answer = self.recv_answer()
        assert answer["type"] == "LogonAccepted", answer
        return answer

    def request(self, cmd: dict[str, Any], client_id: str | None = None) -> dict[str, Any]:
        cid = client_id or next(self.ids)
        self.send({"type": "Request", "client_id": cid, "cmd": cmd})
        answer = self.recv_answer()
        assert answer["type"] in ("Result", "SessionRejected"), answer
        assert answer["client_id"] == cid, answer
        return answer

    def ok(self, cmd: dict[str, Any]) -> dict[str, Any]:
        result = self.request(cmd)
        assert result["type"] == "Result" and result["accepted"], result
        assert result["code"] == "" and result["text"] == "" and result["resent"] is False
        return result

    def close(self) -> None:
        self.sock.close(0)


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def one(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_type(events, kind)
    assert len(found) == 1, (kind, events)
    return found[0]


def subscriber(data_dir: Path, ctx: zmq.Context) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(load_json(data_dir / "endpoints.json")["feed"])
    return sub


def feed_recv(sub: zmq.Socket, timeout: float = TIMEOUT) -> dict[str, Any] | None:
    if not sub.poll(int(timeout * 1000), zmq.POLLIN):
        return None
    frames = sub.recv_multipart()
    assert len(frames) == 1, "one frame per feed message, no topic frame"
    msg = dec(frames[0])
    assert msg["type"] in ("Market", "FeedHeartbeat"), msg
    return msg


def wait_feed_live(sub: zmq.Socket) -> dict[str, Any]:
    """Block until a FeedHeartbeat shows the subscription is live; return it."""
    deadline = time.monotonic() + TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        msg = feed_recv(sub, left)
        if msg is not None and msg["type"] == "FeedHeartbeat":
            return msg
    raise AssertionError("no FeedHeartbeat")


def market_messages(sub: zmq.Socket, until_seq: int) -> list[dict[str, Any]]:
    """Market messages from the feed up to and including ``until_seq``."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        msg = feed_recv(sub, left)
        if msg is None:
            break
        if msg["type"] == "Market":
            got.append(msg)
            if msg["seq"] >= until_seq:
                return got
    raise AssertionError(f"feed did not reach seq {until_seq}: {got}")


def replay(data: Raw, from_seq: int, to_seq: int = 0) -> list[dict[str, Any]]:
    """Every Market message from_seq..to_seq, asking again while ``more``."""
    messages: list[dict[str, Any]] = []
    for _ in range(50):
        data.send({"type": "ReplayRequest", "from_seq": from_seq, "to_seq": to_seq,
                   "limit": 1000})
        answer = data.recv_answer()
        assert answer["type"] == "Replay", answer
        messages.extend(answer["messages"])
        if not answer["more"]:
            if to_seq:
                assert answer["through"] == to_seq
            return messages
        from_seq = answer["through"] + 1
    raise AssertionError("replay never completed")


def snapshot(data: Raw, session: str = "", key: str = "") -> dict[str, Any]:
    data.send({"type": "SnapshotRequest", "session": session, "key": key})
    answer = data.recv_answer()
    assert answer["type"] == "Snapshot", answer
    assert (answer["session"], answer["key"]) == (session, key)
    return answer


def fold(events: list[dict[str, Any]], state: dict | None = None) -> dict:
    """The market state the events make: replacing events keep their last value."""
    state = dict(state or {})
    for e in events:
        kind = e["type"]
        if kind == "DepthChanged":
            k = (kind, e["session"], e["instrument"], e["side"], e["price"])
            if e["qty"] == 0:
                state.pop(k, None)
            else:
                state[k] = e
        elif kind in ("QuoteChanged", "TradeExecuted", "PhaseChanged", "IndicativePrice",
                      "InstrumentCreated", "OrderLimitSet"):
            state[(kind, e["session"], e["instrument"])] = e
        elif kind in ("SessionCreated", "SessionClosed"):
            state[(kind, e["session"])] = e
        else:
            state[(kind, enc(e))] = e
    return state


# --- set-up through the raw operator client -----------------------------------------------

class Market:
    """What `open_market` made, with the ids read back from the answers."""

    def __init__(self) -> None:
        self.parties: dict[str, int] = {}
        self.paddles: dict[str, int] = {}
        self.b1_events: dict[int, list[dict[str, Any]]] = {}   # seq -> b1's events
        self.instrument_seq = 0
        self.session = "S1"
        self.instrument = "U1"


def remember_b1(market: Market, result: dict[str, Any]) -> None:
    mine = [e for e in result["events"] if "b1" in e["to"]]
    if mine:
        market.b1_events[result["seq"]] = mine


def open_market(op: Raw) -> Market:
    """Session S1, parties Acme (buyer) and Seller of broker b1 with credit and
    paddles, a continuous units instrument U1, and 100 units for Seller."""
    m = Market()
    created = op.ok({"type": "CreateSession", "session": m.session, "name": "Raw sale"})
    event = one(created["events"], "SessionCreated")
    assert event["to"] == [] and event["currency"] == "USD"
    last_seq = created["seq"]
    for name in ("Acme", "Seller"):
        result = op.ok({"type": "RegisterParty", "name": name, "country": "US",
                        "broker": "b1"})
        assert result["seq"] > last_seq
        last_seq = result["seq"]
        registered = one(result["events"], "PartyRegistered")
        # "A party's id is the sequence number of its RegisterParty."
        assert registered["party"] == result["seq"]
        assert registered["broker"] == "b1" and registered["name"] == name
        assert set(registered["to"]) == {"b1", "@operators"}
        m.parties[name] = registered["party"]
        remember_b1(m, result)
    for name, party in m.parties.items():
        result = op.ok({"type": "ReviewCredit", "party": party, "approved": True,
                        "credit_limit": CREDIT, "agreement_version": "BRA-2017"})
        reviewed = one(result["events"], "CreditReviewed")
        assert (reviewed["party"], reviewed["approved"], reviewed["credit_limit"]) == (
            party, True, CREDIT)
        remember_b1(m, result)
        result = op.ok({"type": "IssuePaddle", "session": m.session, "party": party})
        issued = one(result["events"], "PaddleIssued")
        assert issued["party"] == party and issued["session"] == m.session
        m.paddles[name] = issued["paddle"]
        remember_b1(m, result)
    # "paddles are numbered per session from 101"
    assert sorted(m.paddles.values()) == [101, 102]
    result = op.ok({"type": "CreateInstrument", "session": m.session,
                    "instrument": m.instrument, "kind": "units"})
    created = one(result["events"], "InstrumentCreated")
    assert created["to"] == [] and created["phase"] == "continuous"
    assert created["kind"] == "units" and created["currency"] == "USD"
    m.instrument_seq = result["seq"]
    result = op.ok({"type": "IssueUnits", "session": m.session, "instrument": m.instrument,
                    "paddle": m.paddles["Seller"], "qty": 100})
    issued = one(result["events"], "UnitsIssued")
    assert (issued["paddle"], issued["qty"], issued["holding"]) == (
        m.paddles["Seller"], 100, 100)
    remember_b1(m, result)
    return m


def order(m: Market, who: str, number: int, side: str, qty: int, price: int,
          **extra: Any) -> dict[str, Any]:
    return {"type": "PlaceOrder", "session": m.session, "instrument": m.instrument,
            "paddle": m.paddles[who], "order": number, "side": side, "qty": qty,
            "price": price, **extra}


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def opened(exchange, ctx):
    """(data dir, operator connection, market) on a running server."""
    data_dir, _server = exchange
    op = Raw(data_dir, "op", "operator", ctx)
    op.logon()
    yield data_dir, op, open_market(op)
    op.close()


# --- the tests ------------------------------------------------------------------------------

def test_key_files_handshake_and_logon(exchange, ctx):
    data_dir, _server = exchange
    endpoints = load_json(data_dir / "endpoints.json")
    assert {"broker", "operator", "feed", "data", "server_public_key"} <= set(endpoints)
    key = load_json(data_dir / "clients" / "b1.json")
    assert {"user", "role", "public_key", "secret_key", "server_public_key"} <= set(key)
    assert (key["user"], key["role"]) == ("b1", "broker")
    assert key["server_public_key"] == endpoints["server_public_key"]
    assert all(len(key[k]) == 40 for k in ("public_key", "secret_key", "server_public_key"))

    b1 = Raw(data_dir, "b1", "broker", ctx)
    # before Logon, a Request is refused with not_logged_on
    refused = b1.request({"type": "RegisterParty", "name": "Early"}, client_id="early-1")
    assert refused["type"] == "SessionRejected" and refused["code"] == "not_logged_on"
    # heartbeat_ms out of 100..60000
    b1.send({"type": "Logon", "heartbeat_ms": 50})
    bad = b1.recv_answer()
    assert bad["type"] == "SessionRejected" and bad["code"] == "bad_heartbeat"

    accepted = b1.logon(heartbeat_ms=500)
    assert accepted["user"] == "b1" and accepted["role"] == "broker"
    assert accepted["heartbeat_ms"] == 500
    assert accepted["cancel_on_disconnect"] is False
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    assert accepted["trading_day"] == today
    assert accepted["last_seq"] == 0
    assert isinstance(accepted["max_message_bytes"], int) and accepted["max_message_bytes"] > 0
    # a second Logon on the same connection replaces the first
    assert b1.logon(heartbeat_ms=LONG_HEARTBEAT)["heartbeat_ms"] == LONG_HEARTBEAT
    party = b1.ok({"type": "RegisterParty", "name": "Own client"})
    assert one(party["events"], "PartyRegistered")["party"] == party["seq"]
    b1.send({"type": "Logout"})
    assert b1.recv_answer() == {"type": "LoggedOut", "reason": "logout"}
    b1.close()

    # a key whose role the socket does not admit: the handshake fails, nothing comes back
    wrong = Raw(data_dir, "b1", "operator", ctx)
    wrong.send({"type": "Logon"})
    assert wrong.recv(timeout=0.5) is None
    wrong.close()


def test_broker_trades_rejects_and_client_ids(opened, ctx):
    data_dir, op, m = opened
    b1 = Raw(data_dir, "b1", "broker", ctx)
    b1.logon()

    sell = b1.ok(order(m, "Seller", 1, "sell", 10, 500))
    assert sell["seq"] > m.instrument_seq
    accepted = one(sell["events"], "OrderAccepted")
    assert (accepted["paddle"], accepted["order"], accepted["qty"], accepted["tif"]) == (
        m.paddles["Seller"], 1, 10, "gtc")
    assert set(accepted["to"]) == {"b1", "@operators"}
    quote = one(sell["events"], "QuoteChanged")
    assert (quote["to"], quote["ask"], quote["ask_qty"], quote["bid"]) == ([], 500, 10, 0)

    buy_cmd = order(m, "Acme", 1, "buy", 4, 500)
    buy_id = next(b1.ids)
    buy = b1.request(buy_cmd, client_id=buy_id)
    assert buy["type"] == "Result" and buy["accepted"] and not buy["resent"]
    assert buy["seq"] == sell["seq"] + 1
    trade = one(buy["events"], "TradeExecuted")
    assert trade["to"] == [] and trade["aggressor"] == "buy"
    assert (trade["price"], trade["qty"], trade["currency"]) == (500, 4, "USD")
    assert (trade["buy_paddle"], trade["sell_paddle"]) == (m.paddles["Acme"],
                                                          m.paddles["Seller"])
    fills = {f["paddle"]: f for f in of_type(buy["events"], "OrderFilled")}
    assert fills[m.paddles["Acme"]]["role"] == "taker" and fills[m.paddles["Acme"]]["leaves"] == 0
    assert fills[m.paddles["Seller"]]["role"] == "maker"
    assert fills[m.paddles["Seller"]]["leaves"] == 6
    assert not of_type(buy["events"], "TradeRecorded")   # operators only
    for event in buy["events"]:
        assert event["to"] == [] or "b1" in event["to"], event

    # the operator's connection gets b1's events as a Notice (TradeRecorded included)
    deadline = time.monotonic() + TIMEOUT
    while not any(n["seq"] == buy["seq"] for n in op.notices) and time.monotonic() < deadline:
        msg = op.recv(0.1)
        if msg is not None and msg["type"] == "Notice":
            op.notices.append(msg)
    notice = next(n for n in op.notices if n["seq"] == buy["seq"])
    recorded = one(notice["events"], "TradeRecorded")
    assert (recorded["buyer"], recorded["seller"]) == (m.parties["Acme"], m.parties["Seller"])
    assert not [e for e in notice["events"] if e["to"] == []]   # public events: feed only

    # a business reject: over the credit limit (10 * 200,000 > 1,000,000)
    rule_breaker = order(m, "Acme", 2, "buy", 10, 200_000)
    reject_id = next(b1.ids)
    rejected = b1.request(rule_breaker, client_id=reject_id)
    assert rejected["type"] == "Result" and rejected["accepted"] is False
    assert rejected["code"] == "over_credit_limit" and rejected["text"]
    assert rejected["seq"] == buy["seq"] + 1             # journaled like any command
    event = one(rejected["events"], "CommandRejected")
    assert event == {"type": "CommandRejected", "to": ["b1"], "ref": rejected["seq"],
                     "code": "over_credit_limit", "text": rejected["text"]}

    # the same client id with the same command: the original Result, resent
    again = b1.request(rule_breaker, client_id=reject_id)
    assert again == {**rejected, "resent": True}
    again = b1.request(buy_cmd, client_id=buy_id)
    assert again == {**buy, "resent": True}

    # the same client id with a different command: duplicate_client_id, nothing done
    dup = b1.request(order(m, "Acme", 3, "buy", 1, 500), client_id=buy_id)
    assert dup["type"] == "SessionRejected" and dup["code"] == "duplicate_client_id"
    assert dup["client_id"] == buy_id and dup["text"]

    # undecodable frames: garbage, and a message of two frames
    b1.sock.send(b"\xc1\xff\x00garbage")
    garbage = b1.recv_answer()
    assert garbage["type"] == "SessionRejected" and garbage["code"] == "undecodable"
    assert garbage["client_id"] == ""
    b1.sock.send_multipart([enc({"type": "Heartbeat"}), enc({"type": "Heartbeat"})])
    assert b1.recv_answer()["code"] == "undecodable"
    b1.send({"type": "NoSuchMessage"})
    invalid = b1.recv_answer()
    assert invalid["type"] == "SessionRejected" and invalid["code"] == "invalid_message"

    # the session is still up, and nothing was done by the resends and refusals
    cancel = b1.ok({"type": "CancelOrder", "session": m.session, "instrument": m.instrument,
                    "paddle": m.paddles["Seller"], "order": 1})
    assert cancel["seq"] == rejected["seq"] + 1
    cancelled = one(cancel["events"], "OrderCancelled")
    assert (cancelled["qty"], cancelled["reason"]) == (6, "requested")

    # Recap on a new connection: b1's private events of the journal, as Notices
    other = Raw(data_dir, "b1", "broker", ctx)
    other.logon(notices=False)
    other.send({"type": "Recap", "from_seq": 1, "limit": 1000})
    recapped: dict[int, list[dict[str, Any]]] = {}
    for _ in range(50):
        msg = other.recv(TIMEOUT)
        assert msg is not None
        if msg["type"] == "Notice":
            recapped[msg["seq"]] = msg["events"]
        elif msg["type"] == "RecapDone":
            if not msg["more"]:
                break
            other.send({"type": "Recap", "from_seq": msg["through"] + 1})
    expected = dict(m.b1_events)
    for result in (sell, buy, rejected, cancel):
        expected[result["seq"]] = [e for e in result["events"] if "b1" in e["to"]]
    assert recapped == expected
    other.close()
    b1.close()


def test_heartbeats_keep_the_session_and_silence_ends_it(exchange, ctx):
    data_dir, _server = exchange
    b1 = Raw(data_dir, "b1", "broker", ctx)
    assert b1.logon(heartbeat_ms=200)["heartbeat_ms"] == 200

    # the client heartbeats for well over three intervals: the session stays up,
    # and the server heartbeats too (it has nothing else to send)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        b1.send({"type": "Heartbeat"})
        msg = b1.recv(0.1)
        if msg is not None:
            assert msg == {"type": "Heartbeat"}, msg
            b1.heartbeats += 1
    assert b1.heartbeats >= 3
    assert b1.request({"type": "RegisterParty", "name": "Alive"})["accepted"] is True

    # the client goes silent: after three intervals the server ends the session
    deadline = time.monotonic() + 2.0
    ended = None
    while ended is None and time.monotonic() < deadline:
        msg = b1.recv(deadline - time.monotonic())
        if msg is not None and msg["type"] != "Heartbeat":
            ended = msg
    assert ended == {"type": "LoggedOut", "reason": "heartbeat timeout"}
    late = b1.request({"type": "RegisterParty", "name": "Late"})
    assert late["type"] == "SessionRejected" and late["code"] == "not_logged_on"
    b1.close()


def test_feed_snapshot_replay_and_late_joiner(opened, ctx):
    data_dir, op, m = opened
    early = subscriber(data_dir, ctx)
    # "FeedHeartbeat: seq, the last Market message sent"
    assert wait_feed_live(early)["seq"] == m.instrument_seq

    b1 = Raw(data_dir, "b1", "broker", ctx)
    b1.logon()
    sell = b1.ok(order(m, "Seller", 1, "sell", 10, 500))
    buy = b1.ok(order(m, "Acme", 1, "buy", 4, 500))
    seen = market_messages(early, buy["seq"])
    assert [msg["seq"] for msg in seen] == [sell["seq"], buy["seq"]]
    assert seen[0]["prev"] == m.instrument_seq and seen[1]["prev"] == sell["seq"]
    for msg in seen:
        assert isinstance(msg["ts"], int) and msg["ts"] > 0
        for event in msg["events"]:
            assert event["to"] == [] and not IDENTITY_FIELDS & set(event), event
    # the public events of a command, in order, are its Result's public events
    assert seen[1]["events"] == [e for e in buy["events"] if e["to"] == []]
    trade = one(seen[1]["events"], "TradeExecuted")
    assert (trade["buy_paddle"], trade["sell_paddle"], trade["qty"], trade["price"]) == (
        m.paddles["Acme"], m.paddles["Seller"], 4, 500)

    data = Raw(data_dir, "viewer", "data", ctx)
    # a replay of everything equals what the feed sent
    everything = replay(data, 1)
    assert [msg["seq"] for msg in everything] == [1, m.instrument_seq, sell["seq"], buy["seq"]]
    assert everything[-2:] == seen
    assert everything[0]["prev"] == 0
    # a bounded range, one message per answer
    data.send({"type": "ReplayRequest", "from_seq": 1, "to_seq": m.instrument_seq, "limit": 1})
    part = data.recv_answer()
    assert part["type"] == "Replay" and part["messages"] == everything[:1]
    assert part["more"] is True and 1 <= part["through"] < m.instrument_seq
    # values out of range
    data.send({"type": "ReplayRequest", "from_seq": 0})
    assert data.recv_answer()["code"] == "bad_request"

    snap_a = snapshot(data, m.session, m.instrument)
    assert snap_a["seq"] == buy["seq"]
    assert fold(snap_a["events"]) == fold([e for msg in everything for e in msg["events"]])
    assert one(snap_a["events"], "QuoteChanged")["ask_qty"] == 6
    whole = snapshot(data)
    assert whole["seq"] == buy["seq"] and fold(whole["events"]) == fold(snap_a["events"])

    # a late joiner: subscribe, then snapshot, drop feed messages at or below it
    late = subscriber(data_dir, ctx)
    assert wait_feed_live(late)["seq"] == buy["seq"]
    bid = b1.ok(order(m, "Acme", 2, "buy", 2, 400))
    snap_b = snapshot(data, m.session, m.instrument)
    assert snap_b["seq"] == bid["seq"]
    take = b1.ok(order(m, "Acme", 3, "buy", 1, 500))
    got = market_messages(late, take["seq"])
    assert [msg["seq"] for msg in got] == [bid["seq"], take["seq"]]

    full = fold([e for msg in replay(data, 1) for e in msg["events"]])
    state, covered = fold(snap_b["events"]), snap_b["seq"]
    for msg in got:
        if msg["seq"] <= covered:
            continue                           # already in the snapshot
        assert msg["prev"] <= covered          # no gap
        state, covered = fold(msg["events"], state), msg["seq"]
    assert state == full and covered == take["seq"]
    assert one(got[-1]["events"], "TradeExecuted")["trade"] == 2

    # a lost message: the gap shows in prev, a replay of the range fills it
    state, covered = fold(snap_a["events"]), snap_a["seq"]
    lost, arriving = got
    assert arriving["prev"] > covered
    filler = replay(data, covered + 1, arriving["prev"])
    assert filler == [lost]
    for msg in filler + [arriving]:
        state, covered = fold(msg["events"], state), msg["seq"]
    assert state == full

    # idle: the feed's heartbeat names the last Market message
    end = time.monotonic() + TIMEOUT
    while (msg := feed_recv(late, end - time.monotonic())) is not None:
        if msg["type"] == "FeedHeartbeat":
            assert msg["seq"] == take["seq"]
            break
    else:
        raise AssertionError("no FeedHeartbeat when idle")

    for sock in (early, late):
        sock.close(0)
    data.close()
    b1.close()
