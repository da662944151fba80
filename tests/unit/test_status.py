"""A broker's status (`exchange.status.broker_status`): its own resting
orders, units and credit, and nothing of another broker's."""

from __future__ import annotations

from exchange.commands import CreateInstrument, CreateSession, IssuePaddle, StartCall
from exchange.status import broker_status
from tests.unit.test_market import Market


def test_status_holds_own_orders_units_and_credit_only():
    mk = Market()                               # b1..b3, one party and paddle each, units
    mk.order("b1", 1, "sell", 5, 500)
    mk.order("b1", 2, "buy", 2, 400, tif="gtd", expires=mk.d.ts + 10**12)
    mk.order("b2", 1, "buy", 3, 450, post_only=True)
    mk.order("b2", 2, "buy", 1, 500)                          # trades with b1's sell
    status = broker_status(mk.state, "b1")
    assert [(o.order, o.side, o.price, o.qty, o.tif, o.post_only) for o in status.orders] == \
        [(1, "sell", 500, 4, "gtc", False), (2, "buy", 400, 2, "gtd", False)]
    assert [(h.instrument, h.units, h.offered) for h in status.holdings] == [("U", 999, 4)]
    assert [(c.session, c.party, c.exposure) for c in status.credit] == \
        [("S", mk.party["b1"], 800)]
    other = broker_status(mk.state, "b2")
    assert [(o.order, o.post_only) for o in other.orders] == [(1, True)]
    assert [h.units for h in other.holdings] == [1001]
    assert {o.paddle for o in other.orders} == {mk.paddle["b2"]}
    assert broker_status(mk.state, "nobody") == broker_status(mk.state, "b1", "none")
    assert broker_status(mk.state, "nobody").orders == []


def test_status_by_session_and_call_period_iocs():
    mk = Market()
    mk.d.ok(StartCall(session="S", instrument="U"))
    mk.order("b1", 1, "buy", 2, 300, tif="ioc")               # waits for the uncross
    mk.d.ok(CreateSession(session="T", name="second"))
    mk.d.ok(IssuePaddle(session="T", party=mk.party["b1"]))
    mk.d.ok(CreateInstrument(session="T", instrument="V"))
    everywhere = broker_status(mk.state, "b1")
    assert [(o.session, o.tif) for o in everywhere.orders] == [("S", "ioc")]
    assert [c.session for c in everywhere.credit] == ["S", "T"]
    only_t = broker_status(mk.state, "b1", "T")
    assert only_t.orders == [] and [c.session for c in only_t.credit] == ["T"]


def test_status_lists_own_live_bids_and_nothing_once_a_lot_closes():
    from tests.unit.auctionkit import DAY, HOUR, T0, USD
    from tests.unit.auctionkit import Market as Auctions

    m = Auctions()
    seller = m.seller()
    a, b = m.bidder("Alice", broker="b1"), m.bidder("Bob", broker="b2")
    m.lot("E1", seller=seller)
    m.lot("S1", seller=seller, mechanism="sealed_second")
    m.tick(T0 + HOUR)
    m.bid("E1", a, 1_500 * USD)
    m.bid("E1", b, 1_200 * USD)                    # outbid at once by a's proxy
    m.bid("S1", b, 2_000 * USD)
    mine = broker_status(m.state, "b2").bids
    assert [(x.serial, x.amount, x.leading, x.price) for x in mine] == [
        ("E1", 1_200 * USD, False, 1_300 * USD), ("S1", 2_000 * USD, False, 0)]
    theirs = broker_status(m.state, "b1").bids
    assert [(x.serial, x.paddle, x.amount, x.leading) for x in theirs] == \
        [("E1", a, 1_500 * USD, True)]
    c, d = m.bidder("Carol", broker="b1"), m.bidder("Dave", broker="b1")
    m.bid("S1", d, 1_000 * USD)                     # b1 has 3 paddles, S1 2 bids: walk S1's
    assert [(x.serial, x.paddle) for x in broker_status(m.state, "b1").bids] == \
        [("E1", a), ("S1", d)]
    assert c not in [x.paddle for x in broker_status(m.state, "b1").bids]
    m.tick(T0 + DAY)                                # both lots close
    assert broker_status(m.state, "b2").bids == []


