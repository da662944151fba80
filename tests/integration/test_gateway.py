"""The gateway end to end over 127.0.0.1 with CURVE and ZAP: logon, requests
and results, business and session rejects, notices, idempotency, heartbeats,
cancel-on-disconnect, the feed with snapshot and gap recovery, the asyncio
client."""

from __future__ import annotations

import asyncio
import time

import pytest
import zmq

from exchange.commands import (CancelOrder, CreateSession, HaltTrading, MassCancel, PlaceBid,
                               PlaceOrder, RegisterParty, ResumeTrading, ReviewCredit,
                               SetOrderLimit)
from gateway import protocol as p
from gateway.board import Board
from gateway.client import (AsyncClient, Client, ClientError, Endpoints, FeedClient,
                            SessionRejectedError)
from gateway.keys import ClientKey, KeyStore
from tests.integration.gateway_harness import (build_market, client, gather_notices,
                                               logged_on_dealer, raw_dealer, recv_message,
                                               recv_until, running, wait_for)


def test_logon_binds_the_connection_to_the_key_user(exchange):
    data, _ = exchange
    with client(data, "b1") as b1:
        assert b1.session.logged_on.user == "b1"
        assert b1.session.logged_on.role == "broker"
        result = b1.ok(RegisterParty(name="Acme Research"))
        assert result.events[0].broker == "b1"          # from the connection
        # a body that names another broker does not make the sender that broker
        refused = b1.request(RegisterParty(name="Mallory", broker="b2"))
        assert not refused.accepted and refused.code == "not_permitted"


def test_request_before_logon_is_refused(exchange):
    data, _ = exchange
    context = zmq.Context()
    try:
        sock = raw_dealer(data, "b1", "broker", context)
        sock.send(p.encode(p.Request(client_id="x-1", cmd=RegisterParty(name="A"))))
        reply = recv_message(sock)
        assert isinstance(reply, p.SessionRejected)
        assert reply.code == "not_logged_on" and reply.client_id == "x-1"
        sock.close()
    finally:
        context.destroy(linger=0)


def test_operator_commands_are_refused_for_broker_keys(exchange):
    data, _ = exchange
    with client(data, "b1") as b1:
        result = b1.request(CreateSession(session="S9", name="not mine"))
        assert not result.accepted and result.code == "not_permitted"
        assert "operator" in result.text
    # and a broker key cannot even connect to the operator socket
    key = ClientKey.load(data / "clients" / "b1.json")
    endpoints = Endpoints.load(data)
    intruder = Client(key, endpoints.operator, timeout=1.0)
    with pytest.raises(ClientError):
        intruder.connect()
    intruder.close()


def test_the_operator_limits_resting_orders_on_a_live_instrument(exchange):
    """`SetOrderLimit` over the operator socket: refused for a broker, the
    limit reaches brokers as a business reject, and a late subscriber's
    snapshot of the instrument holds its last value only."""
    data, _ = exchange
    with client(data, "op") as op, client(data, "b1") as b1, client(data, "b2") as b2:
        market = build_market(op, b1, b2)
        paddle = market.paddles["Borealis"]

        def order(oid: int) -> p.Result:
            return b2.request(PlaceOrder(session="S1", instrument=market.instrument,
                                         paddle=paddle, order=oid, side="buy", qty=1,
                                         price=100 + oid))
        assert order(1).accepted and order(2).accepted
        refused = b2.request(SetOrderLimit(session="S1", instrument=market.instrument,
                                           max_orders=1))
        assert not refused.accepted and refused.code == "not_permitted"
        op.ok(SetOrderLimit(session="S1", instrument=market.instrument, max_orders=5))
        op.ok(SetOrderLimit(session="S1", instrument=market.instrument, max_orders=2))
        third = order(3)
        assert not third.accepted and third.code == "too_many_orders"
        feed = FeedClient.from_data_dir(data, "viewer")
        try:
            asked = time.time_ns()
            snap = feed.start(session="S1", key=market.instrument)
            limits = [e for e in snap.events if type(e).__name__ == "OrderLimitSet"]
            assert [e.max_orders for e in limits] == [2]
            assert asked <= snap.ts <= time.time_ns()       # a live feed's time: the server's
        finally:
            feed.close()
        b2.ok(MassCancel(session="S1"))
        assert order(4).accepted


