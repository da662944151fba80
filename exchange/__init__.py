"""lotex's engine: a pure, deterministic core. ``state + envelope -> events``."""

from exchange.engine import Engine, State  # noqa: F401
from exchange import participants  # noqa: F401  (registers handlers)

__all__ = ["Engine", "State"]
