"""The client library against a server: what it tells the caller when a
command's copies are answered differently, one command too large for a
message, a reconnection's heartbeats, a recap's duplicates, and the end of
an AsyncClient's notices."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq

from exchange.commands import CreateLot, LotTerms, Patent, PlaceOrder, RegisterParty
from gateway import protocol as p
from gateway.client import CURVE_OVERHEAD, MessageTooLarge
from tests.integration.gateway_harness import build_market, client, running


def test_a_throttled_copy_and_an_accepted_resend_report_the_result(tmp_path: Path):
    with running(tmp_path, max_requests_per_second=2) as server:
        # keepalive=False: the program reads only when it calls, so the
        # refusal of the first copy is still unread when the client resends it
        b1 = client(tmp_path, "b1", keepalive=False, resend_after=0.3)
        try:
            b1.send(RegisterParty(name="Filler-1", country="US"))
            b1.send(RegisterParty(name="Filler-2", country="US"))
            cid = b1.send(RegisterParty(name="Acme", country="US"))   # over the allowance
            time.sleep(1.5)                                          # the allowance refills
            result = b1.result(cid)
            assert result.accepted
            acted = [seq for seq in range(1, server.next_seq)
                     if (found := server._original(seq)) is not None
                     and getattr(found[0], "name", "") == "Acme"]
            assert acted == [result.seq]
        finally:
            b1.close()


def _sized(cid: str, size: int) -> RegisterParty:
    """A RegisterParty whose Request under ``cid`` is ``size`` bytes."""
    base = len(p.encode(p.Request(client_id=cid, cmd=RegisterParty(name=""))))
    name = "n" * (size - base)
    while len(p.encode(p.Request(client_id=cid, cmd=RegisterParty(name=name)))) > size:
        name = name[:-1]
    return RegisterParty(name=name)


def test_a_command_larger_than_a_message_is_refused_by_the_client(tmp_path: Path):
    with running(tmp_path):
        b1 = client(tmp_path, "b1", cancel_on_disconnect=True, resend_after=0.5, timeout=5)
        try:
            limit = b1.session.logged_on.max_message_bytes
            assert limit == 16384                                  # the harness's
            patents = tuple(Patent(number=f"US{7000000 + i}", title=f"Method number {i}")
                            for i in range(400))
            big = CreateLot(serial="BIG-1", session="S1", seller=1,
                            terms=LotTerms(title="Large portfolio", patents=patents))
            with pytest.raises(MessageTooLarge) as refused:
                b1.request(big)
            assert refused.value.code == "message_too_large"
            assert refused.value.limit == limit and refused.value.size > limit
            assert f"{limit:,}" in str(refused.value) and "max_message_bytes" in str(refused.value)
            assert not b1.session.pending
            # the largest the server takes goes through, on the same session
            largest = limit - CURVE_OVERHEAD
            assert b1.request(_sized("fits-1", largest), "fits-1").seq
            with pytest.raises(MessageTooLarge):
                b1.send(_sized("over-1", largest + 1), "over-1")
            assert b1.session.logons == 1                  # never dropped and logged on again
        finally:
            b1.close()


@pytest.mark.parametrize("how", ["drop", "close"])
def test_a_client_connected_again_keeps_its_session_alive_while_idle(tmp_path: Path, how):
    with running(tmp_path):
        b1 = client(tmp_path, "b1", heartbeat_ms=200, cancel_on_disconnect=True,
                    context=zmq.Context() if how == "close" else None)
        try:
            getattr(b1, how)()              # the connection breaks, or the program closes it
            b1.connect()                    # ... and it connects again
            assert b1._keeper is not None and b1._keeper.is_alive()
            time.sleep(1.5)                 # idle for over three heartbeats
            b1.poll(0.3)
            assert b1.session.logged_out is None and b1.session.logons == 2
        finally:
            b1.close()
            if how == "close":
                b1.context.term()


def test_a_recap_returns_each_seq_once_and_leaves_the_live_copy_to_notices(tmp_path: Path):
    with running(tmp_path):
        op, b2 = client(tmp_path, "op"), client(tmp_path, "b2")
        b1 = client(tmp_path, "b1", keepalive=False)          # reads only when called
        try:
            m = build_market(op, b1, b2)
            b1.notices()
            b1.ok(PlaceOrder(session="S1", instrument=m.instrument, paddle=m.paddles["Seller"],
                             order=1, side="sell", qty=10, price=100))
            trade = b2.ok(PlaceOrder(session="S1", instrument=m.instrument,
                                     paddle=m.paddles["Borealis"], order=1, side="buy", qty=10,
                                     price=100))
            time.sleep(0.3)                 # b1's live notice of the fill waits in its socket
            recapped = b1.recap(from_seq=trade.seq)
            assert [n.seq for n in recapped] == [trade.seq]
            later = [n.seq for n in b1.notices()]
            assert later.count(trade.seq) == 1                          # the live copy
        finally:
            for c in (b1, b2, op):
                c.close()
