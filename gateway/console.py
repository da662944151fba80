"""The operator's console helpers: command files and human times.

A command file is TOML (named ``*.toml``, in any case) or JSON, UTF-8 (a BOM
is allowed), in the engine's own schema: a list of command maps, each with
its ``type``::

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

JSON: a list of such maps, or ``{"command": [...]}`` (or ``"commands"``,
and no other key). Time fields may be
given as "now", "+90s", "+10m", "+2h", "+3d" (from the moment the file is
sent), an ISO 8601 date-time or ns since the epoch (all digits); duration
fields as "30s", "5m", "2h", "1d".
Money stays an integer of minor units.

Party and paddle numbers are the exchange's to give, so a file may name
them: ``as = "acme"`` on a ``RegisterParty`` names the party it registers,
on an ``IssuePaddle`` the paddle it issues, and a later ``party``,
``seller``, ``buyer`` or ``paddle`` field of the same sending may say
``"@acme"``::

    [[command]]
    type = "RegisterParty"
    name = "Acme Research"
    broker = "b1"
    as = "acme"

    [[command]]
    type = "IssuePaddle"
    session = "S1"
    party = "@acme"
    as = "acme-paddle"
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from exchange.commands import AnyCommand

TIME_FIELDS = frozenset({"opens_at", "closes_at", "hard_end", "starts_at", "ends_at",
                         "expires", "priority_date", "expiry_date", "due_at"})
DURATION_FIELDS = frozenset({"soft_window", "soft_extend", "dutch_interval", "choice_window",
                             "negotiation_window", "payment_term", "reaward_window",
                             "publicity_period"})
_UNITS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")


# a nanosecond time since the epoch in a text: 19 digits, from 2017 on (amounts
# stop at 16 digits, ids and sequence numbers long before)
_NS_TIME = re.compile(r"(?<![\w.\-])(?:1[5-9]\d{17}|[2-8]\d{18}|9[01]\d{17})(?![\w\-])")


def humane_times(text: str) -> str:
    """Show the nanosecond times in ``text`` (reject texts, event fields) as
    UTC ISO 8601: 1764526800500000000 -> 2025-11-30T18:20:00.5Z."""
    return _NS_TIME.sub(lambda match: _iso(int(match.group(0))), text)


SHOWN_AS_TIMES = TIME_FIELDS | {"ts", "expires_at", "decision_by", "delivered_at",
                                "completed_at", "issued_at", "opened_at", "paid_at",
                                "received_at", "sold_at", "negotiation_ends", "until", "since"}
"""Fields of commands and events that hold a nanosecond time."""


def _iso(ns: int) -> str:
    moment = datetime.datetime.fromtimestamp(ns // 10**9, datetime.timezone.utc)
    fraction = f".{ns % 10**9:09d}".rstrip("0") if ns % 10**9 else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def field_text(name: str, value: Any) -> str:
    """Show one field: a time field's nanoseconds as UTC ISO 8601 (when in
    the range of times), a struct as Type(field=value, ...), a list as
    [...]; anything else as it is, so an id or a name that holds a long
    number is never taken for a time."""
    if isinstance(value, msgspec.Struct):
        return struct_text(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(field_text(name, item) for item in value) + "]"
    if (name in SHOWN_AS_TIMES and type(value) is int
            and _NS_TIME.fullmatch(str(value)) is not None):
        return _iso(value)
    return str(value)


def struct_text(value: msgspec.Struct, skip: tuple[str, ...] = ("to",)) -> str:
    """Show an event or a command: Type(field=value, ...) by `field_text`."""
    fields = ", ".join(f"{name}={field_text(name, getattr(value, name))}"
                       for name in value.__struct_fields__ if name not in skip)
    return f"{type(value).__name__}({fields})"


def parse_duration(text: str) -> int:
    """'90s' -> 90_000_000_000 ns."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 2h or 1d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str, now: int) -> int:
    """'now', '+10m', an ISO 8601 date-time (UTC if no zone) or ns since the
    epoch (all digits: never an ISO basic date) -> int ns UTC."""
    text = text.strip()
    if text == "now":
        return now
    if text.startswith("+"):
        return now + parse_duration(text[1:])
    if text.isascii() and text.isdigit():
        return int(text)
    fraction = 0
    match = _FRACTION.search(text)
    if match:                                    # every digit, to the ns, exactly
        if len(match.group(1)) > 9:
            raise ValueError(f"{text!r} has more than nine decimals of a second")
        fraction = int(match.group(1).ljust(9, "0"))
        text = text[:match.start()] + text[match.end():]
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000 + fraction


