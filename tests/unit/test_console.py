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
