"""The demo session's catalogue: 1,070 patents in 45 lots across 12 fields.

Modelled on HP's 2017 sale through Ocean Tomo's Bid-Ask Market (see
DOMAIN.md): 1,070 patents cut into 45 lots of about 24 patents each across 12
technology fields. Patent numbers, titles and dates are synthetic but shaped
like real ones; the generator is seeded, so every run builds the same
catalogue.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FIELDS = (
    "printing", "computer systems", "imaging", "networking", "personal systems",
    "life sciences and microfluidics", "mobile phones and tablets", "communications",
    "projectors", "sensors and RFID", "photovoltaic substrates", "gaming",
)

TOPICS = {
    "printing": ("inkjet nozzle array", "thermal print head", "media transport", "ink supply"),
    "computer systems": ("memory controller", "thermal management", "server blade", "boot firmware"),
    "imaging": ("image sensor", "colour calibration", "scanner optics", "halftoning"),
    "networking": ("packet switch", "wireless access point", "network management", "VLAN tagging"),
    "personal systems": ("hinge mechanism", "battery charging", "keyboard backlight", "docking station"),
    "life sciences and microfluidics": ("droplet ejector", "microfluidic chip", "cell sorting", "assay cartridge"),
    "mobile phones and tablets": ("touch panel", "antenna switching", "power saving", "gesture input"),
    "communications": ("modem", "echo cancellation", "signal encoding", "channel estimation"),
    "projectors": ("light engine", "keystone correction", "lamp cooling", "colour wheel"),
    "sensors and RFID": ("RFID tag", "proximity sensor", "strain gauge", "inventory reader"),
    "photovoltaic substrates": ("thin-film substrate", "cell interconnect", "anti-reflective coating", "wafer texturing"),
    "gaming": ("game controller", "rendering pipeline", "latency compensation", "haptic feedback"),
}

JURISDICTIONS = ("US", "US", "US", "CN", "EP", "JP")

NS_PER_DAY = 86_400 * 10**9
EPOCH_2000 = 946_684_800 * 10**9


@dataclass
class DemoPatent:
    number: str
    title: str
    family_id: str
    jurisdiction: str
    status: str
    field: str
    priority_date: int
    expiry_date: int


@dataclass
class DemoLot:
    serial: str
    title: str
    field: str
    patents: list[DemoPatent] = field(default_factory=list)


def lot_sizes(total: int = 1070, lots: int = 45) -> list[int]:
    """Split ``total`` patents into ``lots`` lots as evenly as possible."""
    base, extra = divmod(total, lots)
    return [base + (1 if i < extra else 0) for i in range(lots)]


def build_catalogue(seed: int = 2017) -> list[DemoLot]:
    """Return the 45 demo lots, their fields cycling through the 12 fields."""
    rng = random.Random(seed)
    catalogue: list[DemoLot] = []
    next_number = {"US": 7_000_000, "CN": 101_000_000, "EP": 1_500_000, "JP": 4_000_000}
    family = 0
    for index, size in enumerate(lot_sizes()):
        tech = FIELDS[index % len(FIELDS)]
        lot = DemoLot(serial=f"OT-2017-{index + 1:03d}",
                      title=f"{tech.capitalize()} portfolio {index // len(FIELDS) + 1}",
                      field=tech)
        while len(lot.patents) < size:
            family += 1
            family_id = f"FAM-{family:05d}"
            members = min(size - len(lot.patents), rng.randint(1, 4))
            priority_days = rng.randint(0, 15 * 365)
            topic = rng.choice(TOPICS[tech])
            for member in range(members):
                jurisdiction = JURISDICTIONS[(family + member) % len(JURISDICTIONS)]
                next_number[jurisdiction] += rng.randint(1, 5000)
                number = f"{jurisdiction}{next_number[jurisdiction]}"
                status = "pending" if rng.random() < 0.12 else "granted"
                priority = EPOCH_2000 + priority_days * NS_PER_DAY
                lot.patents.append(DemoPatent(
                    number=number, title=f"{topic.capitalize()} ({jurisdiction})",
                    family_id=family_id, jurisdiction=jurisdiction, status=status, field=tech,
                    priority_date=priority, expiry_date=priority + 20 * 365 * NS_PER_DAY))
        catalogue.append(lot)
    return catalogue
