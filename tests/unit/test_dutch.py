"""Dutch (descending clock) auction: worked examples."""

from exchange.events import (DutchPriceChanged, LotAwarded, LotClosed, LotOpened, LotPassed,
                             LotPassedDetail)
from tests.unit.auctionkit import DAY, HOUR, T0, USD, Market, of, one


def dutch(reserve=0, starting_bid=1_000 * USD, limit=10**12):
    m = Market()
    seller = m.seller()
    a, b = m.bidder("Alice", limit=limit), m.bidder("Bob")
    # opens T0+1h at 10,000, -1,000 every hour, closes T0+1d
    m.lot("L1", seller=seller, mechanism="dutch", reserve=reserve, starting_bid=starting_bid,
          dutch_start=10_000 * USD, dutch_step=1_000 * USD, dutch_interval=HOUR,
          buyer_premium_bp=1_000)
    return m, a, b


def hourly(m, first: int, last: int) -> list:
    """Tick every hour from ``first`` to ``last`` hours after T0 (the server's
    clock ticks far more often): every step of the clock is published."""
    return [e for hour in range(first, last + 1) for e in m.tick(T0 + hour * HOUR)]


def test_clock_steps_down_and_first_accept_wins_at_the_current_price():
    m, a, b = dutch()
    assert one(m.tick(T0 + HOUR), LotOpened).price == 10_000 * USD
    ev = hourly(m, 2, 4)                              # three steps: 9,000, 8,000, 7,000
    assert [e.price for e in of(ev, DutchPriceChanged)] == [9_000 * USD, 8_000 * USD, 7_000 * USD]
    assert m.refused("L1", a, 6_000 * USD).code == "below_current_price"
    ev = m.bid("L1", a, 8_000 * USD)                  # saw 8,000; pays the current 7,000
    assert one(ev, LotClosed).outcome == "sold"
    award = one(ev, LotAwarded)
    assert (award.paddle, award.hammer, award.total, award.tie_break) == (
        a, 7_000 * USD, 7_700 * USD, "none")
    assert m.refused("L1", b, 7_000 * USD).code == "lot_closed"
    assert not of(m.tick(T0 + 6 * HOUR), DutchPriceChanged)   # the clock stopped


def test_clock_stops_at_the_public_floor_then_passes():
    m, a, _ = dutch(starting_bid=2_500 * USD)
    m.tick(T0 + HOUR)
    ev = hourly(m, 2, 12)
    prices = [(e.price, e.at_floor) for e in of(ev, DutchPriceChanged)]
    assert prices[-2:] == [(3_000 * USD, False), (2_500 * USD, True)]   # stops exactly on it
    assert len(prices) == 8                           # 9,000 ... 3,000, then 2,500
    ev = m.tick(T0 + DAY)
    assert one(ev, LotPassed).reason == "no_bids" and not of(ev, DutchPriceChanged)


def test_clock_stops_at_its_last_step_at_or_above_a_secret_reserve():
    m, a, _ = dutch(reserve=4_500 * USD)
    m.tick(T0 + HOUR)
    ev = hourly(m, 2, 12)
    prices = [e.price for e in of(ev, DutchPriceChanged)]
    assert prices == [9_000 * USD, 8_000 * USD, 7_000 * USD, 6_000 * USD, 5_000 * USD]
    assert of(ev, DutchPriceChanged)[-1].at_floor
    assert 4_500 * USD not in prices                  # the reserve itself is not shown
    ev = m.tick(T0 + DAY)
    assert one(ev, LotPassedDetail).reserve == 4_500 * USD


def test_accept_over_the_credit_limit_is_refused_and_another_bidder_takes_it():
    m, a, b = dutch(limit=5_000 * USD)
    m.tick(T0 + 5 * HOUR)                             # clock at 6,000: 6,600 with premium
    assert m.refused("L1", a, 6_000 * USD).code == "over_credit_limit"
    assert m.state.lots["L1"].status == "open"
    award = one(m.bid("L1", b, 6_000 * USD), LotAwarded)
    assert award.paddle == b


def test_a_clock_scheduled_with_its_opening_past_starts_at_the_top_now():
    m = Market()
    seller = m.seller()
    m.bidder("Alice")
    m.tick(T0 + 4 * HOUR + HOUR // 2)
    ev = m.lot("L1", seller=seller, mechanism="dutch", starting_bid=1_000 * USD,
               dutch_start=10_000 * USD, dutch_step=1_000 * USD, dutch_interval=HOUR)
    assert one(ev, LotOpened).price == 10_000 * USD and not of(ev, DutchPriceChanged)
    assert m.state.lots["L1"].opens_at == T0 + 4 * HOUR + HOUR // 2    # it opened now
    assert not of(m.tick(T0 + 5 * HOUR), DutchPriceChanged)
    ev = m.tick(T0 + 5 * HOUR + HOUR // 2)            # an interval after it opened
    assert [e.price for e in of(ev, DutchPriceChanged)] == [9_000 * USD]
