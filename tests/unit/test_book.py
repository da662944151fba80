"""The pure order book, rule by rule, each in both directions.

The ``m`` fixture mirrors a test: as written (incoming buys against asks)
and reflected (incoming sells against bids, prices p -> 2000 - p), so every
rule is checked for buys and sells alike.
"""

from __future__ import annotations

import pytest

from exchange.book import (BUY, CANCEL_BOTH, CANCEL_NEWEST, CANCEL_OLDEST, FOK, GTC, IOC,
                           MAX_PRICE, POST_ONLY, SELL, Book)


class Mirror:
    def __init__(self, flip: bool) -> None:
        self.flip = flip

    def side(self, side: int) -> int:
        return 1 - side if self.flip else side

    def px(self, price: int) -> int:
        return 2000 - price if self.flip else price

    def market(self, side: int) -> int:
        """The limit a market order of (unmirrored) ``side`` uses."""
        return MAX_PRICE if self.side(side) == BUY else 0

    def best_opposite(self, book: Book):
        """Best price of the side incoming orders meet (asks as written)."""
        return book.best(self.side(SELL))

    def best_own(self, book: Book):
        return book.best(self.side(BUY))


@pytest.fixture(params=[False, True], ids=["buy", "sell"])
def m(request):
    return Mirror(request.param)


def rest(book: Book, m: Mirror, key, side, price, qty, owner=None, tif=GTC):
    order = book.place(key, m.side(side), m.px(price), qty, owner, tif)
    assert order is not None and not book.fills
    return order


def fills(book: Book, m: Mirror):
    return [(o.key, m.px(o.price), q) for o, q in book.fills]


def test_rests_in_price_levels_best_first(m):
    book = Book()
    rest(book, m, "a", SELL, 101, 5)
    rest(book, m, "b", SELL, 103, 1)
    rest(book, m, "c", SELL, 101, 2)
    rest(book, m, "d", BUY, 99, 4)
    assert m.best_opposite(book) == m.px(101)
    assert m.best_own(book) == m.px(99)
    side = m.side(SELL)
    assert [(m.px(p), q, n) for p, q, n in book.depth(side)] == [(101, 7, 2), (103, 1, 1)]
    assert book.qty_at(side, m.px(101)) == 7 and book.qty_at(side, m.px(102)) == 0
    assert [o.key for o in book.level_orders(side, m.px(101))] == ["a", "c"]
    book.check()


def test_crossing_order_trades_at_resting_prices_across_levels(m):
    book = Book()
    rest(book, m, "a", SELL, 101, 5)
    rest(book, m, "b", SELL, 102, 5)
    rest(book, m, "c", SELL, 105, 5)
    left = book.place("x", m.side(BUY), m.px(103), 12)
    assert fills(book, m) == [("a", 101, 5), ("b", 102, 5)]
    assert left is not None and left.qty == 2 and m.best_own(book) == m.px(103)
    assert m.best_opposite(book) == m.px(105)
    book.check()


def test_fifo_within_a_level_and_partial_fill_keeps_the_rest_first(m):
    book = Book()
    for key in "abc":
        rest(book, m, key, SELL, 100, 4)
    book.place("x", m.side(BUY), m.px(100), 6, tif=IOC)
    assert fills(book, m) == [("a", 100, 4), ("b", 100, 2)]
    assert [(o.key, o.qty) for o in book.level_orders(m.side(SELL), m.px(100))] == [("b", 2), ("c", 4)]
    book.check()


def test_ioc_never_rests_and_market_takes_any_price(m):
    book = Book()
    rest(book, m, "a", SELL, 100, 3)
    rest(book, m, "b", SELL, 150, 3)
    assert book.place("x", m.side(BUY), m.px(100), 5, tif=IOC) is None
    assert fills(book, m) == [("a", 100, 3)]
    assert "x" not in book.orders
    assert book.place("y", m.side(BUY), m.market(BUY), 10, tif=IOC) is None
    assert fills(book, m) == [("b", 150, 3)]
    assert not book.orders
    book.check()


def test_fok_fills_completely_or_does_nothing(m):
    book = Book()
    rest(book, m, "a", SELL, 100, 3)
    rest(book, m, "b", SELL, 101, 3)
    assert book.place("x", m.side(BUY), m.px(101), 7, tif=FOK) is None
    assert not book.fills and book.qty_at(m.side(SELL), m.px(100)) == 3
    assert book.place("y", m.side(BUY), m.px(100), 4, tif=FOK) is None
    assert not book.fills
    assert book.place("z", m.side(BUY), m.px(101), 6, tif=FOK) is None
    assert fills(book, m) == [("a", 100, 3), ("b", 101, 3)]
    assert book.place("w", m.side(BUY), m.px(101), 1, tif=FOK) is None and not book.fills
    book.check()