def test_the_operator_halts_and_resumes_a_book(exchange):
    """`HaltTrading` over real sockets: refused for a broker; while halted a
    broker's order is refused with the reason and a cancel goes through; the
    feed and a late subscriber's snapshot say halted; the resume reopens."""
    data, _ = exchange
    with client(data, "op") as op, client(data, "b1") as b1, client(data, "b2") as b2:
        market = build_market(op, b1, b2)
        paddle, book = market.paddles["Borealis"], market.instrument

        def order(oid: int) -> p.Result:
            return b2.request(PlaceOrder(session="S1", instrument=book, paddle=paddle,
                                         order=oid, side="buy", qty=1, price=100))
        assert order(1).accepted
        refused = b2.request(HaltTrading(session="S1", instrument=book, reason="mine"))
        assert not refused.accepted and refused.code == "not_permitted"
        feed = FeedClient.from_data_dir(data, "viewer")
        try:
            feed.start(session="S1")
            op.ok(HaltTrading(session="S1", instrument=book, reason="reexamination ordered"))
            refused = order(2)
            assert not refused.accepted and refused.code == "instrument_halted"
            assert "reexamination ordered" in refused.text
            assert b2.request(CancelOrder(session="S1", instrument=book, paddle=paddle,
                                          order=1)).accepted
            seen = [e for m in feed.updates(timeout=1.0) for e in m.events]
            halted = [e for e in seen if type(e).__name__ == "TradingHalted"]
            assert [e.reason for e in halted] == ["reexamination ordered"]
            assert ["halted"] == [e.phase for e in seen if type(e).__name__ == "PhaseChanged"]
        finally:
            feed.close()
        late = FeedClient.from_data_dir(data, "viewer")
        try:
            snap = late.start(session="S1", key=book)
            board = Board(session="S1")
            board.apply(snap.events, snap.seq)
            assert board.books[book].phase == "halted"
        finally:
            late.close()
        op.ok(ResumeTrading(session="S1", instrument=book))
        assert order(3).accepted


def test_a_broker_asks_for_its_status_and_sees_only_its_own(exchange):
    """`StatusRequest` over real sockets: a broker's resting orders, units and
    credit, nobody else's; an operator names the broker."""
    data, _ = exchange
    with client(data, "op") as op, client(data, "b1") as b1, client(data, "b2") as b2:
        market = build_market(op, b1, b2)
        book = market.instrument
        borealis, seller = market.paddles["Borealis"], market.paddles["Seller"]
        b2.ok(PlaceOrder(session="S1", instrument=book, paddle=borealis, order=7, side="buy",
                         qty=3, price=90, tif="gtd", expires=time.time_ns() + 3600 * 10**9))
        b1.ok(PlaceOrder(session="S1", instrument=book, paddle=seller, order=1, side="sell",
                         qty=500, price=120, post_only=True))
        b1.ok(PlaceBid(serial=market.english, paddle=market.paddles["Acme"], amount=3_000_000))
        mine = b2.status()
        assert mine.broker == "b2" and mine.seq >= 1
        assert [(o.instrument, o.paddle, o.order, o.side, o.price, o.qty, o.tif, o.post_only)
                for o in mine.orders] == [(book, borealis, 7, "buy", 90, 3, "gtd", False)]
        assert mine.holdings == []
        assert [(c.session, c.paddle, c.exposure) for c in mine.credit] == [("S1", borealis, 270)]
        b2.ok(PlaceBid(serial=market.sealed, paddle=borealis, amount=1_500_000))
        placed = b2.ok(PlaceBid(serial=market.english, paddle=borealis, amount=7_000_000))
        standing = next(e.price for e in placed.events if type(e).__name__ == "BidAccepted")
        bids = b2.status().bids                 # its own amounts, sealed too; no ranking
        assert [(b.serial, b.amount, b.leading, b.price) for b in bids] == [
            (market.english, 7_000_000, True, standing), (market.sealed, 1_500_000, False, 0)]
        theirs = b1.status(session="S1")
        assert [(b.serial, b.paddle, b.amount, b.leading) for b in theirs.bids] == [
            (market.english, market.paddles["Acme"], 3_000_000, False)]
        assert [(o.paddle, o.order, o.tif, o.post_only) for o in theirs.orders] == \
            [(seller, 1, "gtc", True)]
        assert [(h.paddle, h.units, h.offered) for h in theirs.holdings] == \
            [(seller, 1_000_000, 500)]
        assert {c.paddle: c.exposure for c in theirs.credit}[market.paddles["Acme"]] == 0
        assert {c.paddle: c.exposure for c in b2.status().credit}[borealis] > 270  # leads
        seen_by_op, own = op.status(broker="b2"), b2.status()
        assert (seen_by_op.orders, seen_by_op.bids, seen_by_op.credit) == \
            (own.orders, own.bids, own.credit)
        op.timeout = 0.0                        # a call that gives up before its answer ...
        with pytest.raises(ClientError):
            op.status(broker="b1")
        op.timeout = 10.0
        late = op.status(broker="b2")           # ... does not answer the next one
        assert late.broker == "b2" and late.orders == mine.orders
        b2.timeout = 0.0                        # nor does a refusal arriving late
        with pytest.raises(ClientError):
            b2.status(broker="b1")
        b2.timeout = 10.0
        assert b2.status().broker == "b2"
        assert b2.status(session="S9").orders == []
        with pytest.raises(SessionRejectedError) as refused:
            b2.status(broker="b1")
        assert refused.value.code == "not_permitted"
        with pytest.raises(SessionRejectedError) as refused:
            op.status()
        assert refused.value.code == "bad_request"


