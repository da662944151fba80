"""Replay's times in a zone with daylight saving: periods and chart axes (`replay.comparables`, `replay.chart`)."""

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


def test_a_charts_time_axis_runs_forward_when_the_clocks_turn_back():
    """Place points on the axis in time order and label them in the viewer's zone."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from replay.chart import _time_axis, _when
    moments = (EDT_0130, EDT_0130 + 25 * 60 * NS, EST_0130 - 15 * 60 * NS, EST_0130)
    xs = [mdates.date2num(_when(ts)) for ts in moments]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    fig, ax = plt.subplots()
    try:
        _time_axis(ax.xaxis, NEW_YORK)
        label = ax.xaxis.get_major_formatter()
        assert [label(x) for x in xs] == ["11-01 01:30", "11-01 01:55", "11-01 01:15",
                                          "11-01 01:30"]
    finally:
        plt.close(fig)