def test_post_only_rests_or_does_nothing(m):
    book = Book()
    rest(book, m, "a", SELL, 100, 3)
    assert book.crosses(m.side(BUY), m.px(100))
    assert book.place("x", m.side(BUY), m.px(100), 1, tif=POST_ONLY) is None
    assert not book.fills and "x" not in book.orders
    assert book.place("y", m.side(BUY), m.px(99), 1, tif=POST_ONLY).tif == POST_ONLY
    book.check()


def test_cancel_is_exact_and_ids_are_reusable(m):
    book = Book()
    rest(book, m, "a", SELL, 100, 3)
    rest(book, m, "b", SELL, 100, 4)
    assert book.cancel("a") == 3
    assert book.cancel("a") == 0
    assert book.cancel("never") == 0
    assert book.qty_at(m.side(SELL), m.px(100)) == 4
    rest(book, m, "a", SELL, 100, 9)
    assert [o.key for o in book.level_orders(m.side(SELL), m.px(100))] == ["b", "a"]
    assert book.cancel("b") == 4 and book.cancel("a") == 9
    assert m.best_opposite(book) is None and not book.levels[m.side(SELL)]
    book.check()


def test_many_cancels_compact_a_level(m):
    book = Book()
    rest(book, m, "keep", SELL, 100, 1)
    for i in range(1000):
        rest(book, m, i, SELL, 100, 1)
        assert book.cancel(i) == 1
    queue = book.level(m.side(SELL), m.px(100)).queue
    assert len(queue) <= 2 + 16 + 1
    book.check()


def test_modify_reduction_keeps_priority(m):
    book = Book()
    rest(book, m, "a", SELL, 100, 5)
    rest(book, m, "b", SELL, 100, 5)
    book.modify("a", m.px(100), 2)
    assert [(o.key, o.qty) for o in book.level_orders(m.side(SELL), m.px(100))] == [("a", 2), ("b", 5)]
    book.check()


@pytest.mark.parametrize("change", ["increase", "price"])
def test_modify_increase_or_price_change_loses_priority(m, change):
    book = Book()
    rest(book, m, "a", SELL, 100, 5)
    rest(book, m, "b", SELL, 100, 5)
    if change == "increase":
        book.modify("a", m.px(100), 6)
        assert [o.key for o in book.level_orders(m.side(SELL), m.px(100))] == ["b", "a"]
    else:
        book.modify("a", m.px(101), 5)
        book.modify("a", m.px(100), 5)
        assert [o.key for o in book.level_orders(m.side(SELL), m.px(100))] == ["b", "a"]
    book.check()


def test_crossing_modify_trades_at_the_resting_price(m):
    book = Book()
    rest(book, m, "ask", SELL, 100, 3)
    rest(book, m, "bid", BUY, 98, 5)
    book.modify("bid", m.px(102), 5)
    assert fills(book, m) == [("ask", 100, 3)]
    assert book.orders["bid"].qty == 2 and m.best_own(book) == m.px(102)
    book.check()


@pytest.mark.parametrize("stp,left_resting,incoming_rests", [
    (CANCEL_NEWEST, ["own"], False),
    (CANCEL_OLDEST, [], True),
    (CANCEL_BOTH, [], False),
])
def test_self_trade_prevention(m, stp, left_resting, incoming_rests):
    book = Book()
    rest(book, m, "other", SELL, 100, 2, owner="A")
    rest(book, m, "own", SELL, 101, 2, owner="B")
    rest(book, m, "later", SELL, 102, 2, owner="C")
    book.place("x", m.side(BUY), m.px(102), 10, owner="B", stp=stp)
    traded = fills(book, m)
    assert traded[0] == ("other", 100, 2)
    assert ("own" in book.orders) == bool(left_resting)
    assert book.stp_stopped == (stp != CANCEL_OLDEST)
    if stp == CANCEL_OLDEST:
        assert traded == [("other", 100, 2), ("later", 102, 2)]
        assert [(o.key, q) for o, q in book.cancelled] == [("own", 2)]
    else:
        assert traded == [("other", 100, 2)]
        assert "later" in book.orders
    assert ("x" in book.orders) == incoming_rests
    book.check()


def test_fillable_counts_self_trade_prevention(m):
    book = Book()
    rest(book, m, "own", SELL, 100, 5, owner="B")
    rest(book, m, "other", SELL, 100, 5, owner="A")
    assert book.fillable(m.side(BUY), m.px(100), 10, "B", CANCEL_NEWEST) == 0
    assert book.fillable(m.side(BUY), m.px(100), 10, "B", CANCEL_OLDEST) == 5
    assert book.fillable(m.side(BUY), m.px(100), 10, "A", CANCEL_NEWEST) == 5
    assert book.fillable(m.side(BUY), m.px(100), 10, None) == 10


def test_buy_cost_sweeps_the_asks():
    book = Book()
    book.add("a", SELL, 100, 3)
    book.add("b", SELL, 110, 3)
    assert book.buy_cost(4) == 3 * 100 + 110
    assert book.buy_cost(10) == 3 * 100 + 3 * 110
    assert book.buy_cost(4, limit=100) == 300


