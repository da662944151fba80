"""Replay's times in a zone with daylight saving (`replay.comparables`)."""

from __future__ import annotations

import datetime

from replay.catalogue import InstrumentInfo
from replay.comparables import activity
from replay.source import NS, UTC, zone

NEW_YORK = zone("America/New_York")


def utc_ns(*fields: int) -> int:
    return int(datetime.datetime(*fields, tzinfo=UTC).timestamp()) * NS


EDT_0130 = utc_ns(2026, 11, 1, 5, 30)      # 01:30 EDT, before the clocks turn back
EST_0130 = utc_ns(2026, 11, 1, 6, 30)      # 01:30 EST, an hour later
EST_0300 = utc_ns(2026, 11, 1, 8, 0)       # 03:00 EST


def test_a_night_that_turns_the_clocks_back_has_two_one_oclock_hours():
    """Count the two 01:00 hours of a fall-back night as two periods, in time order."""
    inst = InstrumentInfo(id="U", session="S", kind="units", lot="", currency="USD")
    inst.trades = [(EDT_0130, 100, 1, 1, 2, 1), (EST_0130, 300, 2, 1, 2, 2),
                   (EST_0300, 200, 4, 1, 2, 3)]
    rows = activity(inst, "U", "hour", NEW_YORK)
    assert [(r["period"], r["volume"], r["last"]) for r in rows] == [
        ("2026-11-01T01:00-0400", 1, 100), ("2026-11-01T01:00-0500", 2, 300),
        ("2026-11-01T03:00-0500", 4, 200)]
    days = activity(inst, "U", "day", NEW_YORK)
    assert [(r["period"], r["trades"], r["vwap"]) for r in days] == [("2026-11-01", 3, 1_500 // 7)]

