"""Where replay reads from, and the moments and money it prints.

A replay DIR is a lotex data directory (DIR/journal/, DIR/snapshots/,
DIR/keys/) or a bare journal directory. `Source` finds the parts, rebuilds
the engine through the one recovery path (`recorder.recovery.rebuild`) and
iterates the journal's entries, with a progress bar on a terminal.

Times are int ns UTC everywhere; `parse_time` reads what a person types
(ISO 8601, a date, or int ns) and `format_time` prints in the viewer's zone
(`zoneinfo`). Money is int minor units; `money` prints it with two decimals
(every currency lotex displays has two decimal places of minor units, as
`exchange.participants.display_amount` assumes).
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchange.codec import Entry, decode_entry
from exchange.commands import Tick
from exchange.engine import Engine
from exchange.errors import MAX_TIME
from recorder import layout
from recorder.format import KIND_ENTRY, Record
from recorder.journal import Journal
from recorder.recovery import OnEntry, rebuild
from replay.progress import CountingJournal, Progress

NS = 10**9
UTC = datetime.timezone.utc


class ReplayError(Exception):
    """A replay request that cannot be answered (no journal, unknown lot, bad time)."""


@dataclass
class Source:
    """One recorded exchange: its journal, snapshots and key store (if any)."""

    root: Path
    journal_dir: Path
    snapshot_dir: Path | None
    keys_dir: Path | None

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Source":
        """Accept a data directory or a journal directory."""
        root = Path(path)
        journal_dir = layout.find_journal(root)
        if not layout.holds_journal(journal_dir):
            raise ReplayError(f"no lotex journal in {root}")
        data_dir = journal_dir.parent if journal_dir != root else None
        snapshots = layout.snapshot_dir(data_dir) if data_dir is not None else None
        keys = data_dir / "keys" if data_dir is not None and (data_dir / "keys").is_dir() else None
        return cls(root=root, journal_dir=journal_dir,
                   snapshot_dir=snapshots if snapshots is not None and snapshots.is_dir() else None,
                   keys_dir=keys)

    def journal(self) -> Journal:
        return Journal.open_readonly(self.journal_dir)

    @property
    def last_seq(self) -> int:
        return self.journal().last_seq

    @property
    def last_ts(self) -> int | None:
        """The time of the journal's last entry (None for an empty journal)."""
        journal = self.journal()
        last = None
        for rec in journal.read(max(1, journal.last_seq)):
            if rec.kind == KIND_ENTRY:
                last = rec.ts
        return last

    def records(self, from_seq: int = 1, *, label: str = "reading", verify_chain: bool = False,
                journal: Journal | None = None, upto_seq: int = 0) -> Iterator[Record]:
        """Every record from ``from_seq`` on, with a progress bar on a terminal
        counting to ``upto_seq`` (0: the end), where the caller means to stop."""
        journal = journal or self.journal()
        last = min(upto_seq, journal.last_seq) if upto_seq else journal.last_seq
        bar = Progress(label, max(0, last - from_seq + 1))
        try:
            for rec in journal.read(from_seq, verify_chain=verify_chain):
                yield rec
                bar.advance()
        finally:
            bar.close()

    def entries(self, from_seq: int = 1, *, label: str = "reading",
                upto_seq: int = 0) -> Iterator[tuple[Record, Entry]]:
        """Every ENTRY record decoded, in journal order. O(journal)."""
        for rec in self.records(from_seq, label=label, upto_seq=upto_seq):
            if rec.kind == KIND_ENTRY:
                yield rec, decode_entry(rec.payload)

    def rebuild(self, *, upto_seq: int | None = None, upto_ts: int | None = None,
                use_snapshot: bool = True, on_entry: OnEntry | None = None,
                label: str = "rebuilding") -> Engine:
        """The engine as of ``upto_seq`` / ``upto_ts`` through the one recovery path."""
        journal = CountingJournal(self.journal(), label, upto_seq=upto_seq, upto_ts=upto_ts)
        try:
            return rebuild(journal=journal, snapshot_dir=self.snapshot_dir, upto_seq=upto_seq,
                           upto_ts=upto_ts, use_snapshot=use_snapshot, on_entry=on_entry)
        finally:
            journal.finish()


def advance_clock(engine: Engine, ts: int, journal_end: int | None) -> list[Any]:
    """Fire what the engine had scheduled up to ``ts`` but never past
    ``journal_end`` (the journal's last entry), and return those events.

    A later journaled entry proves the clock passed ``ts``: it fired these
    timers first, so the state is the state *as of* ``ts``. Past the
    journal's end no clock command said anything, and nothing fires.
    Nothing is journaled."""
    if journal_end is None:
        return []
    ts = min(ts, journal_end)
    state = engine.state
    if ts <= state.now or not state.timers or state.timers[0][0] > ts:
        return []
    from exchange.commands import Envelope
    return engine.apply(Envelope(seq=state.last_seq + 1, ts=ts, actor="replay", role="system",
                                 cmd=Tick(), client_id=""))


