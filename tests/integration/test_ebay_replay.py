"""Replay all 628 real eBay auctions of 2003 through the English mechanism with
proxy bids and eBay's 2003 increments; at least 94 % of the recorded closing
prices must come out to the cent."""

import csv
import hashlib
from pathlib import Path

import pytest

from exchange import ebay

DATA = Path(__file__).resolve().parent.parent / "data" / "ebay-auctions"
SHA256 = "2459ea7a6af52f62849188af26e4d3a1659315fc75d848bff5baa1d74735f2c2"


@pytest.fixture(scope="module")
def auctions():
    raw = (DATA / "auction.csv").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SHA256, "tests/data/ebay-auctions/auction.csv changed"
    rows = list(csv.DictReader(raw.decode("utf-8").splitlines()))
    assert len(rows) == 10_681
    return ebay.auctions_from_rows(rows)


def test_parsing_is_exact(auctions):
    assert len(auctions) == 628
    assert sum(len(auction.bids) for auction in auctions) == 10_681
    first = auctions[0]
    assert (first.auction_id, first.open_bid, first.price, first.days) == ("1638893549", 9_900,
                                                                            17_750, 3)
    assert (first.bids[0].amount, first.bids[0].at) == (17_500, 192_753_993_600_000)
    assert ebay.parse_cents("0.01") == 1 and ebay.parse_cents("1205") == 120_500
    with pytest.raises(ValueError):
        ebay.parse_cents("1.005")
    assert ebay.parse_days("6.99999") == 604_799_136_000_000


def test_english_reproduces_at_least_94_percent_of_closing_prices(auctions):
    outcomes = ebay.run_all(auctions, "english", "ebay2003")
    reproduced = sum(outcome.reproduced for outcome in outcomes)
    misses = [(o.auction_id, o.recorded, o.price) for o in outcomes if not o.reproduced]
    assert len(outcomes) == 628
    assert reproduced * 100 >= 94 * 628, (reproduced, misses[:20])
    # the misses are auctions that closed above what their bids explain (a Buy
    # It Now, a hidden reserve): the engine overshoots a recorded price at most
    # twice (once today: 3017736272, whose recorded bids explain 255.00, not 238.00)
    assert sum(o.price is None or o.price > o.recorded for o in outcomes) <= 2, misses


def test_other_rules_run_on_the_same_histories(auctions):
    sample = auctions[:40]
    for rules in ("vickrey", "first-price", "english-soft-close"):
        outcomes = ebay.run_all(sample, rules, "ebay2003")
        assert len(outcomes) == 40
        assert all(o.price is None or o.price > 0 for o in outcomes)
    english = {o.auction_id: o.price for o in ebay.run_all(sample, "english")}
    first = {o.auction_id: o.price for o in ebay.run_all(sample, "first-price")}
    vickrey = {o.auction_id: o.price for o in ebay.run_all(sample, "vickrey")}
    for auction_id, price in vickrey.items():
        if price is not None:
            assert price <= first[auction_id]          # second price never above first price
    assert english != first
