"""Shared set-up of the gateway tests: a real server on 127.0.0.1 (free ports,
CURVE and ZAP), in a thread of the test process, on a temporary data
directory; real clients; a market with parties, paddles, lots and a book."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import zmq

from exchange.commands import (CreateInstrument, CreateLot, CreateSession, IssuePaddle,
                               IssueUnits, LotTerms, RegisterParty, ReviewCredit, ScheduleLot,
                               VetLot)
from gateway import protocol as p
from gateway.client import Client, Endpoints
from gateway.config import Config
from gateway.keys import ClientKey, initialise
from gateway.server import Server, serve_in_thread, stop_thread

NS = 10**9
CREDIT = 10**12          # minor units: 10 billion dollars, never the limit in these tests
SEALED_AMOUNT = 1234567  # distinctive amounts that must never leak
SECRET_RESERVE = 7654321
PROXY_MAX = 9876543


def gateway_config(**overrides: Any) -> Config:
    """Every port free, small heartbeats, and what the test overrides."""
    config = Config(broker_port=0, operator_port=0, feed_port=0, data_port=0,
                    heartbeat_ms=200, max_message_bytes=16384)
    for name, value in overrides.items():
        setattr(config, name, value)
    return config.validate()


@contextlib.contextmanager
def running(data_dir: Path, **overrides: Any) -> Iterator[Server]:
    """Run a server on ``data_dir`` (keys created if new) for the block."""
    initialise(data_dir)
    server, thread = serve_in_thread(data_dir, gateway_config(**overrides))
    try:
        yield server
    finally:
        stop_thread(server, thread)


def client(data_dir: Path, user: str, **kw: Any) -> Client:
    kw.setdefault("timeout", 10.0)
    return Client.from_data_dir(data_dir, user, **kw)


def raw_dealer(data_dir: Path, user: str, port: str, context: zmq.Context,
               routing_id: bytes = b"", **options: int) -> zmq.Socket:
    """A bare DEALER with ``user``'s CURVE key connected to ``port`` (for bad
    input), with the ``routing_id`` it chooses, if any (any client may), and
    socket ``options`` set before it connects (``rcvbuf=65536``)."""
    key = ClientKey.load(data_dir / "clients" / f"{user}.json")
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    if routing_id:
        sock.routing_id = routing_id
    for name, value in options.items():
        setattr(sock, name, value)
    sock.curve_serverkey = key.server_public_key.encode()
    sock.curve_publickey = key.public_key.encode()
    sock.curve_secretkey = key.secret_key.encode()
    sock.connect(getattr(Endpoints.load(data_dir), port))
    return sock


def logged_on_dealer(data_dir: Path, user: str, context: zmq.Context,
                     port: str = "broker") -> zmq.Socket:
    """A bare DEALER of ``user`` on the broker (or operator) socket, logged on."""
    sock = raw_dealer(data_dir, user, port, context)
    sock.send(p.encode(p.Logon()))
    assert isinstance(recv_until(sock, p.LogonAccepted), p.LogonAccepted)
    return sock


def recv_message(sock: zmq.Socket, timeout: float = 10.0) -> Any | None:
    """Receive and decode one server message, or None after ``timeout`` seconds."""
    if not sock.poll(int(timeout * 1000), zmq.POLLIN):
        return None
    return p.server_decoder.decode(sock.recv())


def recv_until(sock: zmq.Socket, kind: type, timeout: float = 10.0) -> Any | None:
    """Receive until a message of ``kind`` arrives (skipping heartbeats and
    notices), or None when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        msg = recv_message(sock, left)
        if msg is None:
            return None
        if isinstance(msg, kind):
            return msg
    return None


@dataclass
class Market:
    """What `build_market` created."""

    parties: dict[str, int] = field(default_factory=dict)   # name -> party id
    paddles: dict[str, int] = field(default_factory=dict)   # name -> paddle in S1
    english: str = "EN-1"
    sealed: str = "SE-1"
    instrument: str = "ULR-1"


def build_market(op: Client, b1: Client, b2: Client, *, sealed_closes_in: float = 3600.0
                 ) -> Market:
    """Parties of b1 (Acme, Seller) and b2 (Borealis), approved, with paddles in
    session S1; an open English lot with a soft close, an open sealed
    first-price lot with a secret reserve, and a units book."""
    market = Market()
    for broker, name in ((b1, "Acme"), (b2, "Borealis"), (b1, "Seller")):
        market.parties[name] = broker.ok(RegisterParty(name=name, country="US")).seq
    for party in market.parties.values():
        op.ok(ReviewCredit(party=party, approved=True, credit_limit=CREDIT,
                           agreement_version="BRA-2017"))
    op.ok(CreateSession(session="S1", name="Spring sale"))
    for name in ("Acme", "Borealis", "Seller"):
        result = op.ok(IssuePaddle(session="S1", party=market.parties[name]))
        market.paddles[name] = result.events[0].paddle
    now = time.time_ns()
    lots = (
        (market.english, LotTerms(title="Printing portfolio", mechanism="english",
                                  starting_bid=3_000_000, opens_at=now,
                                  closes_at=now + 3600 * NS), 5_000_000),
        (market.sealed, LotTerms(title="Imaging portfolio", mechanism="sealed_first",
                                 starting_bid=1_000_000, opens_at=now,
                                 closes_at=now + int(sealed_closes_in * NS)), SECRET_RESERVE),
    )
    for serial, terms, reserve in lots:
        op.ok(CreateLot(serial=serial, session="S1", seller=market.parties["Seller"],
                        terms=terms, reserve=reserve))
        op.ok(VetLot(serial=serial, score=80, approved=True))
        op.ok(ScheduleLot(serial=serial))
    op.ok(CreateInstrument(session="S1", instrument=market.instrument, kind="units"))
    op.ok(IssueUnits(session="S1", instrument=market.instrument,
                     paddle=market.paddles["Seller"], qty=1_000_000))
    return market


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout``; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def gather_notices(c: Client, until: Any, timeout: float = 10.0) -> list[Any]:
    """Collect the events of ``c``'s notices until ``until(events)`` holds or
    ``timeout`` passes; return them."""
    events: list[Any] = []
    deadline = time.monotonic() + timeout
    while True:
        c.poll(0.02)
        events.extend(e for n in c.notices() for e in n.events)
        if until(events) or time.monotonic() >= deadline:
            return events
