"""Structured logs for the gateway: JSON lines when stderr is not a terminal,
readable columns when it is. One line per connection event and per refused
message; never one per accepted order."""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False


class _Stderr:
    """Write to whatever ``sys.stderr`` is at the time (test capture friendly)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(*, json_lines: bool | None = None, level: str = "info") -> None:
    """Configure structlog once for the process (idempotent)."""
    global _configured
    if _configured:
        return
    if json_lines is None:
        json_lines = not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    renderer = (structlog.processors.JSONRenderer() if json_lines
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    _configured = True


def get(name: str = "lotex.gateway", **bound):
    """Return a bound logger (configuring defaults if nobody did)."""
    configure()
    return structlog.get_logger(name).bind(**bound)


class LogBudget:
    """At most ``per_window`` log lines per key in each window of
    ``window_ns``: a peer that repeats itself (refused messages, failed
    handshakes, connections opened and dropped) cannot fill the disk."""

    def __init__(self, per_window: int = 100, window_ns: int = 10 * 10**9) -> None:
        self.per_window = per_window
        self.window_ns = window_ns
        self.windows: dict[object, list[int]] = {}    # key -> [window start, lines asked]

    def allow(self, key: object, now: int) -> tuple[bool, int]:
        """Count a line for ``key`` at ``now`` (monotonic ns); return whether
        to write it, and how many lines the key's last window left unwritten
        (non-zero once, when a new window opens: say so in a line)."""
        window = self.windows.get(key)
        unwritten = 0
        if window is None or now - window[0] >= self.window_ns:
            if window is not None and window[1] > self.per_window:
                unwritten = window[1] - self.per_window
            if len(self.windows) >= 4096:              # keys of long-gone peers
                self.windows.clear()
            window = self.windows[key] = [now, 0]
        window[1] += 1
        return window[1] <= self.per_window, unwritten