def test_a_status_over_a_deep_book_counts_against_the_brokers_throttle(tmp_path):
    with running(tmp_path, max_requests_per_second=30) as _:
        with client(tmp_path, "op") as op, client(tmp_path, "b1") as b1, \
                client(tmp_path, "b2") as b2:
            market = build_market(op, b1, b2)
            for oid in range(250):                  # the operator's orders: not throttled
                op.ok(PlaceOrder(session="S1", instrument=market.instrument,
                                 paddle=market.paddles["Borealis"], order=oid, side="buy",
                                 qty=1, price=100))
            time.sleep(1.1)                         # the brokers' setup requests forgotten
            assert len(b2.status().orders) == 250   # 1 + 250 / 10 = 26 requests of 30
            with pytest.raises(SessionRejectedError) as refused:
                b2.status()
            assert refused.value.code == "throttled"
            assert len(op.status(broker="b2").orders) == 250   # operators are not


def test_a_throttled_status_tells_no_count_of_what_others_hold(tmp_path):
    """The refusal of a status over the throttle reads the same whatever
    other brokers hold: a count in it would tell b2 when another's client
    signs an NDA or submits a draft lot (+1). The charge follows b2's own
    part of the walk (its paddles and orders), so how often b2 may ask tells
    it nothing of b1's orders either."""
    texts = []
    with running(tmp_path, max_requests_per_second=30) as _:
        with client(tmp_path, "op") as op, client(tmp_path, "b1") as b1, \
                client(tmp_path, "b2") as b2:
            market = build_market(op, b1, b2)
            for orders in (250, 10):
                for oid in range(orders):           # more of b1's orders each time
                    op.ok(PlaceOrder(session="S1", instrument=market.instrument,
                                     paddle=market.paddles["Acme"], order=len(texts) * 1000 + oid,
                                     side="buy", qty=1, price=100))
                time.sleep(1.1)
                with pytest.raises(SessionRejectedError) as refused:
                    for _ in range(31):
                        b2.status()
                assert refused.value.code == "throttled"
                texts.append(refused.value.text)
    assert texts == [("a status counts as 1 request and 1 more for each 10 paddles, lots, "
                      "books and orders it looks through, more than the broker may send "
                      "now: ask again later")] * 2


def test_keys_outside_their_socket_or_unknown_are_refused(exchange, tmp_path_factory):
    data, _ = exchange
    endpoints = Endpoints.load(data)
    viewer = ClientKey.load(data / "clients" / "viewer.json")
    # a viewer has no order socket at all: it may only read market data
    with pytest.raises(ClientError):
        Client(viewer, endpoints.broker)
    operator = ClientKey.load(data / "clients" / "op.json")
    wrong = Client(operator, endpoints.broker, timeout=1.0)
    with pytest.raises(ClientError):
        wrong.connect()
    wrong.close()
    # a key pair the server never issued: refused on every socket
    stranger_dir = tmp_path_factory.mktemp("stranger")
    store = KeyStore(stranger_dir)
    store.create_server_keys()
    path = store.add_user("b1", "broker")
    stranger = ClientKey.load(path)
    stranger.server_public_key = operator.server_public_key
    unknown = Client(stranger, endpoints.broker, timeout=1.0)
    with pytest.raises(ClientError):
        unknown.connect()
    unknown.close()
    with FeedClient(stranger, endpoints.feed, endpoints.data, timeout=1.0) as feed:
        with pytest.raises(ClientError):
            feed.snapshot()


