"""Confidentiality rules checked from real clients over real sockets: what a
competing broker and a market-data viewer receive (results, notices, the
feed, snapshots, replays) never holds another broker's sealed bid or proxy
maximum, a secret reserve, or any identity; a broker acts only for its own
paddles."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import msgspec
import zmq

from exchange.commands import (AddDocument, AppointLiquidityProvider, CancelOrder, CreateLot,
                               DrawPanel, LotTerms, MassCancel, OpenDocument, PlaceBid,
                               PlaceOrder, PublishPriceRange, RecordValuation, RegisterExpert,
                               RemoveDocument, ReportLiquidity, ScheduleLot, SignNda, VetLot,
                               WithdrawBid)
from gateway import protocol as p
from gateway.client import Client, Endpoints, FeedClient
from tests.integration.gateway_harness import (PROXY_MAX, SEALED_AMOUNT, SECRET_RESERVE,
                                               Market, build_market, client, gather_notices,
                                               running)

IDENTITY_FIELDS = ("party", "buyer", "seller", "broker")


def ints_in(value: Any) -> Iterable[int]:
    """Every integer anywhere in a decoded message."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from ints_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from ints_in(item)


def strings_in(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings_in(item)


def builtins(message: Any) -> Any:
    return msgspec.to_builtins(message)


def subscribe(endpoints: Endpoints) -> tuple[zmq.Context, zmq.Socket]:
    """A raw SUB socket on the whole feed, given time for the subscription to take."""
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoints.feed)
    time.sleep(0.3)
    return context, sub


def drain(sub: zmq.Socket, seconds: float) -> list[Any]:
    """Every feed message that arrives within ``seconds``, decoded."""
    received = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sub.poll(50, zmq.POLLIN):
            received.append(p.feed_decoder.decode(sub.recv()))
    return received


def test_secrets_and_identities_never_reach_competitors_or_the_feed(tmp_path):
    with running(tmp_path) as _server, client(tmp_path, "op") as op, \
            client(tmp_path, "b1") as b1, client(tmp_path, "b2") as b2:
        endpoints = Endpoints.load(tmp_path)
        context = zmq.Context()
        sub = context.socket(zmq.SUB)
        sub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(endpoints.feed)
        time.sleep(0.3)                            # let the subscription take
        market = build_market(op, b1, b2, sealed_closes_in=4.0)
        acme, borealis = market.paddles["Acme"], market.paddles["Borealis"]

        b2_seen: list[Any] = []                    # everything b2's connection receives
        b2_seen.extend(builtins(n) for n in b2.notices())
        # b1: a proxy maximum on the English lot and a sealed bid
        b1.ok(PlaceBid(serial=market.english, paddle=acme, amount=PROXY_MAX))
        mine = b1.ok(PlaceBid(serial=market.sealed, paddle=acme, amount=SEALED_AMOUNT))
        assert any(getattr(e, "amount", None) == SEALED_AMOUNT for e in mine.events), \
            "the owner sees its own sealed bid"
        # b2 bids against it, probes and tries b1's paddle
        for cmd in (PlaceBid(serial=market.english, paddle=borealis, amount=6_000_000),
                    PlaceBid(serial=market.sealed, paddle=borealis, amount=2_000_000),
                    PlaceBid(serial=market.sealed, paddle=acme, amount=3_000_000),
                    WithdrawBid(serial=market.sealed, paddle=acme),
                    PlaceOrder(session="S1", instrument=market.instrument, paddle=acme,
                               order=1, side="buy", qty=1, price=100),
                    CancelOrder(session="S1", instrument=market.instrument, paddle=acme,
                                order=1),
                    MassCancel(session="S1", broker="b1")):
            result = b2.request(cmd)
            b2_seen.append(builtins(result))
            if getattr(cmd, "paddle", borealis) == acme or isinstance(cmd, MassCancel):
                assert not result.accepted
                assert result.code in ("not_your_paddle", "not_permitted"), result
        # a book order of b1's seller, traded against by b2
        b1.ok(PlaceOrder(session="S1", instrument=market.instrument,
                         paddle=market.paddles["Seller"], order=7, side="sell", qty=5,
                         price=900))
        b2_seen.append(builtins(b2.request(PlaceOrder(
            session="S1", instrument=market.instrument, paddle=borealis, order=8, side="buy",
            qty=2, price=900))))

        # collect the feed until the sealed lot has closed
        feed: list[Any] = []
        closed_at_seq = 0
        deadline = time.monotonic() + 20
        while not closed_at_seq and time.monotonic() < deadline:
            b2.poll(0.01)
            b2_seen.extend(builtins(n) for n in b2.notices())
            if sub.poll(50, zmq.POLLIN):
                msg = p.feed_decoder.decode(sub.recv())
                if isinstance(msg, p.Market):
                    feed.append(msg)
                    if any(type(e).__name__ == "LotClosed" and e.serial == market.sealed
                           for e in msg.events):
                        closed_at_seq = msg.seq
        assert closed_at_seq, "the sealed lot closed"
        b2.poll(0.3)
        b2_seen.extend(builtins(n) for n in b2.notices())

        with FeedClient(tmp_path / "clients" / "viewer.json", endpoints.feed,
                        endpoints.data) as viewer:
            snapshot = builtins(viewer.snapshot(session="S1"))
            replay = [builtins(m) for m in viewer.replay(1)]
        sub.close()
        context.destroy(linger=0)

    before_close = [builtins(m) for m in feed if m.seq < closed_at_seq]
    everything_public = [builtins(m) for m in feed] + [snapshot] + replay
    # before the close: no sealed amount, no proxy maximum, no reserve, anywhere
    for message in before_close + b2_seen:
        numbers = set(ints_in(message))
        assert SEALED_AMOUNT not in numbers, message
        assert PROXY_MAX not in numbers, message
        assert SECRET_RESERVE not in numbers, message
    # ever: no reserve and no proxy maximum in public data; never an identity
    for message in everything_public:
        numbers = set(ints_in(message))
        assert SECRET_RESERVE not in numbers, message
        assert PROXY_MAX not in numbers, message
        words = set(strings_in(message))
        assert not words & {"Acme", "Borealis", "Seller", "b1", "b2", "op"}, message
        assert not words & set(IDENTITY_FIELDS), message
    # every event on the feed is public; b2 received nothing addressed to others only
    assert all(not e.to for m in feed for e in m.events)
    for message in b2_seen:
        for event in message.get("events", []):
            assert not event["to"] or "b2" in event["to"], event
    # the sealed bids are revealed at the close, publicly, by paddle
    reveal = [e for m in feed if m.seq >= closed_at_seq for e in m.events
              if type(e).__name__ == "SealedBidsRevealed"]
    assert reveal and {b.paddle for b in reveal[0].bids} == {acme, borealis}


