"""lotex's engine: a pure, deterministic core. ``state + envelope -> events``."""

from exchange.engine import Engine, State  # noqa: F401
from exchange import participants  # noqa: F401  (registers handlers)
from exchange import lots, english, sealed, dutch, reverse  # noqa: F401,E401  (auctions)
from exchange import dataroom  # noqa: F401  (lots' data rooms and NDAs)
from exchange import pricing  # noqa: F401  (expert panels' price ranges)
from exchange import market  # noqa: F401  (continuous book and call auction)
from exchange import liquidity  # noqa: F401  (liquidity providers' obligations)
from exchange import settlement  # noqa: F401  (escrow, default, certificates)

__all__ = ["Engine", "State"]