def test_business_reject_carries_the_engine_reason(exchange):
    data, _ = exchange
    with client(data, "op") as op:
        result = op.request(ReviewCredit(party=424242, approved=True, credit_limit=1,
                                         agreement_version="v1"))
        assert not result.accepted
        assert result.code == "unknown_party"
        assert result.text == "no party 424242"
        assert [type(e).__name__ for e in result.events] == ["CommandRejected"]


def test_resend_returns_the_original_result_and_reuse_is_a_duplicate(exchange):
    data, _ = exchange
    with client(data, "b1") as b1, client(data, "b2") as b2:
        first = b1.ok(RegisterParty(name="Acme Research"), client_id="order-7")
        again = b1.request(RegisterParty(name="Acme Research"), client_id="order-7")
        assert again.resent and again.seq == first.seq and again.events == first.events
        with pytest.raises(SessionRejectedError) as refused:
            b1.request(RegisterParty(name="Something else"), client_id="order-7")
        assert refused.value.code == "duplicate_client_id"
        # the same id from another user is that user's own
        other = b2.ok(RegisterParty(name="Borealis"), client_id="order-7")
        assert other.seq != first.seq and not other.resent
        # a rejected command keeps its id too: resent, it is not run again
        bad = b1.request(ReviewCredit(party=first.seq, approved=True), client_id="order-8")
        assert not bad.accepted
        bad_again = b1.request(ReviewCredit(party=first.seq, approved=True),
                               client_id="order-8")
        assert bad_again.resent and bad_again.seq == bad.seq and bad_again.code == bad.code


@pytest.mark.parametrize("cid", ["", "x" * 65, "has space", "caf\u00e9", "tab\there"])
def test_bad_client_ids_are_refused(exchange, cid):
    data, _ = exchange
    context = zmq.Context()
    try:
        sock = logged_on_dealer(data, "b1", context)
        sock.send(p.encode(p.Request(client_id=cid, cmd=RegisterParty(name="A"))))
        reply = recv_until(sock, p.SessionRejected)
        assert reply is not None and reply.code == "bad_client_id"
        sock.close()
    finally:
        context.destroy(linger=0)


def test_private_events_reach_their_owner_and_operators_only(exchange):
    data, _ = exchange
    with client(data, "op") as op, client(data, "b1") as b1, client(data, "b2") as b2, \
            client(data, "b1") as b1_second:
        market = build_market(op, b1, b2)
        for c in (op, b1, b2, b1_second):
            c.notices()
        b1.ok(PlaceBid(serial=market.english, paddle=market.paddles["Acme"],
                       amount=6_000_000))
        b2.ok(PlaceBid(serial=market.english, paddle=market.paddles["Borealis"],
                       amount=9_000_000))
        # b1 hears, privately, that its client's credit hold was released (outbid)
        acme = market.parties["Acme"]
        b1_events = gather_notices(b1, lambda evs: any(
            type(e).__name__ == "CreditChanged" and e.party == acme for e in evs))
        assert any(type(e).__name__ == "CreditChanged" and e.party == acme
                   and e.exposure == 0 for e in b1_events)
        assert all("b1" in e.to for e in b1_events)
        # b1's second connection hears what b1's first connection caused
        second = gather_notices(b1_second, lambda evs: any(
            type(e).__name__ == "BidConfirmed" and e.leading for e in evs))
        assert any(type(e).__name__ == "BidConfirmed" and e.leading for e in second)
        assert all("b1" in e.to for e in second)
        # b2 never hears anything not addressed to b2
        b2_events = gather_notices(b2, lambda evs: False, timeout=0.5)
        assert all("b2" in e.to for e in b2_events)
        # operators hear every private event
        op_events = gather_notices(op, lambda evs: sum(
            type(e).__name__ == "BidConfirmed" for e in evs) >= 3)
        assert {e.paddle for e in op_events if type(e).__name__ == "BidConfirmed"} == \
            {market.paddles["Acme"], market.paddles["Borealis"]}