LOCATION = "vdr://secret-store/imaging/claims-chart.pdf"


@contextmanager
def watched_market(tmp_path) -> Iterator[tuple[Client, Client, Client, Market, zmq.Socket]]:
    """Run a server with `build_market`'s market; yield the operator's and
    both brokers' clients (their notices so far read), the market and a feed
    subscriber."""
    with running(tmp_path), client(tmp_path, "op") as op, \
            client(tmp_path, "b1") as b1, client(tmp_path, "b2") as b2:
        context, sub = subscribe(Endpoints.load(tmp_path))
        try:
            market = build_market(op, b1, b2)
            b1.notices()
            b2.notices()
            yield op, b1, b2, market, sub
        finally:
            sub.close()
            context.destroy(linger=0)


def public_record(tmp_path, feed: list[Any]) -> list[Any]:
    """Return ``feed`` and what a viewer gets from the snapshot of S1 and a replay
    from the start, as builtins."""
    endpoints = Endpoints.load(tmp_path)
    with FeedClient(tmp_path / "clients" / "viewer.json", endpoints.feed,
                    endpoints.data) as viewer:
        return feed + [builtins(viewer.snapshot(session="S1"))] + \
            [builtins(m) for m in viewer.replay(1)]


def test_a_data_rooms_locations_and_readers_reach_only_whom_they_should(tmp_path):
    with watched_market(tmp_path) as (op, b1, b2, market, sub):
        borealis = market.parties["Borealis"]
        # b1 is the seller's broker: it indexes a document of the English lot
        b1.ok(AddDocument(serial=market.english, name="claims-chart.pdf", digest="ab" * 32,
                          size=52_000, location=LOCATION))
        refused = b2.request(OpenDocument(serial=market.english, party=borealis,
                                          name="claims-chart.pdf"))
        assert (refused.accepted, refused.code) == (False, "nda_required")
        assert LOCATION not in str(builtins(refused))
        b2.ok(SignNda(serial=market.english, party=borealis, nda="NDA-2026"))
        released = b2.ok(OpenDocument(serial=market.english, party=borealis,
                                      name="claims-chart.pdf"))
        assert [e.location for e in released.events] == [LOCATION]
        # b2 may not read for b1's client, nor manage b1's seller's room
        for cmd in (SignNda(serial=market.english, party=market.parties["Acme"], nda="N"),
                    RemoveDocument(serial=market.english, name="claims-chart.pdf")):
            assert b2.request(cmd).code in ("not_your_party", "not_permitted")
        # the seller's broker learns counts, never who
        seller_side = gather_notices(b1, lambda events: any(
            type(e).__name__ == "DataRoomInterest" and e.opened for e in events))
        interest = [e for e in seller_side if type(e).__name__ == "DataRoomInterest"]
        assert (interest[-1].ndas, interest[-1].readers, interest[-1].opened) == (1, 1, 1)
        assert not [e for e in seller_side
                    if type(e).__name__ in ("NdaSigned", "DocumentReleased")]
        assert borealis not in set(ints_in([builtins(e) for e in seller_side]))
        feed = [builtins(m) for m in drain(sub, 2)]
        public = public_record(tmp_path, feed)
    added = [e for m in feed for e in m.get("events", []) if e["type"] == "DocumentAdded"]
    assert [(e["name"], e["digest"]) for e in added] == [("claims-chart.pdf", "ab" * 32)]
    for message in public:
        words = set(strings_in(message))
        assert LOCATION not in words and "NDA-2026" not in words, message
        assert not {"NdaSigned", "DocumentReleased", "DataRoomInterest"} & words, message