_FRACTION = re.compile(r"(?:(?<=\d\d:\d\d:\d\d)|(?<=[Tt ]\d{6}))[.,](\d+)")


def resolve_times(value: Any, now: int, where: str = "$") -> Any:
    """Replace human times and durations in a decoded command tree by ns ints;
    a bad one's ValueError names its field as msgspec does (at `$.terms.closes_at`)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            try:
                if isinstance(item, str) and key in TIME_FIELDS:
                    out[key] = parse_time(item, now)
                    continue
                if isinstance(item, str) and key in DURATION_FIELDS:
                    out[key] = parse_duration(item)
                    continue
            except ValueError as exc:
                raise ValueError(f"{exc} - at `{where}.{key}`") from None
            out[key] = resolve_times(item, now, f"{where}.{key}")
        return out
    if isinstance(value, list):
        return [resolve_times(item, now, f"{where}[{index}]")
                for index, item in enumerate(value)]
    return value


REFERENCE_FIELDS = frozenset({"party", "seller", "buyer", "paddle"})
NAMES_WHAT = {"RegisterParty": ("PartyRegistered", "party"),
              "IssuePaddle": ("PaddleIssued", "paddle")}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Step:
    """One command of a file: its fields, the name it gives (``as``) and the
    names it uses (``"@name"`` in a party or paddle field)."""

    where: str
    fields: dict[str, Any]
    preview: Any                                 # the command, each use as 0: type-checked
    key: str                                     # digest of the command as written
    name: str = ""
    uses: tuple[tuple[str, str], ...] = ()      # (field, name)
    relative: bool = False                       # a time given from now ("now", "+10m")

    @classmethod
    def plain(cls, cmd: Any) -> "Step":
        return cls(where="", fields={"type": type(cmd).__name__}, preview=cmd,
                   key=hashlib.sha256(msgspec.json.encode(cmd)).hexdigest())

    def command(self, names: dict[str, int]) -> Any:
        """Return the command with each ``@name`` replaced by its number."""
        if not self.uses:
            return self.preview
        fields = dict(self.fields)
        for field, name in self.uses:
            if name not in names:
                raise ValueError(f"{self.where}: @{name} stands for nothing: the command "
                                 f"that names it was not accepted")
            fields[field] = names[name]
        return msgspec.convert(fields, AnyCommand)

    def client_id(self, cid: str, names: dict[str, int]) -> str:
        """Return ``cid`` (of `client_ids`) with the numbers this step's names
        stand for in its digest: the same line for another party is another
        command."""
        if not self.uses or not cid.startswith("cmd-"):
            return cid
        numbers = json.dumps([[field, names[name]] for field, name in self.uses])
        digest = hashlib.sha256(f"{self.key} {numbers}".encode()).hexdigest()
        return f"cmd-{digest[:32]}-{cid.rsplit('-', 1)[1]}"

    def named(self, events: list[Any]) -> int:
        """Return the number this step's command created, from its result's events."""
        event_type, field = NAMES_WHAT[self.fields["type"]]
        for event in events:
            if type(event).__name__ == event_type:
                return getattr(event, field)
        raise ValueError(f"{self.where}: no {event_type} in the result to name {self.name!r}")


def load_steps(path: str | Path, now: int, names: set[str] | None = None) -> list[Step]:
    """Read a TOML or JSON command file into steps, every command type-checked
    and every ``@name`` given by an earlier command (of this file or, in
    ``names``, of files read before it; the file's own names are added)."""
    names = set() if names is None else names
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")   # a BOM (Notepad) is no statement
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc}): save it as UTF-8") from None
    try:
        raw: Any = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except ValueError as exc:                     # TOMLDecodeError and JSONDecodeError
        raise ValueError(f"{path}: {exc}") from None
    if isinstance(raw, dict):
        if "type" in raw:                         # one command alone
            raw = [raw]
        else:
            lists = [key for key in ("command", "commands") if key in raw]
            others = sorted(key for key in raw if key not in ("command", "commands"))
            if len(lists) > 1:
                raise ValueError(f"{path}: give one list of commands, under \"command\" or "
                                 f"\"commands\", not both")
            if others and lists:
                raise ValueError(f"{path}: unknown top-level key"
                                 f"{'s' if len(others) > 1 else ''} "
                                 f"{', '.join(map(repr, others))}: a file holds its list of "
                                 f"commands (under \"{lists[0]}\") and nothing else")
            if not lists:
                raise ValueError(f"{path}: expected one command (with its \"type\"), a list "
                                 f"of commands, or a list under \"command\"")
            raw = raw[lists[0]]
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a list of commands")
    steps = []
    for index, item in enumerate(raw, 1):
        where = f"{path}: command {index}"
        try:
            steps.append(_step(where, item, now, names))
        except (msgspec.ValidationError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    return steps


def _step(where: str, item: Any, now: int, names: set[str]) -> Step:
    if not isinstance(item, dict):
        raise ValueError("expected a map of fields with its \"type\"")
    key = hashlib.sha256(json.dumps(item, sort_keys=True, default=str).encode()).hexdigest()
    fields = resolve_times(item, now)
    named = "as" in fields
    name = fields.pop("as", "")
    uses = []
    for field in REFERENCE_FIELDS:
        value = fields.get(field)
        if isinstance(value, str) and value.startswith("@"):
            if value[1:] not in names:
                raise ValueError(f"{value} is not named by an earlier command (as = ...)")
            uses.append((field, value[1:]))
    preview = msgspec.convert({**fields, **{field: 0 for field, _ in uses}}, AnyCommand)
    if named:
        if type(preview).__name__ not in NAMES_WHAT:
            raise ValueError(f"only {' and '.join(NAMES_WHAT)} may name what they create "
                             f"(as = {name!r})")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"as = {name!r}: a name is 1-64 letters, digits, '_', '.' or '-'")
        if name in names:
            raise ValueError(f"as = {name!r}: named twice")
        names.add(name)
    return Step(where=where, fields=fields, preview=preview, key=key, name=name,
                uses=tuple(sorted(uses)), relative=_relative(item))


