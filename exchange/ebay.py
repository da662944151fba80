"""Re-run external bid histories (the eBay ``auction.csv`` layout) through the engine.

Pure: takes rows already read (mappings of column name -> text, as
`csv.DictReader` yields them), turns each auction into the lotex commands
that set it up and replay its bids at their recorded times, runs them
through a fresh `Engine` with a `Driver`, and returns the price each auction
closes at under the chosen rules. Amounts are parsed from their decimal
text into cents and times from fractional days into ns, exactly, without
floats. Used by tests/integration/test_ebay_replay.py and `lotex whatif`.

Rules (``RULES``):

- ``english``: open ascending with proxy bids and a hard close, as eBay ran;
  every recorded bid is the bidder's maximum.
- ``english-soft-close``: the same with a soft close (``soft_window`` /
  ``soft_extend``, default 5 minutes each, hard end ``hard_extra`` after
  the recorded end, default 1 hour); bidders' timing is the recorded one.
- ``vickrey`` / ``first-price``: sealed second- / first-price; a bidder's
  latest recorded bid is its live sealed bid.

The opening bid is the starting bid; there is no reserve (the data does not
record one) and no fee. Each auction runs in its own engine and session.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import msgspec

from exchange.commands import (Command, CreateLot, CreateSession, IssuePaddle, LotTerms,
                               PlaceBid, RegisterParty, ReviewCredit, ScheduleLot, VetLot)
from exchange.driver import Driver
from exchange.errors import MAX_INT
from exchange.events import CommandRejected, LotAwarded

NS_PER_DAY = 86_400 * 10**9
START = 1_041_379_200 * 10**9          # 2003-01-01T00:00:00Z: when every replayed auction opens
MINUTE = 60 * 10**9
RULES = ("english", "english-soft-close", "vickrey", "first-price")
MECHANISM = {"english": "english", "english-soft-close": "english",
             "vickrey": "sealed_second", "first-price": "sealed_first"}
BROKER = "replay"


class EbayBid(msgspec.Struct, frozen=True, kw_only=True):
    at: int          # ns after the auction opened
    bidder: str
    amount: int      # cents


class EbayAuction(msgspec.Struct, frozen=True, kw_only=True):
    auction_id: str
    item: str
    days: int
    open_bid: int    # cents
    price: int       # recorded closing price, cents
    bids: tuple[EbayBid, ...]


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    auction_id: str
    recorded: int            # cents
    price: int | None        # cents under the rules; None if the lot passed
    bids_refused: int        # recorded bids the engine refused under the rules

    @property
    def reproduced(self) -> bool:
        return self.price == self.recorded


def parse_decimal(text: str, places: int) -> int:
    """Return decimal ``text`` times 10**places as an exact int; ValueError if
    it has more decimals than ``places`` or is not a plain decimal."""
    text = text.strip()
    whole, _, fraction = text.partition(".")
    if not whole.isdigit() or (fraction and not fraction.isdigit()) or len(fraction) > places:
        raise ValueError(f"not a decimal with at most {places} places: {text!r}")
    return int(whole) * 10**places + int((fraction + "0" * places)[:places] or "0")


def parse_cents(text: str) -> int:
    """"177.5" -> 17750."""
    return parse_decimal(text, 2)


def parse_days(text: str) -> int:
    """Fractional days -> ns, exact for up to 9 decimals ("2.230949" -> 192_754_
    593_600_000)."""
    return parse_decimal(text, 9) * 86_400


def auction_days(text: str) -> int:
    """"7 day auction" -> 7."""
    return int(text.split()[0])


def auctions_from_rows(rows: Iterable[Mapping[str, str]]) -> list[EbayAuction]:
    """Group rows by auction (first appearance order), bids ordered by time then row."""
    grouped: dict[str, list[Mapping[str, str]]] = {}
    for row in rows:
        grouped.setdefault(row["auctionid"], []).append(row)
    auctions = []
    for auction_id, group in grouped.items():
        first = group[0]
        bids = sorted(((parse_days(row["bidtime"]), index, row) for index, row in enumerate(group)),
                      key=lambda item: (item[0], item[1]))
        auctions.append(EbayAuction(
            auction_id=auction_id, item=first["item"], days=auction_days(first["auction_type"]),
            open_bid=parse_cents(first["openbid"]), price=parse_cents(first["price"]),
            bids=tuple(EbayBid(at=at, bidder=row["bidder"], amount=parse_cents(row["bid"]))
                       for at, _, row in bids)))
    return auctions


def lot_terms(auction: EbayAuction, rules: str = "english", increments: str = "ebay2003", *,
              soft_window: int = 5 * MINUTE, soft_extend: int = 5 * MINUTE,
              hard_extra: int = 60 * MINUTE) -> LotTerms:
    """The lot's terms for ``auction`` under ``rules``."""
    if rules not in RULES:
        raise ValueError(f"unknown rules {rules!r}; choose from {', '.join(RULES)}")
    closes_at = START + auction.days * NS_PER_DAY
    soft = rules == "english-soft-close"
    return LotTerms(title=f"{auction.item} (eBay {auction.auction_id})", currency="USD",
                    mechanism=MECHANISM[rules], starting_bid=max(auction.open_bid, 1),
                    increments=increments, opens_at=START, closes_at=closes_at,
                    hard_end=closes_at + hard_extra if soft else closes_at,
                    soft_window=soft_window if soft else 0,
                    soft_extend=soft_extend if soft else 0)