def test_a_pricing_panel_never_names_its_experts_outside_the_operators(tmp_path):
    with watched_market(tmp_path) as (op, b1, b2, market, sub):
        experts = [op.ok(RegisterExpert(name=f"Dr. Hidden {i}")).seq for i in range(4)]
        now = time.time_ns()
        op.ok(CreateLot(serial="VAL-1", session="S1", seller=market.parties["Seller"],
                        terms=LotTerms(title="Valued first", starting_bid=1_000_000,
                                       opens_at=now + 3600 * 10**9,
                                       closes_at=now + 7200 * 10**9)))
        panel = op.ok(DrawPanel(serial="VAL-1", size=3)).events[0].experts
        assert set(panel) <= set(experts)
        for expert in panel:
            op.ok(RecordValuation(serial="VAL-1", expert=expert, low=2_000_000,
                                  high=4_000_000))
        told = op.ok(PublishPriceRange(serial="VAL-1")).events[0]
        assert told.to == ("b1", "@operators")          # the seller's broker, first
        op.ok(VetLot(serial="VAL-1", score=70, approved=True))
        op.ok(ScheduleLot(serial="VAL-1"))
        assert b2.request(DrawPanel(serial="VAL-1", size=1)).code == "not_permitted"
        seller_side = gather_notices(b1, lambda events: len(
            [e for e in events if type(e).__name__ == "PriceRangePublished"]) >= 1)
        feed = drain(sub, 1.5)
        others = b2.notices()
    public = [e for m in feed if isinstance(m, p.Market) for e in m.events]
    ranges = [e for e in public if type(e).__name__ == "PriceRangePublished"]
    assert [(e.low, e.high, e.valuations, e.panel) for e in ranges] == \
        [(2_000_000, 4_000_000, 3, 3)]
    for message in [builtins(e) for e in public + seller_side] + [builtins(n) for n in others]:
        words = set(strings_in(message))
        assert not any("Hidden" in w for w in words), message
        assert not {"PanelDrawn", "ValuationRecorded", "ExpertRegistered"} & words, message


def test_a_liquidity_provider_is_known_only_to_its_broker_and_the_operators(tmp_path):
    with watched_market(tmp_path) as (op, b1, b2, market, sub):
        book = {"session": "S1", "instrument": market.instrument}
        provider = market.paddles["Seller"]
        b1.ok(PlaceOrder(**book, paddle=provider, order=1, side="sell", qty=10, price=1_010))
        b1.ok(PlaceOrder(**book, paddle=provider, order=2, side="buy", qty=10, price=1_000))
        appoint = AppointLiquidityProvider(**book, paddle=provider, max_spread=10, min_qty=10,
                                           presence_bp=9_000)
        assert b2.request(appoint).code == "not_permitted"
        assert b1.request(appoint).code == "not_permitted"
        told = op.ok(appoint).events
        assert [type(e).__name__ for e in told] == ["LiquidityProviderAppointed"]
        assert told[0].to == ("b1", "@operators")
        b2.ok(PlaceOrder(**book, paddle=market.paddles["Borealis"], order=1, side="buy", qty=4,
                         price=1_010))                  # takes part of the provider's ask
        reports = op.ok(ReportLiquidity(**book)).events
        assert [(r.paddle, r.quoting_ns <= r.trading_ns, r.final) for r in reports] == [
            (provider, True, False)]
        seller_side = gather_notices(b1, lambda events: any(
            type(e).__name__ == "LiquidityReport" for e in events))
        assert {"LiquidityProviderAppointed", "LiquidityReport"} <= {
            type(e).__name__ for e in seller_side}
        feed = [builtins(m) for m in drain(sub, 1.5)]
        others = [builtins(n) for n in b2.notices()]
        public = public_record(tmp_path, feed)
    assert any("TradeExecuted" in set(strings_in(m)) for m in feed)     # the feed did flow
    for message in public + others:
        words = set(strings_in(message))
        assert not {"LiquidityProviderAppointed", "LiquidityReport"} & words, message
