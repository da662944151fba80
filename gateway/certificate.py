"""Transaction and no-objection certificates, as JSON and as an HTML page,
checked against the journal's hash chain.

The engine issues a certificate as an event (`CertificateIssued`, public,
paddles only; `CertificateRecorded`, the operators' copy with identities)
that records the journal sequence number of the envelope it is part of. The
engine cannot know the chain hash (it is computed when the entry is
journaled), so this module adds it from the journal: the chain hash of the
record at that sequence number, SHA-256 over everything before it and the
entry itself, which holds the certificate. Anyone holding the journal and a
published head hash can check a certificate with `verify_certificate`: the
chain is intact from the start to the head, the record at ``seq`` has the
stated chain hash, and its entry carries exactly this certificate.

Since rules 5 a non-public agreement transfer's `CertificateIssued` is
private to its parties' brokers and the operators, as the rest of its
settlement is: it has no public copy. Its paddles-only copy is the
``parties`` copy (any certificate has one); the ``public`` copy is only ever
a certificate the engine published (`find_certificate` refuses the others,
`verify_certificate` fails a document that calls one public).

`write_certificate(data_dir, settlement, out)` writes ``OUT.json`` and
``OUT.html`` (a self-contained page: inline style, no scripts, no external
files; the operators' copy, which names the parties, and the parties' copy,
mode 0600). ``lotex op
certificate SETTLEMENT --out FILE`` calls it (see `add_op_parser`). Reading is O(journal): one pass with the chain verified.
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import msgspec

from exchange.codec import decode_entry
from exchange.events import CertificateIssued, CertificateRecorded
from recorder import layout
from recorder.format import KIND_ENTRY
from recorder.journal import Journal, JournalCorrupt

FORMAT = "lotex-certificate/1"
COPIES = {"public": CertificateIssued, "parties": CertificateIssued,
          "operator": CertificateRecorded}
"""Copies of a certificate by name: the event each is, "public" only a public one."""
_COPY_NAMES = {"public": "Public copy", "parties": "Copy for the parties, not public",
               "operator": "Operator copy"}
KINDS = ("transaction", "no_objection")
NS = 10**9


class CertificateNotFound(LookupError):
    """The journal holds no certificate of that settlement and kind."""


class Verification(NamedTuple):
    """What `verify_certificate` found: ``ok`` when ``problems`` is empty."""

    ok: bool
    problems: tuple[str, ...]
    seq: int
    chain_hash: str
    head_seq: int
    head_hash: str


# --------------------------------------------------------------------------
# finding a certificate in the journal
# --------------------------------------------------------------------------

def _records(journal_dir: str | os.PathLike) -> Iterator[Any]:
    journal = Journal.open_readonly(layout.find_journal(journal_dir))
    return journal.read(1, verify_chain=True)


def find_certificate(journal_dir: str | os.PathLike, settlement: int, *,
                     kind: str = "transaction", copy: str = "public") -> dict[str, Any]:
    """Return the certificate document of ``settlement`` from the journal at
    ``journal_dir`` (a data or journal directory): the certificate's fields
    and, under "journal", its seq, the chain hash there and the journal's
    head. The ``public`` copy is of a public certificate only: that of a
    non-public agreement transfer (rules 5) is refused, naming the copies it
    has. Raises `CertificateNotFound`, or `JournalCorrupt` if the chain is
    broken. O(journal)."""
    if copy not in COPIES:
        raise ValueError(f"copy must be one of {sorted(COPIES)}, not {copy!r}")
    wanted = COPIES[copy]
    found: dict[str, Any] | None = None
    private = False                # a certificate of it that is not public
    head_seq, head = 0, b""
    for rec in _records(journal_dir):
        head_seq, head = rec.seq, rec.chain
        if found is not None or rec.kind != KIND_ENTRY:
            continue
        for event in decode_entry(rec.payload).events:
            if type(event) is wanted and event.settlement == settlement and event.kind == kind:
                if not _copy_of(copy, event):
                    private = True
                    continue
                found = _document(event, copy, rec.seq, rec.chain.hex())
                break
    if found is None:
        if private:
            raise CertificateNotFound(
                f"the {kind} certificate of settlement {settlement} is not public (a non-public "
                f"agreement transfer): write --copy parties (paddles only, for the parties' "
                f"brokers) or --copy operator")
        raise CertificateNotFound(f"no {kind} certificate of settlement {settlement} in the journal")
    found["journal"]["head_seq"] = head_seq
    found["journal"]["head_hash"] = head.hex()
    return found


def _copy_of(copy: str, event: Any) -> bool:
    """Whether ``event`` (of the copy's type) may be the ``copy``: the public
    copy is a public event (``to`` empty), the others any."""
    return copy != "public" or not event.to


def _document(event: Any, copy: str, seq: int, chain_hash: str) -> dict[str, Any]:
    return {"format": FORMAT, "copy": copy, "certificate": _fields(event),
            "journal": {"seq": seq, "chain_hash": chain_hash}}


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------

def write_certificate(data_dir: str | os.PathLike, settlement: int, out_path: str | os.PathLike,
                      *, kind: str = "transaction", copy: str = "public") -> tuple[Path, Path]:
    """Write the certificate of ``settlement`` as ``OUT.json`` and ``OUT.html``
    (``out_path`` with or without either suffix); return both paths."""
    document = find_certificate(data_dir, settlement, kind=kind, copy=copy)
    base = Path(out_path)
    if base.suffix in (".json", ".html"):
        base = base.with_suffix("")
    json_path, html_path = base.with_name(base.name + ".json"), base.with_name(base.name + ".html")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    # the operators' copy names the parties, the parties' copy may be of a
    # transfer the public is not told of: readable by its owner only, as
    # every operator view written to a file (an existing file is tightened)
    opener = None if copy == "public" else layout.private_opener
    for path, text in ((json_path, json.dumps(document, indent=2, sort_keys=True) + "\n"),
                       (html_path, render_html(document))):
        with open(path, "w", encoding="utf-8", opener=opener) as out:
            out.write(text)
    return json_path, html_path


def money(amount: int, currency: str) -> str:
    """Minor units with two decimals, as every amount of lotex (hundredths of
    the unit in every currency, PROTOCOL.md): 3300000, "USD" -> "33,000.00 USD"."""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole:,}.{cents:02d} {currency}"


def when(ts: int) -> str:
    """ns UTC -> "2026-01-02 00:00:00 UTC"; "" for 0 (the step did not happen)."""
    if not ts:
        return ""
    moment = datetime.datetime.fromtimestamp(ts // NS, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


_TITLES = {"transaction": "Transaction certificate", "no_objection": "No-objection certificate"}
_HOW = {"auction": "auction award", "ask": "sale at the Ask", "negotiated": "negotiated sale",
        "reaward": "re-award after a default", "book": "bid-ask book trade",
        "agreement": "agreement transfer"}


def render_html(document: dict[str, Any]) -> str:
    """Return a self-contained, printable HTML page of a certificate document."""
    cert = document["certificate"]
    chain = document["journal"]
    cur = cert["currency"]
    esc = html.escape

    def rows(pairs: list[tuple[str, str]]) -> str:
        return "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs if v)

    if document["copy"] == "operator":
        parties = [("Buyer", f"{cert['buyer_name']} ({cert['buyer_country'] or '-'}), party "
                             f"{cert['buyer']}, paddle {cert['buyer_paddle'] or '-'}"),
                   ("Seller", f"{cert['seller_name']} ({cert['seller_country'] or '-'}), party "
                              f"{cert['seller']}, paddle {cert['seller_paddle'] or '-'}")]
    else:
        parties = [("Buyer", f"paddle {cert['buyer_paddle'] or '-'}"),
                   ("Seller", f"paddle {cert['seller_paddle'] or '-'}")]
    amounts = [("Price", money(cert["price"], cur)),
               ("Buyer's premium", money(cert["premium"], cur)),
               ("Total paid by the buyer" if cert["paid_at"] else "Total due from the buyer",
                money(cert["total"], cur)),
               ("Seller commission", money(cert["commission"], cur)),
               ("Net to the seller, less the refund" if cert["refunded"] else "Net to the seller",
                money(cert["net"] - cert["refunded"], cur)),
               ("Refunded to the buyer", money(cert["refunded"], cur) if cert["refunded"] else "")]
    dates = [("Sold", when(cert["sold_at"])), ("Paid into escrow", when(cert["paid_at"])),
             ("Documents delivered", when(cert["delivered_at"])),
             ("Receipt confirmed", when(cert["received_at"])),
             ("Completed", when(cert["completed_at"])), ("Issued", when(cert["issued_at"]))]
    patents = "\n".join(
        f"<tr><td>{esc(p['number'])}</td><td>{esc(p['title'])}</td>"
        f"<td>{esc(p.get('jurisdiction', ''))}</td><td>{esc(p.get('status', ''))}</td></tr>"
        for p in cert["patents"]) or '<tr><td colspan="4">(none listed)</td></tr>'
    title = _TITLES.get(cert["kind"], "Certificate")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)} - settlement {cert['settlement']}</title>
<style>
body {{ font-family: Georgia, serif; max-width: 46em; margin: 2em auto; color: #111; }}
h1 {{ font-size: 1.6em; border-bottom: 2px solid #333; padding-bottom: .3em; }}
h2 {{ font-size: 1.1em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .25em .6em; border-bottom: 1px solid #ddd; vertical-align: top; }}
th {{ width: 16em; font-weight: normal; color: #444; }}
code {{ font-family: monospace; word-break: break-all; }}
.note {{ font-size: .9em; color: #444; }}
</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p>Settlement <strong>{cert['settlement']}</strong> of session <strong>{esc(cert['session'])}</strong>,
lot <strong>{esc(cert['serial'])}</strong>: {esc(cert['title'])}
({esc(_HOW.get(cert['how'], cert['how']))}). {esc(_COPY_NAMES.get(document['copy'], document['copy']))}.</p>
<h2>Parties</h2>
<table>{rows(parties)}</table>
<h2>Patents</h2>
<table><tr><th>Number</th><th>Title</th><th>Jurisdiction</th><th>Status</th></tr>
{patents}</table>
<h2>Amounts</h2>
<table>{rows(amounts)}</table>
<h2>Dates</h2>
<table>{rows(dates)}</table>
<h2>Journal</h2>
<table>{rows([("Recorded at sequence", str(chain['seq'])),
               ("Chain hash there", chain['chain_hash']),
               ("Journal head when written", f"{chain.get('head_seq', '')} "
                                            f"{chain.get('head_hash', '')}".strip())])}</table>
<p class="note">The chain hash is SHA-256 over the journal up to and including the record
that holds this certificate. Anyone with the journal and its published head hash can check
it: <code>lotex op certificate --verify FILE.json</code>.</p>
</body>
</html>
"""


# --------------------------------------------------------------------------
# verifying
# --------------------------------------------------------------------------

def verify_certificate(cert_json: str | bytes | dict | os.PathLike,
                       journal_dir: str | os.PathLike, *, head_seq: int | None = None,
                       head_hash: str | None = None) -> Verification:
    """Check a certificate document (JSON text, bytes, a parsed dict or a
    path to the JSON file) against the journal: the chain verifies from the
    start, the record at the certificate's seq has its chain hash, that
    record's entry holds an identical certificate event (every field of the
    same JSON type and value: ``true`` is not ``1``), and the journal head
    the document states (``head_seq``, ``head_hash``, shown on the page) is
    a record of the journal with that chain hash. With ``head_hash``
    (and optionally ``head_seq``), also that the chain reaches that published
    head. O(journal)."""
    document = _load(cert_json)
    problems: list[str] = []
    try:
        cert = _canonical(document["certificate"])
        part = document["journal"]
        seq, stated = part["seq"], part["chain_hash"]
        if not (_is_int(seq) and isinstance(stated, str)):
            raise TypeError(f"journal seq {seq!r} and chain_hash {stated!r}: "
                            f"an integer and a string")
        # the head it was written at is shown as part of the document: check it too
        doc_head_seq, doc_head_hash = part.get("head_seq"), part.get("head_hash")
        if (doc_head_seq, doc_head_hash) != (None, None) and not (
                _is_int(doc_head_seq) and isinstance(doc_head_hash, str)):
            raise TypeError(f"journal head_seq {doc_head_seq!r} and head_hash "
                            f"{doc_head_hash!r}: an integer and a string")
        wanted = COPIES[document["copy"]]
    except (KeyError, TypeError, ValueError) as bad:
        return Verification(False, (f"not a certificate document: {bad!r}",), 0, "", 0, "")
    if document.get("format") != FORMAT:
        problems.append(f"unknown format {document.get('format')!r}")
    if not _is_int(document["certificate"].get("seq")) or document["certificate"]["seq"] != seq:
        problems.append(f"the certificate says seq {document['certificate'].get('seq')!r}, "
                        f"the journal part {seq}")
    at_seq, head_found, last_seq, last, at_doc_head = b"", False, 0, b"", b""
    try:
        for rec in _records(journal_dir):
            last_seq, last = rec.seq, rec.chain
            if head_hash is not None and rec.chain.hex() == head_hash and \
                    (head_seq is None or rec.seq == head_seq):
                head_found = rec.seq >= seq
            if rec.seq == doc_head_seq:
                at_doc_head = rec.chain
            if rec.seq != seq:
                continue
            at_seq = rec.chain
            if rec.kind != KIND_ENTRY:
                problems.append(f"record {seq} is not an entry")
                continue
            same = [event for event in decode_entry(rec.payload).events
                    if type(event) is wanted and _canonical(_fields(event)) == cert]
            if same and not any(_copy_of(document["copy"], event) for event in same):
                problems.append(f"the certificate at seq {seq} is not public: this is no "
                                f"public copy")
            if not same:
                problems.append(f"the entry at seq {seq} holds no certificate equal to this one")
    except (JournalCorrupt, OSError) as broken:
        problems.append(f"the journal does not verify: {broken}")
    if not at_seq:
        problems.append(f"the journal has no record {seq}")
    elif at_seq.hex() != stated:
        problems.append(f"chain hash at seq {seq} is {at_seq.hex()}, not {stated}")
    if doc_head_seq is not None:
        if doc_head_seq < seq or not at_doc_head:
            problems.append(f"the journal head it states, seq {doc_head_seq}, is not a record "
                            f"of the journal at or after seq {seq}")
        elif at_doc_head.hex() != doc_head_hash:
            problems.append(f"chain hash at the journal head it states, seq {doc_head_seq}, "
                            f"is {at_doc_head.hex()}, not {doc_head_hash}")
    if head_hash is not None and not head_found:
        problems.append(f"the chain does not reach the published head {head_hash} after seq {seq}")
    return Verification(not problems, tuple(problems), seq, at_seq.hex(), last_seq, last.hex())


def _is_int(value: Any) -> bool:
    return type(value) is int          # not a bool, a float or a string of digits


def _canonical(fields: Any) -> str:
    """The fields as canonical JSON: equal only if every value is equal and
    of the same JSON type (true is not 1, 3300000.0 is not 3300000).
    Raises TypeError for what JSON cannot hold, ValueError for NaN."""
    if not isinstance(fields, dict):
        raise TypeError(f"certificate fields {type(fields).__name__}, not an object")
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":"))


