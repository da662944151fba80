"""`gateway.console`: the times a person types, read exactly."""

from __future__ import annotations

import pytest

from gateway.console import parse_time

NOON = 1_767_268_800 * 10**9                  # 2026-01-01T12:00:00Z


@pytest.mark.parametrize("text, ns", [
    ("1770010100000000000", 1_770_010_100_000_000_000),   # ns UTC, as --starts' help says
    ("2026010112000000000", 2_026_010_112_000_000_000),   # not an ISO basic date
    (" 0 ", 0),
    ("2026-01-01T12:00:00Z", NOON),
    ("2026-01-01T12:00:00", NOON),
    ("2026-01-01T20:00:00+08:00", NOON),
    ("2026-01-01T12:00:00.5Z", NOON + 500_000_000),
    ("2026-01-01T12:00:00.123456789Z", NOON + 123_456_789),
    ("2026-01-01T12:00:00,000000001", NOON + 1),
    ("2026-01-01T20:00:00.123456789+08:00", NOON + 123_456_789),
    ("20260101T120000.25Z", NOON + 250_000_000),
    ("now", 7),
    ("+2s", 7 + 2 * 10**9),
])
def test_times_are_read_exactly(text, ns):
    assert parse_time(text, now=7) == ns


def test_more_than_nine_decimals_of_a_second_are_refused():
    with pytest.raises(ValueError, match="more than nine decimals"):
        parse_time("2026-01-01T12:00:00.1234567891Z", now=0)


def test_a_sale_release_and_credit_review_show_their_amounts_and_currency():
    from exchange.events import CreditReviewed, FundsReleased, LotSold
    from gateway.console_cli import _describe

    sold = LotSold(serial="JP-L1", session="S", mechanism="english", how="negotiated",
                   paddle=101, buyer=4, seller=3, hammer=3_000_000, premium=300_000,
                   total=3_300_000, commission=150_000, net=2_850_000, currency="JPY",
                   buyer_premium_bp=1000, seller_commission_bp=500, tie_break="none")
    assert _describe(sold) == ("LotSold(paddle=101, serial=JP-L1, hammer=3000000, "
                               "premium=300000, total=3300000, commission=150000, "
                               "net=2850000, currency=JPY)")
    released = FundsReleased(settlement=2, to_seller=2_850_000, to_venue=450_000, refunded=0,
                             currency="JPY")
    assert _describe(released) == ("FundsReleased(settlement=2, to_seller=2850000, "
                                   "to_venue=450000, currency=JPY)")
    review = CreditReviewed(party=4, approved=True, credit_limit=10**8, currency="EUR",
                            agreement_version="BRA", score=0)
    assert _describe(review) == "CreditReviewed(party=4, credit_limit=100000000, currency=EUR)"