# --------------------------------------------------------------------------
# moments
# --------------------------------------------------------------------------

def zone(name: str | None) -> datetime.tzinfo:
    """The viewer's time zone ("UTC" or an IANA name such as Asia/Shanghai)."""
    if name is None or name.strip().upper() == "UTC":
        return UTC
    if not name.strip():
        raise ReplayError("the time zone is empty; use UTC or an IANA name such as "
                          "Europe/Zurich or Asia/Shanghai")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):   # OSError: a folder, a long name
        shown = name if len(name) <= 40 else name[:36] + "..."
        raise ReplayError(f"unknown time zone {shown!r}; use an IANA name such as "
                          f"Europe/Zurich or Asia/Shanghai") from None


def parse_time(text: str, tz: datetime.tzinfo = UTC) -> int:
    """Return int ns UTC for an ISO 8601 time ("2026-03-02T01:30:00+08:00";
    without an offset it is in ``tz``), a date ("2026-03-02", midnight in
    ``tz``) or a plain integer of ns since the epoch. Exact: no floats; a
    fraction of a second (after "." or ",", as ISO 8601 allows) is kept to
    the ns, and refused beyond nine digits. A moment outside the engine's
    times (0 to `MAX_TIME` ns: 1970 to 2262) is refused."""
    text = given = text.strip()
    if _NS.fullmatch(text):
        return _in_range(int(text) if len(text) <= 20 else -1, text)
    fraction_ns = 0
    match = _FRACTION.search(text)
    if match:                                    # keep every digit, up to ns, exactly
        digits = match.group(1)
        if len(digits) > 9:
            raise ReplayError(f"{text!r} has more than nine decimals of a second")
        fraction_ns = int(digits.ljust(9, "0"))
        text = text[:match.start()] + text[match.end():]
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReplayError(f"cannot read the time {text!r}; give ISO 8601 "
                          f"(2026-03-02T09:30:00+08:00) or ns since the epoch") from None
    if moment.microsecond:                       # a fraction _FRACTION did not take
        raise ReplayError(f"cannot read the time {text!r}: give a fraction only on the "
                          f"seconds (2026-03-02T09:30:00.5)")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=UTC)   # timedelta: years 1 to 9999
    return _in_range((delta.days * 86_400 + delta.seconds) * NS + fraction_ns, given)


def _in_range(ns: int, text: str) -> int:
    """Return ``ns`` if the engine can hold it as a time, else refuse ``text``."""
    if not 0 <= ns <= MAX_TIME:
        shown = text if len(text) <= 40 else text[:36] + "..."
        raise ReplayError(f"the time {shown!r} is outside the times lotex records; give one "
                          f"from 1970-01-01T00:00:00Z to {format_time(MAX_TIME)} "
                          f"(0 to {MAX_TIME} ns)")
    return ns


_NS = re.compile(r"-?[0-9]+")
_FRACTION = re.compile(r"(?:(?<=\d\d:\d\d:\d\d)|(?<=[Tt ]\d{6}))[.,](\d+)")


def format_time(ts: int, tz: datetime.tzinfo = UTC) -> str:
    """ISO 8601 in ``tz`` to the second, with the offset (ns kept only if non-zero)."""
    seconds, ns = divmod(ts, NS)
    moment = datetime.datetime.fromtimestamp(seconds, tz)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if ns:
        text += f".{ns:09d}".rstrip("0")
    offset = moment.strftime("%z")
    return text + ("Z" if offset == "+0000" and tz is UTC else f"{offset[:3]}:{offset[3:]}")


def duration(ns: int) -> str:
    """600_000_000_000 -> "10 min"; 2_000_000_000 -> "2 s"; 5_400 s -> "1 h 30 min"."""
    if ns <= 0:
        return "0 s"
    seconds, rest = divmod(ns, NS)
    parts = []
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}")
    if seconds or rest:
        parts.append(f"{seconds}.{rest:09d}".rstrip("0").rstrip(".") + " s")
    return " ".join(parts)


def money(amount: int | None, currency: str = "") -> str:
    """1234567 -> "12,345.67" (with the currency code after it if given)."""
    if amount is None:
        return ""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    text = f"{sign}{whole:,}.{cents:02d}"
    return f"{text} {currency}" if currency else text


def currency_code(text: str) -> str:
    """Return ``text`` if it is a currency code of three capital letters, else refuse."""
    if not re.fullmatch(r"[A-Z]{3}", text):
        raise ReplayError(f"{text!r} is not a currency code; give three capital letters "
                          f"such as USD or CNY")
    return text


def display_amount(rates: dict[tuple[str, str], tuple[int, int]], amount: int, base: str,
                   quote: str) -> int | None:
    """``amount`` in ``quote`` at the display rate, the engine's rounding
    (`exchange.participants.display_amount`), or None without a rate."""
    from types import SimpleNamespace

    from exchange.participants import display_amount as engine_display
    return engine_display(SimpleNamespace(rates=rates), amount, base, quote)  # type: ignore[arg-type]