def test_session_heartbeats_and_expiry(exchange):
    data, _ = exchange
    context = zmq.Context()
    try:
        sock = raw_dealer(data, "b1", "broker", context)
        sock.send(p.encode(p.Logon(heartbeat_ms=100)))
        assert isinstance(recv_message(sock), p.LogonAccepted)
        # silent client: the server heartbeats, then ends the session after 3 intervals
        assert recv_until(sock, p.Heartbeat, timeout=5) is not None
        ended = recv_until(sock, p.LoggedOut, timeout=5)
        assert ended is not None and ended.reason == "heartbeat timeout"
        sock.send(p.encode(p.Request(client_id="late-1", cmd=RegisterParty(name="A"))))
        reply = recv_until(sock, p.SessionRejected, timeout=5)
        assert reply is not None and reply.code == "not_logged_on"
        # a heartbeat interval out of range is refused
        sock.send(p.encode(p.Logon(heartbeat_ms=5)))
        reply = recv_until(sock, p.SessionRejected, timeout=5)
        assert reply is not None and reply.code == "bad_heartbeat"
        sock.close()
    finally:
        context.destroy(linger=0)


def test_logout_ends_the_session(exchange):
    data, _ = exchange
    with client(data, "b1") as b1:
        b1._send(p.encode(p.Logout()))
        wait_for(lambda: b1.poll(0.05) or b1.session.logged_out is not None, timeout=5)
        assert b1.session.logged_out == "logout"


def test_cancel_on_disconnect_cancels_book_orders_not_auction_bids(exchange):
    data, _ = exchange
    with client(data, "op") as op, client(data, "b1") as b1, client(data, "b2") as b2:
        market = build_market(op, b1, b2)
        b2_cod = client(data, "b2", cancel_on_disconnect=True, heartbeat_ms=100)
        assert b2_cod.session.logged_on.cancel_on_disconnect
        b2_cod.ok(PlaceOrder(session="S1", instrument=market.instrument,
                             paddle=market.paddles["Borealis"], order=1, side="buy", qty=5,
                             price=700))
        b2_cod.ok(PlaceBid(serial=market.english, paddle=market.paddles["Borealis"],
                           amount=9_000_000))
        op.notices()
        b2_cod.drop()                       # vanish without a Logout
        b2_cod.close()

        cancelled: list = []
        wait_for(lambda: cancelled.extend(
            e for n in op.notices() for e in n.events
            if type(e).__name__ == "OrderCancelled") or cancelled, timeout=10)
        assert [(e.paddle, e.order, e.reason) for e in cancelled] == \
            [(market.paddles["Borealis"], 1, "mass_cancel")]
        # the auction bid still stands: b2's proxy still beats a lower bid of b1
        lower = b1.ok(PlaceBid(serial=market.english, paddle=market.paddles["Acme"],
                               amount=6_000_000))
        standing = [e for e in lower.events if type(e).__name__ == "BidAccepted"][-1]
        assert standing.leader == market.paddles["Borealis"]
        # b2's other connection (no cancel-on-disconnect) keeps its orders
        b2.ok(PlaceOrder(session="S1", instrument=market.instrument,
                         paddle=market.paddles["Borealis"], order=2, side="buy", qty=5,
                         price=600))
        b2.ok(MassCancel(session="S1"))


def test_a_client_waiting_in_poll_while_notices_stream_in_keeps_its_session(exchange):
    """Notices arriving faster than the heartbeat must not keep a waiting
    client from sending its own heartbeats: the server would end its session
    (and with cancel-on-disconnect, cancel its orders) every three intervals."""
    data, _ = exchange
    with client(data, "b1") as sender:
        listener = client(data, "b1", heartbeat_ms=100, cancel_on_disconnect=True)
        try:
            import threading
            stop = threading.Event()

            def stream() -> None:              # b1's other connection: a notice each 20 ms
                n = 0
                while not stop.is_set():
                    n += 1
                    sender.ok(RegisterParty(name=f"Streamed {n}"))
                    time.sleep(0.02)

            streamer = threading.Thread(target=stream)
            streamer.start()
            try:
                end = time.monotonic() + 1.5
                while time.monotonic() < end:
                    listener.poll(1.0)            # ten heartbeat intervals per call
            finally:
                stop.set()
                streamer.join(timeout=10)
            assert len(listener.session.notices) > 30
            assert listener.session.logons == 1 and listener.session.logged_out is None
        finally:
            listener.close()