def _relative(value: Any) -> bool:
    """Tell whether a command tree gives a time from now ("now", "+10m")."""
    if isinstance(value, dict):
        return any((isinstance(item, str) and key in TIME_FIELDS
                    and (item.strip() == "now" or item.strip().startswith("+")))
                   or _relative(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_relative(item) for item in value)
    return False


def client_ids(steps: list[Step]) -> list[str]:
    """Give each step a client id that is a function of the command as
    written (and how many identical ones came before it in this sending), so
    that sending a file again, even after mending one of its commands, acts
    only on the commands not sent before. A step that uses names takes the
    numbers they stand for into its id when sent (`Step.client_id`)."""
    seen: dict[str, int] = {}
    ids = []
    for step in steps:
        seen[step.key] = count = seen.get(step.key, 0) + 1
        ids.append(f"cmd-{step.key[:32]}-{count}")
    return ids


def inline_step(type_name: str, pairs: list[str], now: int) -> Step:
    """Make a step of a command given on the command line as ``TYPE`` and
    ``field=value`` pairs; a value is read as JSON when it parses (numbers,
    true, false, lists, quoted strings), else taken as text; human times and
    durations as in files."""
    item: dict[str, Any] = {"type": type_name}
    for pair in pairs:
        field, sep, text = pair.partition("=")
        if not sep or not field:
            raise ValueError(f"{pair!r}: give each field as name=value")
        try:
            item[field] = json.loads(text)
        except ValueError:
            item[field] = text
    try:
        return _step(f"command {type_name}", item, now, set())
    except (msgspec.ValidationError, ValueError) as exc:
        raise ValueError(f"{type_name}: {exc}") from None


def load_commands(path: str | Path, now: int) -> list[Any]:
    """Read a TOML or JSON command file that names nothing into engine commands."""
    steps = load_steps(path, now)
    if any(step.uses for step in steps):
        raise ValueError(f"{path}: uses names (@...): send it with `lotex op send`")
    return [step.preview for step in steps]