def test_status_lists_a_tender_offer_awaiting_the_buyers_choice():
    from tests.unit.auctionkit import DAY, T0, USD
    from tests.unit.test_reverse import tender

    m, _, (a, b, _) = tender(choice="buyer")
    m.bid("T1", a, 39_000 * USD)
    m.bid("T1", b, 38_000 * USD)
    m.tick(T0 + DAY)                                 # closed: the buyer chooses
    assert m.state.lots["T1"].status == "choosing"
    offers = broker_status(m.state, m.brokers[a]).bids
    assert [(x.serial, x.paddle, x.amount, x.leading) for x in offers] == \
        [("T1", a, 39_000 * USD, False)]


def test_status_lists_own_nda_signatures_while_the_room_is_open():
    import hashlib

    from exchange.commands import (AddDocument, CloseSession, OpenDocument, RequireNda, SignNda,
                                   WithdrawLot)
    from exchange.status import status_work
    from tests.unit.auctionkit import HOUR, T0
    from tests.unit.auctionkit import Market as Auctions

    m = Auctions()
    seller = m.seller()
    a, b = m.bidder("Alice", broker="b1"), m.bidder("Bob", broker="b2")
    c, d = m.bidder("Carol", broker="b1"), m.bidder("Dave", broker="b1")
    m.lot("L1", seller=seller)
    m.lot("L2", seller=seller)
    m.d.ok(AddDocument(serial="L1", name="claims.pdf", digest=hashlib.sha256(b"x").hexdigest(),
                       size=1, location="vdr://L1/claims.pdf"))
    before = status_work(m.state, "", "b1")
    for paddle, lot in ((a, "L1"), (b, "L1"), (d, "L1"), (a, "L2")):
        m.send(SignNda(serial=lot, party=m.parties[paddle], nda="N1"), paddle)
    # charged by its own paddles once a room, never by others' signatures
    assert status_work(m.state, "", "b1") == before
    m.send(OpenDocument(serial="L1", party=m.parties[a], name="claims.pdf"), a)
    m.d.ok(RequireNda(serial="L1", nda="N2"))
    mine = broker_status(m.state, "b1").rooms
    assert [(x.serial, x.paddle, x.nda, x.current, x.opened) for x in mine] == [
        ("L1", a, "N1", False, 1), ("L1", d, "N1", False, 0), ("L2", a, "N1", True, 0)]
    assert [(x.serial, x.paddle) for x in broker_status(m.state, "b2").rooms] == [("L1", b)]
    assert c not in [x.paddle for x in mine]
    m.d.ok(WithdrawLot(serial="L2", reason="withdrawn"))  # its room closes
    assert [x.serial for x in broker_status(m.state, "b1").rooms] == ["L1", "L1"]
    m.tick(T0 + HOUR)                                     # L1 opens
    m.d.ok(CloseSession(session="S1"))                    # every room closes with the session
    assert m.state.lots["L1"].status == "open"
    assert broker_status(m.state, "b1").rooms == broker_status(m.state, "b2").rooms == []


class _Books(dict):
    """The state's books, counting how often they are walked."""

    walks = 0

    def values(self):
        self.walks += 1
        return super().values()


def test_a_status_of_a_session_that_does_not_exist_walks_nothing():
    """A status request may name any session; one that does not exist was
    bounded as 0 items but walked every book of the exchange, once a turn per
    made-up name: now nothing is walked for it (an empty answer), and a
    real session's bound counts every book looked at, other sessions' too."""
    from exchange.status import status_work
    mk = Market()
    mk.d.ok(CreateSession(session="T", name="second"))
    for i in range(50):
        mk.d.ok(CreateInstrument(session="T", instrument=f"V{i}"))
    books = mk.state.books = _Books(mk.state.books)
    assert status_work(mk.state, "NO-SUCH-SESSION") == 0
    assert broker_status(mk.state, "b1", "NO-SUCH-SESSION") == broker_status(mk.state, "nobody")
    assert broker_status(mk.state, "b1", "NO-SUCH-SESSION").credit == []
    assert books.walks == 0
    assert status_work(mk.state, "S", "b1") >= len(books) == 51 and books.walks == 1


