"""Reason codes for refused commands, each with a sentence for people.

A handler raises `Reject` before it changes any state; the engine turns it
into a `CommandRejected` event for the sender. Codes are stable API: clients
switch on them, so add new ones but never rename one.
"""

from __future__ import annotations

# Largest amount, quantity or time the engine accepts: 10**15 minor units is a
# quadrillion cents, far above any patent deal, and keeps sums of thousands of
# such numbers inside an int64 for clients; a product of two (an amount at a
# display rate) is not, hence `MAX_DISPLAY`.
MAX_INT = 10**15
MAX_TIME = 2**63 - 1
# Longest duration the engine accepts (ten years, in ns): a settlement term,
# and since rules 6 a lot's windows (negotiation, choice, soft close, Dutch
# interval), which before were held to `MAX_INT` ns (about 11.6 days).
MAX_DURATION = 3_650 * 86_400 * 10**9
# Largest amount an event's ``display_*`` field carries (rules 5): the largest
# value a signed 64-bit integer holds, what the journal's MessagePack and the
# analyst store's SQLite keep. An amount converted at a display rate above it
# is not given, as when no rate is set.
MAX_DISPLAY = 2**63 - 1
# Longest text and longest list in any field of a command (but the hot ones,
# whose strings are ids looked up): a party's name, a lot's title or patents.
# Unbounded, 1,000 parties with 60 KB names held 57 MB of state for good.
MAX_TEXT = 1000
MAX_REASON = 200     # an operator's published reason (a halt, an extension)
MAX_ITEMS = 10_000

REASONS: dict[str, str] = {
    # generic input
    "non_positive": "the amount or quantity must be greater than zero",
    "negative": "the value must not be negative",
    "out_of_range": "an integer is larger than the engine accepts",
    "bad_field": "a field has a value the engine does not accept",
    "too_long": "a text or a list of the command is longer than the engine keeps",
    "not_permitted": "the sender's role may not send this command",
    "unknown_command": "the engine does not know this command",
    # participants
    "unknown_party": "no such party",
    "party_not_approved": "the party has not passed the credit review",
    "party_frozen": "the party's credit is frozen",
    "not_your_party": "the party is not one of the sender's clients",
    "unknown_session": "no such session",
    "session_exists": "a session with this id exists already",
    "session_closed": "the session is closed",
    "paddle_exists": "the party holds a paddle in this session already",
    "unknown_paddle": "no such paddle in this session",
    "not_your_paddle": "the paddle belongs to another broker's client",
    "over_credit_limit": "the commitment would exceed the bidder's credit limit",
    "wrong_currency": "the amount's currency is not the lot's currency",
    "bad_rate": "a display rate must have a positive numerator and denominator",
    "open_commitments": "the party has commitments in its credit's currency, which cannot "
                        "change until they are released",
}


class Reject(Exception):
    """Refuse the command at hand with a reason code and a sentence."""

    __slots__ = ("code", "text")

    def __init__(self, code: str, text: str | None = None) -> None:
        if code not in REASONS:
            raise KeyError(f"unregistered reason code {code!r}")
        self.code = code
        self.text = text if text is not None else REASONS[code]
        super().__init__(code, self.text)


def check_sizes(value: object, path: str = "") -> None:
    """Refuse ``too_long`` a command (or a struct in it) with a text over
    `MAX_TEXT` characters or a list over `MAX_ITEMS` items. O(fields)."""
    for name in value.__struct_fields__:            # type: ignore[attr-defined]
        field = getattr(value, name)
        kind = type(field)
        if kind is str:
            if len(field) > MAX_TEXT:
                raise Reject("too_long", f"{path}{name} has {len(field)} characters, more "
                                         f"than the {MAX_TEXT} the engine keeps")
        elif kind is list or kind is tuple:
            if len(field) > MAX_ITEMS:
                raise Reject("too_long", f"{path}{name} has {len(field)} items, more than "
                                         f"the {MAX_ITEMS} the engine keeps")
            for i, item in enumerate(field):
                if type(item) is str:
                    if len(item) > MAX_TEXT:
                        raise Reject("too_long", f"{path}{name}[{i}] has {len(item)} "
                                                 f"characters, more than {MAX_TEXT}")
                elif hasattr(item, "__struct_fields__"):
                    check_sizes(item, f"{path}{name}[{i}].")
        elif hasattr(field, "__struct_fields__"):
            check_sizes(field, f"{path}{name}.")


def published_reason(text: str, what: str) -> str:
    """Return an operator's reason to publish (a halt, an extension), stripped;
    refuse an empty one (`bad_field`) or one over `MAX_REASON` (`too_long`)."""
    reason = text.strip()
    if not reason:
        raise Reject("bad_field", f"{what} needs a reason, which is published")
    if len(reason) > MAX_REASON:
        raise Reject("too_long", f"the reason has {len(reason)} characters, more than "
                                 f"{MAX_REASON}")
    return reason


def register_reasons(reasons: dict[str, str]) -> None:
    """Add reason codes of a mechanism module; a code may be registered once."""
    for code, text in reasons.items():
        if code in REASONS and REASONS[code] != text:
            raise KeyError(f"reason code {code!r} registered twice")
        REASONS[code] = text


def above_zero(value: int, what: str = "amount") -> int:
    """Return `value` if it is greater than zero, else reject (no upper bound)."""
    if value <= 0:
        raise Reject("non_positive", f"{what} must be greater than zero, got {value}")
    return value


def positive(value: int, what: str = "amount") -> int:
    """Return `value` if it is a positive engine integer, else reject."""
    above_zero(value, what)
    if value > MAX_INT:
        raise Reject("out_of_range", f"{what} {value} is above the maximum {MAX_INT}")
    return value


def non_negative(value: int, what: str = "value") -> int:
    """Return `value` if it is zero or a positive engine integer, else reject."""
    if value < 0:
        raise Reject("negative", f"{what} must not be negative, got {value}")
    if value > MAX_INT:
        raise Reject("out_of_range", f"{what} {value} is above the maximum {MAX_INT}")
    return value


def a_duration(value: int, what: str = "duration") -> int:
    """Return `value` if it is a duration from 0 to `MAX_DURATION` ns, else reject."""
    if value < 0:
        raise Reject("negative", f"{what} must not be negative, got {value}")
    if value > MAX_DURATION:
        raise Reject("out_of_range", f"{what} {value} ns is above the maximum {MAX_DURATION}")
    return value


def a_time(value: int, what: str = "time") -> int:
    """Return `value` if it is a valid ns-UTC timestamp, else reject."""
    if value < 0 or value > MAX_TIME:
        raise Reject("out_of_range", f"{what} {value} is not a valid ns UTC timestamp")
    return value