def test_buy_cost_skips_or_stops_at_the_buyers_own_asks():
    book = Book()
    book.add("a", SELL, 100, 3, owner="B")
    book.add("b", SELL, 100, 2, owner="A")
    book.add("c", SELL, 110, 3, owner="A")
    assert book.buy_cost(4, owner="B", stp=CANCEL_OLDEST) == 2 * 100 + 2 * 110
    assert book.buy_cost(4, owner="B", stp=CANCEL_NEWEST) == 0
    assert book.buy_cost(4, owner="B", stp=CANCEL_BOTH) == 0
    assert book.buy_cost(4, owner="A", stp=CANCEL_NEWEST) == 3 * 100   # stops at its own "b"
    assert book.buy_cost(4, owner="C") == 3 * 100 + 100


# ---------------------------------------------------------------------------
# call auction
# ---------------------------------------------------------------------------

def call_book(orders):
    book = Book()
    for key, side, price, qty in orders:
        book.add(key, side, price, qty)
    return book


def test_equilibrium_maximises_volume():
    book = call_book([("b1", BUY, 105, 10), ("b2", BUY, 100, 10), ("b3", BUY, 95, 10),
                      ("s1", SELL, 95, 5), ("s2", SELL, 100, 12), ("s3", SELL, 110, 10)])
    # at 100: demand 20, supply 17 -> 17; at 95: demand 30, supply 5; at 105: 10 vs 17
    assert book.equilibrium() == (100, 17, 3)


def test_equilibrium_tie_goes_to_smallest_imbalance():
    book = call_book([("b1", BUY, 102, 10), ("b2", BUY, 100, 5),
                      ("s1", SELL, 100, 10), ("s2", SELL, 102, 2)])
    # 100: demand 15, supply 10 -> 10, imbalance 5; 101 and 102: demand 10 (102 supply 12)
    price, volume, imbalance = book.equilibrium()
    assert volume == 10 and imbalance == 0 and price == 101


def test_equilibrium_tie_goes_to_nearest_reference_and_uses_it_when_inside():
    book = call_book([("b", BUY, 110, 10), ("s", SELL, 90, 10)])
    assert book.equilibrium(reference=0) == (90, 10, 0)       # no reference: lowest
    assert book.equilibrium(reference=97) == (97, 10, 0)      # inside the range
    assert book.equilibrium(reference=150) == (110, 10, 0)    # nearest end
    assert book.equilibrium(reference=10) == (90, 10, 0)


def test_equilibrium_without_a_match():
    assert call_book([("b", BUY, 90, 10), ("s", SELL, 95, 10)]).equilibrium() == (0, 0, 0)
    assert Book().equilibrium() == (0, 0, 0)


def test_equilibrium_never_picks_a_market_price():
    book = call_book([("mb", BUY, MAX_PRICE, 5), ("s", SELL, 120, 5)])
    assert book.equilibrium() == (120, 5, 0)
    book = call_book([("b", BUY, 80, 5), ("ms", SELL, 0, 5)])
    assert book.equilibrium() == (80, 5, 0)


def test_uncross_fills_at_one_price_in_price_time_priority():
    book = Book()
    book.add("b1", BUY, 105, 6)
    book.add("b2", BUY, 102, 6)
    book.add("b3", BUY, 102, 6)
    book.add("ioc", BUY, 101, 5, tif=IOC)
    book.add("s1", SELL, 99, 10)
    book.add("s2", SELL, 101, 5)
    book.add("s3", SELL, 106, 5)
    assert book.crossed()
    price, volume = book.uncross()
    assert (price, volume) == (102, 15)
    pairs = [(o.key, q) for o, q in book.fills]
    assert pairs == [("b1", 6), ("s1", 6), ("b2", 4), ("s1", 4), ("b2", 2), ("s2", 2),
                     ("b3", 3), ("s2", 3)]
    assert [(o.key, q) for o, q in book.cancelled] == [("ioc", 5)]
    assert book.orders["b3"].qty == 3 and "s3" in book.orders
    assert not book.crossed()
    book.check()


def test_check_catches_a_broken_book():
    book = Book()
    book.add("a", SELL, 100, 3)
    book.add("b", SELL, 100, 3)
    book.level(SELL, 100).qty = 5
    with pytest.raises(AssertionError, match="total"):
        book.check()
    book = Book()
    book.add("a", BUY, 100, 3)
    book.add("b", SELL, 100, 3)
    with pytest.raises(AssertionError, match="crossed"):
        book.check()
    book.check(allow_crossed=True)
    book = Book()
    book.add("a", SELL, 100, 3)
    book.add("b", SELL, 100, 3)
    queue = book.level(SELL, 100).queue
    queue.rotate()
    with pytest.raises(AssertionError, match="FIFO"):
        book.check()