def test_an_idle_client_keeps_its_session_and_its_orders(exchange):
    data, server = exchange
    with client(data, "op") as op, client(data, "b1") as b1, client(data, "b2") as b2:
        market = build_market(op, b1, b2)
        kept = client(data, "b1", cancel_on_disconnect=True, heartbeat_ms=100)
        lapsed = client(data, "b2", cancel_on_disconnect=True, heartbeat_ms=100,
                        keepalive=False)
        for n, who, name in ((1, kept, "Acme"), (2, lapsed, "Borealis")):
            who.ok(PlaceOrder(session="S1", instrument=market.instrument,
                              paddle=market.paddles[name], order=n, side="buy", qty=1,
                              price=500 + n))
        op.notices()
        time.sleep(1.0)                     # ten heartbeat intervals without a call
        cancelled: list = []
        wait_for(lambda: cancelled.extend(
            e for n in op.notices() for e in n.events
            if type(e).__name__ == "OrderCancelled") or cancelled, timeout=10)
        assert [e.order for e in cancelled] == [2]    # only the one without a keeper
        assert kept.session.logons == 1 and kept.session.logged_out is None
        assert kept.ok(MassCancel(session="S1")).accepted
        assert kept.session.logons == 1
        kept.close()
        lapsed.close()


def test_feed_snapshot_replay_and_gap_recovery(exchange):
    data, _ = exchange
    with client(data, "op") as op, client(data, "b1") as b1, client(data, "b2") as b2:
        early = FeedClient.from_data_dir(data, "viewer")
        early.start()
        market = build_market(op, b1, b2)
        for amount in (3_000_000, 3_500_000, 4_000_000):
            b1.ok(PlaceBid(serial=market.english, paddle=market.paddles["Acme"],
                           amount=amount))
        # a late subscriber: snapshot, then updates above it
        late = FeedClient.from_data_dir(data, "viewer")
        snap = late.start(session="S1")
        assert snap.seq >= 1
        for order in range(1, 6):
            b2.ok(PlaceOrder(session="S1", instrument=market.instrument,
                             paddle=market.paddles["Borealis"], order=order, side="buy",
                             qty=order, price=400 + order))
        b2.ok(MassCancel(session="S1"))
        last_seq = b2.request(RegisterParty(name="Zed")).seq

        full = list(early.updates(timeout=1.0))
        assert [m.seq for m in full] == sorted({m.seq for m in full})
        assert all(m.prev < m.seq for m in full)
        later = list(late.updates(timeout=1.0))
        assert later and all(m.seq > snap.seq for m in later)
        # the board from the whole feed equals the board from snapshot + updates
        whole = Board(session="S1")
        for m in full:
            whole.apply(m.events, m.seq)
        joined = Board(session="S1")
        joined.apply(snap.events, snap.seq)
        for m in later:
            joined.apply(m.events, m.seq)
        assert whole.lots == joined.lots and whole.books == joined.books
        assert whole.books[market.instrument].bid == 0        # all cancelled

        # replay of any range equals what was published
        replayed = late.replay(1, last_seq)
        assert [m.seq for m in replayed] == [m.seq for m in full]
        assert [m.events for m in replayed] == [m.events for m in full]
        assert late.replay(full[3].seq, full[5].seq) == full[3:6]

        # gap: the subscriber misses messages; the next one's prev reveals it
        gap = FeedClient.from_data_dir(data, "viewer")
        gap.state.covered = full[1].seq
        gap.state.buffer = [full[5], full[6]]          # full[2..4] lost
        recovered = list(gap.updates(timeout=0.2, max_messages=5))
        assert [m.seq for m in recovered] == [m.seq for m in full[2:7]]
        assert gap.gaps_recovered == 1
        # a heartbeat above what we hold is a gap too
        gap.state.buffer = [p.FeedHeartbeat(seq=full[-1].seq, ts=0)]
        tail = list(gap.updates(timeout=0.2, max_messages=len(full) - 7))
        assert [m.seq for m in tail] == [m.seq for m in full[7:]]
        for feed in (early, late, gap):
            feed.close()


