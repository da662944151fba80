"""Buyer's premium and seller commission, in basis points, in integers.

Rates are basis points of the hammer price (1 bp = 0.01 %; 1,000 bp = 10 %,
OTBA's live-auction buyer's premium; 1,500 bp = 15 %, its seller commission).
Rounding rule: each fee is rounded half up to the minor unit,
``fee = (hammer * bp + 5_000) // 10_000``; the buyer owes
``total = hammer + premium`` and the seller receives ``net = hammer -
commission``. The venue keeps ``premium + commission``, so
``total - net == premium + commission`` exactly. All O(1).
"""

from __future__ import annotations

import msgspec

BP_ONE = 10_000  # basis points in 100 %


class Fees(msgspec.Struct, frozen=True, kw_only=True):
    hammer: int
    premium: int
    total: int
    commission: int
    net: int


def fee(amount: int, bp: int) -> int:
    """Return ``bp`` basis points of ``amount``, rounded half up to the minor unit."""
    return (amount * bp + BP_ONE // 2) // BP_ONE


def total_due(amount: int, premium_bp: int) -> int:
    """Return what a buyer owes for a hammer price of ``amount``: the price plus the premium."""
    return amount + fee(amount, premium_bp)


def compute(hammer: int, premium_bp: int, commission_bp: int) -> Fees:
    """Return the award's amounts for a hammer price."""
    premium = fee(hammer, premium_bp)
    commission = fee(hammer, commission_bp)
    return Fees(hammer=hammer, premium=premium, total=hammer + premium,
                commission=commission, net=hammer - commission)