def _fields(event: Any) -> dict[str, Any]:
    """The event's fields as they read back from the JSON document."""
    fields = msgspec.to_builtins(event)
    fields.pop("to", None)
    return json.loads(json.dumps(fields))


def _load(cert_json: str | bytes | dict | os.PathLike) -> dict[str, Any]:
    if isinstance(cert_json, dict):
        return cert_json
    if isinstance(cert_json, os.PathLike):
        return json.loads(Path(cert_json).read_text(encoding="utf-8"))
    return json.loads(cert_json)


# --------------------------------------------------------------------------
# command line: lotex op certificate
# --------------------------------------------------------------------------

def add_op_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``certificate`` to the ``lotex op`` actions. It reads the journal
    in the data directory (``--data``) directly; no gateway is needed."""
    parser = sub.add_parser("certificate", help="write a settlement's certificate as JSON and "
                            "HTML, or verify one against the journal")
    parser.add_argument("settlement", type=int, nargs="?", help="settlement id")
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.html")
    parser.add_argument("--kind", choices=KINDS, default="transaction")
    parser.add_argument("--copy", choices=sorted(COPIES), default="public",
                        help="public (paddles only; a published certificate), parties "
                             "(paddles only, also of a non-public transfer) or operator "
                             "(with identities)")
    parser.add_argument("--verify", type=Path, metavar="FILE.json",
                        help="check a certificate against the journal instead")
    parser.add_argument("--head-hash", help="with --verify: the published head hash")
    parser.set_defaults(run=run_certificate)
    return parser


def run_certificate(args: argparse.Namespace) -> int:
    data = getattr(args, "data", None) or "."
    if args.verify is not None:
        result = verify_certificate(args.verify, data, head_hash=args.head_hash)
        if result.ok:
            print(f"certificate OK: seq {result.seq}, chain hash {result.chain_hash}, "
                  f"journal head {result.head_seq} {result.head_hash}")
            return 0
        for problem in result.problems:
            print(f"lotex op certificate: {problem}", file=sys.stderr)
        return 1
    if args.settlement is None or args.out is None:
        print("lotex op certificate: give SETTLEMENT and --out FILE, or --verify FILE.json",
              file=sys.stderr)
        return 2
    try:
        paths = write_certificate(data, args.settlement, args.out, kind=args.kind, copy=args.copy)
    except (CertificateNotFound, JournalCorrupt, OSError) as failed:
        print(f"lotex op certificate: {failed}", file=sys.stderr)
        return 1
    print(" ".join(str(path) for path in paths))
    return 0
