"""The results table of a session: sold, passed, sold in negotiation.

One row per lot in catalogue order: its outcome, how it sold (auction, Ask,
negotiated, book, re-award), the buyer's paddle, the hammer price, the
buyer's premium, the total due from the buyer, the seller's commission and
the net to the seller, as `LotAwarded` published them, with the display
currency beside them when the lot had one. Then a total line per currency.
An operator also sees the buyer and seller behind the paddles. O(journal).
"""

from __future__ import annotations

from typing import Any

from replay.access import PUBLIC, Viewer
from replay.catalogue import Catalogue
from replay.source import ReplayError, Source

COLUMNS = ["session", "serial", "title", "mechanism", "outcome", "how", "paddle", "currency",
           "hammer", "premium", "total", "commission", "net", "display_currency",
           "display_hammer", "display_total", "reason", "bids"]
OPERATOR_COLUMNS = ["buyer", "seller"]
MONEY = ("hammer", "premium", "total", "commission", "net", "display_hammer", "display_total")


def results(source: Source, viewer: Viewer = PUBLIC, session: str = "") -> tuple[list[str], list[dict[str, Any]]]:
    """Return the columns and rows of the results table (lots, then totals);
    refuse a session the journal does not hold."""
    cat = Catalogue(viewer).fold_all(source.entries(label="results"))
    if session and session not in cat.sessions:
        raise ReplayError(f"no session {session!r} in the journal")
    return table(cat, session)


def table(cat: Catalogue, session: str = "") -> tuple[list[str], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    totals: dict[str, dict[str, Any]] = {}
    for info in cat.lots.values():
        if session and info.session != session:
            continue
        if info.terms is None:          # never reached the public catalogue
            continue
        award = info.award
        row: dict[str, Any] = dict(session=info.session, serial=info.serial, title=info.title,
                                   mechanism=info.mechanism, outcome=info.outcome,
                                   currency=info.currency, bids=info.bids)
        if award is not None:
            row.update(how=award.how, paddle=award.paddle, hammer=award.hammer,
                       premium=award.premium, total=award.total, commission=award.commission,
                       net=award.net, display_currency=award.display_currency or None,
                       display_hammer=award.display_hammer if award.display_currency else None,
                       display_total=award.display_total if award.display_currency else None)
            total = totals.setdefault(info.currency, dict(sold=0, hammer=0, premium=0, total=0,
                                                          commission=0, net=0))
            total["sold"] += 1
            for key in ("hammer", "premium", "total", "commission", "net"):
                total[key] += getattr(award, key)
        if info.passes:
            row["reason"] = info.passes[-1][1].reason
        if info.withdrawn is not None:
            row["reason"] = info.withdrawn.reason
        if cat.viewer.operator:
            sale = info.sale
            if sale is not None:
                row["buyer"] = _name(cat, sale.buyer)
                row["seller"] = _name(cat, sale.seller)
            elif info.seller:
                row["seller"] = _name(cat, info.seller)
        rows.append(row)
    for currency, total in totals.items():
        rows.append(dict(serial="TOTAL", title=f"{total['sold']} sold", currency=currency,
                         hammer=total["hammer"], premium=total["premium"], total=total["total"],
                         commission=total["commission"], net=total["net"]))
    columns = COLUMNS + (OPERATOR_COLUMNS if cat.viewer.operator else [])
    return columns, rows


def _name(cat: Catalogue, party: int) -> str:
    registered = cat.parties.get(party)
    return f"{registered.name} (party {party})" if registered is not None else f"party {party}"
