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