def test_feed_heartbeat_when_idle(exchange):
    data, _ = exchange
    endpoints = Endpoints.load(data)
    context = zmq.Context()
    try:
        sub = context.socket(zmq.SUB)
        sub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(endpoints.feed)
        assert sub.poll(5000, zmq.POLLIN)
        msg = p.feed_decoder.decode(sub.recv())
        assert isinstance(msg, p.FeedHeartbeat)
        sub.close()
    finally:
        context.destroy(linger=0)


def test_data_requests_over_the_turn_budget_wait_for_later_turns(exchange, monkeypatch):
    """With a catch-up budget of one unit a turn, each turn answers one data
    request (a replay then holds one message); the rest of a burst waits in
    the socket and is answered whole, in order, in later turns."""
    import gateway.server
    data, _ = exchange
    with client(data, "op") as op:                      # two public entries at least
        op.ok(CreateSession(session="BUDGET1", name="budget"))
        last = op.ok(CreateSession(session="BUDGET2", name="budget")).seq
    monkeypatch.setattr(gateway.server, "CATCH_UP_PER_TURN", 1)
    context = zmq.Context()
    try:
        sock = raw_dealer(data, "viewer", "data", context)
        asked = [p.ReplayRequest(from_seq=1), p.ReplayRequest(from_seq=1), p.SnapshotRequest(),
                 p.ReplayRequest(from_seq=last), p.SnapshotRequest(), p.ReplayRequest(from_seq=1)]
        for request in asked:
            sock.send(p.encode(request))
        answers = []
        for _ in asked:
            assert sock.poll(10000), f"{len(answers)} of {len(asked)} answered"
            answers.append(p.data_reply_decoder.decode(sock.recv()))
        sock.close()
    finally:
        context.destroy(linger=0)
    assert [type(a).__name__ for a in answers] == [type(r).__name__.replace("Request", "")
                                                   for r in asked]
    assert {a.seq for a in answers if isinstance(a, p.Snapshot)} == {last}
    replays = [a for a in answers if isinstance(a, p.Replay)]
    assert [len(a.messages) for a in replays] == [1, 1, 1, 1]       # never an empty answer
    assert replays[2].messages[0].seq == last and not replays[2].more
    assert replays[0].more and replays[0].messages == replays[1].messages == replays[3].messages


def test_snapshot_replay_requests_are_validated(exchange):
    data, _ = exchange
    with FeedClient.from_data_dir(data, "viewer") as feed:
        for bad in (p.ReplayRequest(from_seq=0), p.ReplayRequest(from_seq=5, to_seq=2),
                    p.ReplayRequest(from_seq=1, limit=0)):
            with pytest.raises(SessionRejectedError) as refused:
                feed._ask(bad)
            assert refused.value.code == "bad_request"
        with pytest.raises(SessionRejectedError) as refused:
            feed._ask(p.Logon())
        assert refused.value.code == "invalid_message"


def test_async_client(exchange):
    data, _ = exchange

    async def scenario() -> None:
        b1 = await AsyncClient.from_data_dir(data, "b1")
        op = await AsyncClient.from_data_dir(data, "op")
        try:
            futures = [await b1.send(RegisterParty(name=f"Client {i}")) for i in range(20)]
            results = await asyncio.gather(*futures)
            assert [r.accepted for r in results] == [True] * 20
            assert len({r.seq for r in results}) == 20
            await op.ok(ReviewCredit(party=results[0].seq, approved=True,
                                     credit_limit=10**8, agreement_version="v1"))
            notice = await asyncio.wait_for(b1.notices().__anext__(), 5)
            assert type(notice.events[0]).__name__ == "CreditReviewed"
            again = await b1.request(RegisterParty(name="Client 0"),
                                     client_id=b1.session.ids.prefix + "-1")
            assert again.resent and again.seq == results[0].seq
        finally:
            await b1.close()
            await op.close()

    asyncio.run(scenario())


