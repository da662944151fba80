"""The operator's console helpers: command files and human times.

A command file is TOML or JSON in the engine's own schema: a list of command
maps, each with its ``type``::

    # lots.toml
    [[command]]
    type = "CreateSession"
    session = "S1"
    name = "Spring sale"

    [[command]]
    type = "CreateLot"
    serial = "OT-001"
    session = "S1"
    seller = 7
    reserve = 5000000
    terms = { title = "Printing portfolio", currency = "USD", starting_bid = 3000000,
              opens_at = "now", closes_at = "+10m" }

JSON: a list of such maps, or ``{"command": [...]}``. Time fields may be
given as "now", "+90s", "+10m", "+2h", "+3d" (from the moment the file is
sent) or an ISO 8601 date-time; duration fields as "30s", "5m", "2h", "1d".
Money stays an integer of minor units.
"""

from __future__ import annotations

import datetime
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from exchange.commands import AnyCommand

TIME_FIELDS = frozenset({"opens_at", "closes_at", "hard_end", "starts_at", "ends_at",
                         "expires", "priority_date", "expiry_date"})
DURATION_FIELDS = frozenset({"soft_window", "soft_extend", "dutch_interval", "choice_window",
                             "negotiation_window"})
_UNITS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")


def parse_duration(text: str) -> int:
    """'90s' -> 90_000_000_000 ns."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 2h or 1d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str, now: int) -> int:
    """'now', '+10m' or an ISO 8601 date-time (UTC if no zone) -> int ns UTC."""
    text = text.strip()
    if text == "now":
        return now
    if text.startswith("+"):
        return now + parse_duration(text[1:])
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def resolve_times(value: Any, now: int) -> Any:
    """Replace human times and durations in a decoded command tree by ns ints."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(item, str) and key in TIME_FIELDS:
                out[key] = parse_time(item, now)
            elif isinstance(item, str) and key in DURATION_FIELDS:
                out[key] = parse_duration(item)
            else:
                out[key] = resolve_times(item, now)
        return out
    if isinstance(value, list):
        return [resolve_times(item, now) for item in value]
    return value


def load_commands(path: str | Path, now: int) -> list[Any]:
    """Read a TOML or JSON command file into engine commands (strictly typed)."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".toml":
        raw: Any = tomllib.loads(text)
    else:
        raw = json.loads(text)
    if isinstance(raw, dict):
        if "type" in raw:                         # one command alone
            raw = [raw]
        else:
            raw = raw.get("command", raw.get("commands"))
            if raw is None:
                raise ValueError(f"{path}: expected one command (with its \"type\"), a list "
                                 f"of commands, or a list under \"command\"")
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a list of commands")
    commands = []
    for index, item in enumerate(raw, 1):
        try:
            commands.append(msgspec.convert(resolve_times(item, now), AnyCommand))
        except (msgspec.ValidationError, ValueError) as exc:
            raise ValueError(f"{path}: command {index}: {exc}") from None
    return commands