Step = tuple[int, str, str, Command]  # (ts, actor, role, command)


def script(auction: EbayAuction, rules: str = "english", increments: str = "ebay2003",
           **terms_options: int) -> tuple[list[Step], dict[str, int], LotTerms]:
    """Return the commands that replay ``auction`` (setup, then one `PlaceBid`
    per recorded bid at its time), the paddle of each bidder, and the terms.

    Party ids are sequence numbers, so they follow from the setup's order:
    the seller is registered first (seq 2), then each bidder in order of first bid.
    """
    terms = lot_terms(auction, rules, increments, **terms_options)
    setup_ts = START - MINUTE
    session = f"ebay-{auction.auction_id}"
    steps: list[Step] = [(setup_ts, "op", "operator",
                          CreateSession(session=session, name=terms.title, currency="USD"))]
    seq = 1
    bidders: list[str] = []
    for bid in auction.bids:
        if bid.bidder not in bidders:
            bidders.append(bid.bidder)
    parties: dict[str, int] = {}
    paddles: dict[str, int] = {}
    for index, name in enumerate(["(seller)"] + bidders):
        steps.append((setup_ts, BROKER, "broker", RegisterParty(name=name)))
        seq += 1
        parties[name] = seq
        steps.append((setup_ts, "op", "operator",
                      ReviewCredit(party=seq, approved=True, credit_limit=MAX_INT,
                                   currency="USD", agreement_version="replay")))
        seq += 1
        if index:
            steps.append((setup_ts, "op", "operator", IssuePaddle(session=session, party=parties[name])))
            seq += 1
            paddles[name] = 100 + index  # participants issue paddles from 101 in order
    serial = f"EBAY-{auction.auction_id}"
    steps.append((setup_ts, BROKER, "broker",
                  CreateLot(serial=serial, session=session, seller=parties["(seller)"], terms=terms)))
    steps.append((setup_ts, "op", "operator", VetLot(serial=serial, score=0, approved=True)))
    steps.append((setup_ts, "op", "operator", ScheduleLot(serial=serial)))
    for bid in auction.bids:
        steps.append((START + bid.at, BROKER, "broker",
                      PlaceBid(serial=serial, paddle=paddles[bid.bidder], amount=bid.amount)))
    return steps, paddles, terms


def run(auction: EbayAuction, rules: str = "english", increments: str = "ebay2003",
        **terms_options: int) -> Outcome:
    """Replay one auction through a fresh engine and return its outcome."""
    steps, _, terms = script(auction, rules, increments, **terms_options)
    driver = Driver(start_ts=START - MINUTE)
    refused = 0
    setup_count = len(steps) - len(auction.bids)
    for index, (ts, actor, role, cmd) in enumerate(steps):
        events = driver.send(cmd, actor=actor, role=role, ts=ts)
        rejected = [event for event in events if isinstance(event, CommandRejected)]
        if rejected and index < setup_count:
            raise ValueError(f"auction {auction.auction_id}: setup {type(cmd).__name__} "
                             f"refused: {rejected[0].code}: {rejected[0].text}")
        refused += bool(rejected)
    events = driver.tick(terms.hard_end)
    price = next((event.hammer for event in events if isinstance(event, LotAwarded)), None)
    if price is None:
        lot = driver.engine.state.lots[f"EBAY-{auction.auction_id}"]
        price = lot.sale.hammer if lot.sale is not None else None
    return Outcome(auction_id=auction.auction_id, recorded=auction.price, price=price,
                   bids_refused=refused)


def run_all(auctions: Iterable[EbayAuction], rules: str = "english",
            increments: str = "ebay2003", **terms_options: int) -> list[Outcome]:
    """Replay every auction; see `run`."""
    return [run(auction, rules, increments, **terms_options) for auction in auctions]