def test_recap_returns_the_private_events_missed_while_away(exchange):
    data, _ = exchange
    with client(data, "op") as op, client(data, "b1") as b1, client(data, "b2") as b2:
        market = build_market(op, b1, b2)
        b2.ok(PlaceOrder(session="S1", instrument=market.instrument,
                         paddle=market.paddles["Borealis"], order=1, side="buy", qty=5,
                         price=800))
        away_from = b2.request(RegisterParty(name="marker")).seq + 1
        b2.close()                                   # b2 goes away
        sold = b1.ok(PlaceOrder(session="S1", instrument=market.instrument,
                                paddle=market.paddles["Seller"], order=1, side="sell", qty=3,
                                price=800))
    with client(data, "b2") as b2:
        missed = b2.recap(away_from)
        fills = [e for n in missed for e in n.events if type(e).__name__ == "OrderFilled"]
        assert [(n.seq, e.qty, e.leaves) for n in missed for e in n.events
                if type(e).__name__ == "OrderFilled"] == [(sold.seq, 3, 2)]
        assert all("b2" in e.to for n in missed for e in n.events)
        assert fills and not b2.notices()
        everything = b2.recap(1, limit=7)            # several answers of 7 entries each
        assert [n.seq for n in everything] == sorted({n.seq for n in everything})
        assert any(type(e).__name__ == "PaddleIssued" for n in everything for e in n.events)
        with pytest.raises(SessionRejectedError) as refused:
            b2.recap(0)
        assert refused.value.code == "bad_request"


def test_recaps_share_a_budget_per_turn_and_say_more(exchange, monkeypatch):
    """A turn's catch-up budget (here 3 entries from memory) cuts a Recap
    short with `more`; the client asks again and gets every entry once."""
    import gateway.server
    data, _ = exchange
    with client(data, "op") as op, client(data, "b1") as b1, client(data, "b2") as b2:
        build_market(op, b1, b2)
        whole = b2.recap(1)                          # (may repeat live notices)
        last = b2.request(RegisterParty(name="marker")).seq
        monkeypatch.setattr(gateway.server, "CATCH_UP_PER_TURN", 3 * gateway.server.COST_RECENT)
        b2.session.recap_done = None
        b2._send(p.encode(p.Recap(from_seq=1, limit=10000)))
        deadline = time.monotonic() + 5
        while b2.session.recap_done is None and b2._pump(deadline):
            pass
        first = b2.session.recap_done
        assert first is not None and first.more and first.through == 3
        b2.session.notices.clear()
        again = b2.recap(1)                          # many answers of 3 entries
        assert [n.seq for n in again if n.seq < last] == sorted({n.seq for n in whole})



def test_cancel_on_disconnect_journals_only_where_it_has_orders_to_cancel(exchange):
    """A cancel on disconnect sends `MassCancel` only in sessions whose books
    hold orders and where the broker has a paddle: not one entry for every
    session that ever had a book (closed ones: empty entries, more with every
    session the exchange ever ran, each pushing results out of the resend
    memory)."""
    from exchange.commands import CloseSession, CreateInstrument, CreateSession, IssuePaddle
    data, server = exchange
    with client(data, "op") as op, client(data, "b1") as b1, client(data, "b2") as b2:
        market = build_market(op, b1, b2)
        for session in ("S2", "S3"):                  # S2 closed; S3: b1's orders only
            op.ok(CreateSession(session=session, name=session))
            op.ok(CreateInstrument(session=session, instrument=f"U-{session}", kind="units"))
        op.ok(CloseSession(session="S2"))
        paddle = op.ok(IssuePaddle(session="S3", party=market.parties["Acme"])).events[0].paddle
        b1.ok(PlaceOrder(session="S3", instrument="U-S3", paddle=paddle, order=1, side="buy",
                         qty=1, price=100))
        b2_cod = client(data, "b2", cancel_on_disconnect=True, heartbeat_ms=100)
        placed = b2_cod.ok(PlaceOrder(session="S1", instrument=market.instrument,
                                      paddle=market.paddles["Borealis"], order=1, side="buy",
                                      qty=5, price=700))
        b2_cod.drop()
        b2_cod.close()
        assert wait_for(lambda: not server.engine.state.books[market.instrument].book.orders)
        after = b1.ok(RegisterParty(name="After"))
        assert after.seq == placed.seq + 2             # one MassCancel, for S1
        assert len(server.engine.state.books["U-S3"].book.orders) == 1