def test_a_status_bound_tells_no_count_of_others_bids_or_signatures():
    """The bound a broker's status is charged by (its throttle) counted
    every live bid of each open lot and every NDA signer: asking, a broker
    learned in tens how many sealed bids others had made. Now it counts the
    broker's own paddles for each open lot and room, which bound the walk."""
    import hashlib

    from exchange.commands import AddDocument, SignNda
    from exchange.status import status_work
    from tests.unit.auctionkit import HOUR, T0, USD
    from tests.unit.auctionkit import Market as Auctions

    m = Auctions()
    seller = m.seller()
    mine = [m.bidder(f"Mine{i}", broker="b1") for i in range(3)]
    others = [m.bidder(f"Other{i}", broker="b2") for i in range(40)]
    m.lot("L1", seller=seller, mechanism="sealed_first", starting_bid=1_000 * USD)
    m.d.ok(AddDocument(serial="L1", name="claims.pdf", digest=hashlib.sha256(b"x").hexdigest(),
                       size=1, location="vdr://L1/claims.pdf"))
    m.tick(T0 + HOUR)
    assert m.state.lots["L1"].status == "open"
    m.bid("L1", mine[0], 2_000 * USD)
    before = status_work(m.state, "S1", "b1")
    for n, paddle in enumerate(others):
        m.bid("L1", paddle, (2_000 + n) * USD)
        m.send(SignNda(serial="L1", party=m.parties[paddle], nda="N1"), paddle)
    assert len(m.state.lots["L1"].live) == 41
    assert status_work(m.state, "S1", "b1") == before
    assert status_work(m.state, "S1", "b2") > before      # b2's own 40 paddles
    assert [b.paddle for b in broker_status(m.state, "b1").bids] == [mine[0]]



class _Orders(dict):
    """A book's order map, counting how many orders are walked."""

    walked = 0

    def items(self):
        for item in super().items():
            self.walked += 1
            yield item


def test_a_status_over_others_deep_book_walks_and_costs_only_the_brokers_own():
    """A status looked through every resting order of the session's books
    (a broker with none paid ~3 ms an ask over 30,000 of others' orders, and
    its bound told it their number in tens): the book keeps each paddle's
    orders, and a status walks and is charged by the broker's own."""
    from exchange.engine import Engine
    from exchange.status import status_work
    mk = Market()
    for oid in range(1, 301):
        mk.order("b2", oid, "buy", 1, 100 + oid % 7)
    mk.order("b1", 1, "sell", 1, 900)
    mk.order("b1", 2, "buy", 1, 50)
    book = mk.state.books["U"].book
    book.check()
    alone = status_work(mk.state, "S", "b1")
    for oid in range(301, 601):
        mk.order("b2", oid, "buy", 1, 100)
    assert status_work(mk.state, "S", "b1") == alone                 # others' 300 more
    assert status_work(mk.state, "S", "b2") >= alone + 600 - 2
    book.orders = _Orders(book.orders)
    assert [o.order for o in broker_status(mk.state, "b1").orders] == [1, 2]
    assert book.orders.walked == 0
    book.orders = dict(book.orders)
    restored = Engine.restore(Engine(mk.state).snapshot())            # the index is kept ...
    assert broker_status(restored.state, "b2") == broker_status(mk.state, "b2")
    restored.state.books["U"].book.check()
    del restored.state.books["U"].book.owned                          # ... or built anew from
    again = Engine.restore(Engine(restored.state).snapshot())         # a snapshot without it
    again.state.books["U"].book.check()
    assert broker_status(again.state, "b1") == broker_status(mk.state, "b1")
