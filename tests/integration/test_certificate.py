"""Certificates checked against the journal's hash chain: a journal written
with the recorder as the gateway writes it, a settlement completed, the
certificate written (JSON and HTML) and verified; tampering with the
certificate or the journal fails the check."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from exchange.commands import (ConfirmReceipt, CreateLot, CreateSession, IssuePaddle, LotTerms,
                               Patent, PlaceBid, RecordAgreementTransfer, RecordDelivery,
                               RecordPayment, RegisterParty, ReleaseFunds, ReviewCredit,
                               ScheduleLot, SetSettlementRules, VetLot)
from exchange.events import CertificateIssued, SettlementOpened
from gateway import certificate
from gateway.cli import main as lotex
from recorder import layout
from recorder.journal import Journal, read_journal
from recorder.recovery import rebuild
from tests.integration.journaled import JournaledDriver

SECOND = 10**9
HOUR = 3600 * SECOND
DAY = 24 * HOUR
T0 = 1_767_225_600 * SECOND
USD = 100


def run_market(data: Path) -> dict:
    """An English lot sold and settled, and a state-institution transfer whose
    publicity ends without objection, all journaled. Returns what happened."""
    journal = Journal.open(layout.journal_dir(data), durability="none")
    d = JournaledDriver(journal, start_ts=T0)
    d.ok(CreateSession(session="S1", name="Spring patents", currency="USD"))
    d.ok(SetSettlementRules(session="S1", payment_term=7 * DAY, reaward_window=DAY,
                            publicity_period=3 * DAY))
    parties = {}
    for name, broker in (("Acme Printing", "seller-broker"), ("Alice Corp", "broker-a"),
                         ("Bob Labs", "broker-b")):
        party = d.ok(RegisterParty(name=name, country="US"), actor=broker, role="broker")[0].party
        d.ok(ReviewCredit(party=party, approved=True, credit_limit=10**9,
                          agreement_version="BRA-2026"))
        parties[name] = party
    paddles = {}
    for name in ("Alice Corp", "Bob Labs"):
        paddles[name] = d.ok(IssuePaddle(session="S1", party=parties[name]))[0].paddle
    terms = LotTerms(title="Printing portfolio", starting_bid=1_000 * USD, increments="otba",
                     opens_at=T0 + HOUR, closes_at=T0 + DAY, buyer_premium_bp=1_000,
                     seller_commission_bp=1_500,
                     patents=(Patent(number="US7000001", title="Inkjet nozzle array"),
                              Patent(number="US7000002", title="Print head cleaning")))
    d.ok(CreateLot(serial="L1", session="S1", seller=parties["Acme Printing"], terms=terms),
         actor="seller-broker", role="broker")
    d.ok(VetLot(serial="L1", score=90, approved=True))
    d.ok(ScheduleLot(serial="L1"))
    d.tick(T0 + HOUR)
    d.ok(PlaceBid(serial="L1", paddle=paddles["Bob Labs"], amount=40_000 * USD),
         actor="broker-b", role="broker")
    d.ok(PlaceBid(serial="L1", paddle=paddles["Alice Corp"], amount=90_000 * USD),
         actor="broker-a", role="broker")
    opened = [e for e in d.tick(T0 + DAY) if isinstance(e, SettlementOpened)][0]
    sid = opened.settlement
    d.ok(RecordPayment(settlement=sid, amount=opened.total, reference="WIRE-77"), ts=T0 + 2 * DAY)
    d.ok(RecordDelivery(settlement=sid, reference="sha256:assignment"), actor="seller-broker",
         role="broker", ts=T0 + 3 * DAY)
    d.ok(ConfirmReceipt(settlement=sid), actor="broker-a", role="broker", ts=T0 + 4 * DAY)
    released = d.ok(ReleaseFunds(settlement=sid), ts=T0 + 5 * DAY)
    cert_seq = d.seq
    transfer = d.ok(RecordAgreementTransfer(
        session="S1", serial="AT-1", title="Battery chemistry", seller=parties["Bob Labs"],
        buyer=parties["Alice Corp"], price=5_000 * USD, state_institution=True))
    transfer_id = [e for e in transfer if isinstance(e, SettlementOpened)][0].settlement
    no_objection = d.tick(T0 + 9 * DAY)
    journal.commit()
    head = journal.head_hash
    journal.close()
    return dict(sid=sid, opened=opened, cert_seq=cert_seq, released=released, head=head,
                transfer=transfer_id, no_objection=no_objection, log=d.log, parties=parties,
                paddles=paddles)


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> tuple[Path, dict]:
    data = tmp_path_factory.mktemp("data")
    return data, run_market(data)


def chain_at(data: Path, seq: int) -> str:
    for rec in read_journal(layout.journal_dir(data), seq):
        return rec.chain.hex()
    raise AssertionError(f"no record {seq}")


def test_certificate_is_written_with_the_chain_hash_at_its_seq(market, tmp_path):
    data, run = market
    json_path, html_path = certificate.write_certificate(data, run["sid"], tmp_path / "cert")
    document = json.loads(json_path.read_text())
    cert = document["certificate"]
    issued = [e for e in run["released"] if isinstance(e, CertificateIssued)][0]
    assert cert["seq"] == document["journal"]["seq"] == run["cert_seq"] == issued.seq
    assert document["journal"]["chain_hash"] == chain_at(data, run["cert_seq"])
    assert document["journal"]["head_hash"] == run["head"]
    assert (cert["price"], cert["total"], cert["net"]) == \
        (run["opened"].price, run["opened"].total, run["opened"].net)
    assert [p["number"] for p in cert["patents"]] == ["US7000001", "US7000002"]
    assert "buyer" not in cert and "buyer_name" not in cert      # the public copy: paddles only
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    assert f"paddle {run['paddles']['Alice Corp']}" in page
    assert "Alice Corp" not in page and "US7000002" in page
    assert "Total paid by the buyer" in page            # paid into escrow before the release
    assert document["journal"]["chain_hash"] in page
    assert certificate.verify_certificate(json_path, data).ok


def test_the_operator_copy_carries_identities(market, tmp_path):
    data, run = market
    json_path, html_path = certificate.write_certificate(data, run["sid"], tmp_path / "op.json",
                                                         copy="operator")
    cert = json.loads(json_path.read_text())["certificate"]
    assert (cert["buyer_name"], cert["seller_name"]) == ("Alice Corp", "Acme Printing")
    assert "Alice Corp" in html_path.read_text()
    assert certificate.verify_certificate(json_path.read_text(), data).ok


def test_the_operator_copy_is_written_readable_by_its_owner_only(market, tmp_path):
    """It names the buyer and the seller; the public copy keeps the umask."""
    data, run = market
    old = os.umask(0o022)
    try:
        stale = tmp_path / "op.html"
        stale.write_text("an earlier page")
        stale.chmod(0o644)                         # an existing file is tightened
        assert lotex(["op", "--data", str(data), "certificate", str(run["sid"]), "--copy",
                      "operator", "--out", str(tmp_path / "op")]) == 0
        assert lotex(["op", "--data", str(data), "certificate", str(run["sid"]),
                      "--out", str(tmp_path / "public")]) == 0
    finally:
        os.umask(old)
    for name in ("op.json", "op.html"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert "Alice Corp" in (tmp_path / "op.html").read_text()
    for name in ("public.json", "public.html"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_verification_against_a_published_head(market, tmp_path):
    data, run = market
    json_path, _ = certificate.write_certificate(data, run["sid"], tmp_path / "cert")
    assert certificate.verify_certificate(json_path, data, head_hash=run["head"]).ok
    result = certificate.verify_certificate(json_path, data, head_hash="00" * 32)
    assert not result.ok and "published head" in result.problems[0]


@pytest.mark.parametrize("tamper", ["price", "paddle", "chain_hash", "seq", "copy",
                                    "settlement_true", "price_float", "seq_text",
                                    "head_hash", "head_seq", "head_beyond"])
def test_a_tampered_certificate_fails(market, tamper):
    data, run = market
    document = certificate.find_certificate(data, run["sid"])
    assert document["certificate"]["settlement"] == 1        # so True == it in Python
    if tamper == "price":
        document["certificate"]["price"] += 1
    elif tamper == "settlement_true":                 # the page would say "Settlement True"
        document["certificate"]["settlement"] = True
    elif tamper == "price_float":
        document["certificate"]["price"] = float(document["certificate"]["price"])
    elif tamper == "seq_text":
        document["journal"]["seq"] = str(document["journal"]["seq"])
    elif tamper == "head_hash":                       # shown as "Journal head when written"
        document["journal"]["head_hash"] = "ab" * 32
    elif tamper == "head_seq":
        document["journal"]["head_seq"] -= 1
    elif tamper == "head_beyond":
        document["journal"]["head_seq"] += 1
    elif tamper == "paddle":
        document["certificate"]["buyer_paddle"] += 1
    elif tamper == "chain_hash":
        document["journal"]["chain_hash"] = "ab" * 32
    elif tamper == "seq":
        document["journal"]["seq"] -= 1
    else:
        document["copy"] = "operator"                 # claims to be the operators' copy
    result = certificate.verify_certificate(document, data)
    assert not result.ok and result.problems, tamper


def test_a_certificate_written_at_an_earlier_head_still_verifies(market):
    """The journal grows after a certificate is written: the head it states
    is checked as a record of the journal, not as the journal's end."""
    data, run = market
    document = certificate.find_certificate(data, run["sid"])
    seq = document["journal"]["seq"]
    document["journal"]["head_seq"], document["journal"]["head_hash"] = seq, chain_at(data, seq)
    assert certificate.verify_certificate(document, data).ok
    del document["journal"]["head_seq"], document["journal"]["head_hash"]   # none stated
    assert certificate.verify_certificate(document, data).ok
    document["journal"]["head_seq"] = seq                                   # half of one
    assert "not a certificate document" in certificate.verify_certificate(
        document, data).problems[0]


def test_a_tampered_journal_fails(market, tmp_path):
    data, run = market
    document = certificate.find_certificate(data, run["sid"])
    copy = tmp_path / "data"
    (copy / "journal").mkdir(parents=True)
    for path in layout.journal_dir(data).iterdir():
        if path.suffix == ".seg":
            (copy / "journal" / path.name).write_bytes(path.read_bytes())
    assert certificate.verify_certificate(document, copy).ok
    segment = next((copy / "journal").glob("*.seg"))
    raw = bytearray(segment.read_bytes())
    # change one letter of the lot title inside the certificate's journal record
    needle = b"Printing portfolio"
    at = raw.rfind(needle)
    raw[at] = ord("p")
    segment.write_bytes(bytes(raw))
    result = certificate.verify_certificate(document, copy)
    assert not result.ok and "no record" in " ".join(result.problems), result


def test_recovery_rebuilds_the_same_settlement(market):
    data, run = market
    engine = rebuild(data, check_events=True)
    s = engine.state.settlements[run["sid"]]
    assert (s.status, s.to_seller, s.to_venue) == \
        ("completed", run["opened"].net, run["opened"].premium + run["opened"].commission)
    assert engine.state.lots["L1"].status == "settled"


def test_no_objection_certificate(market, tmp_path):
    data, run = market
    issued = [e for e in run["no_objection"] if isinstance(e, CertificateIssued)]
    assert [e.kind for e in issued] == ["no_objection"]
    json_path, html_path = certificate.write_certificate(data, run["transfer"], tmp_path / "noobj",
                                                         kind="no_objection")
    page = html_path.read_text()
    assert "No-objection certificate" in page
    assert json.loads(json_path.read_text())["certificate"]["paid_at"] == 0
    assert "Total due from the buyer" in page and "Total paid" not in page   # before payment
    assert certificate.verify_certificate(json_path, data).ok
    with pytest.raises(certificate.CertificateNotFound):
        certificate.write_certificate(data, run["transfer"], tmp_path / "none")


def test_lotex_op_certificate_writes_and_verifies(market, tmp_path, capsys):
    data, run = market
    out = tmp_path / "cli-cert"
    assert lotex(["op", "--data", str(data), "certificate", str(run["sid"]), "--out", str(out)]) == 0
    assert (tmp_path / "cli-cert.json").exists() and (tmp_path / "cli-cert.html").exists()
    assert lotex(["op", "--data", str(data), "certificate", "--verify",
                  str(tmp_path / "cli-cert.json"), "--head-hash", run["head"]]) == 0
    assert "certificate OK" in capsys.readouterr().out
    bad = json.loads((tmp_path / "cli-cert.json").read_text())
    bad["certificate"]["net"] -= 100
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert lotex(["op", "--data", str(data), "certificate", "--verify", str(tmp_path / "bad.json")]) == 1
    assert lotex(["op", "--data", str(data), "certificate", "999", "--out", str(out)]) == 1


def run_private_transfer(data: Path) -> dict:
    """A non-public agreement transfer completed under rules 5, journaled."""
    journal = Journal.open(layout.journal_dir(data), durability="none")
    d = JournaledDriver(journal, start_ts=T0)
    d.ok(CreateSession(session="S1", name="Spring patents", currency="USD"))
    parties = []
    for name, broker in (("Acme Printing", "seller-broker"), ("Alice Corp", "broker-a")):
        party = d.ok(RegisterParty(name=name, country="US"), actor=broker, role="broker")[0].party
        d.ok(ReviewCredit(party=party, approved=True, credit_limit=10**9,
                          agreement_version="BRA-2026"))
        parties.append(party)
    opened = [e for e in d.ok(RecordAgreementTransfer(
        session="S1", serial="AG-1", title="Secret licence deal", seller=parties[0],
        buyer=parties[1], price=7_777_700, patents=(Patent(number="US9999999", title="x"),)))
        if isinstance(e, SettlementOpened)][0]
    sid = opened.settlement
    d.ok(RecordPayment(settlement=sid, amount=opened.total), ts=T0 + DAY)
    d.ok(RecordDelivery(settlement=sid, reference="DOC"), actor="seller-broker", role="broker",
         ts=T0 + 2 * DAY)
    d.ok(ConfirmReceipt(settlement=sid), actor="broker-a", role="broker", ts=T0 + 3 * DAY)
    released = d.ok(ReleaseFunds(settlement=sid), ts=T0 + 4 * DAY)
    journal.commit()
    journal.close()
    return dict(sid=sid, released=released, log=d.log)


def test_a_private_certificate_has_no_public_copy_and_reaches_no_public_tool(tmp_path, capsys):
    """Rules 5: the certificate of a non-public agreement transfer is private.
    The operator writes the operators' and the parties' copies (0600, both
    verify); the public copy is refused, and a parties' copy relabelled public
    fails verification; the public analyst store and the snapshot service's
    public view never hold it."""
    import sqlite3
    from gateway.view import MarketView
    from recorder.store import Store
    data = tmp_path / "data"
    run = run_private_transfer(data)
    issued = [e for e in run["released"] if isinstance(e, CertificateIssued)][0]
    assert issued.to and issued.how == "agreement"
    with pytest.raises(certificate.CertificateNotFound, match="not public"):
        certificate.find_certificate(data, run["sid"])
    assert lotex(["op", "--data", str(data), "certificate", str(run["sid"]),
                  "--out", str(tmp_path / "public")]) == 1
    assert "--copy parties" in capsys.readouterr().err
    assert not (tmp_path / "public.json").exists()
    for copy in ("parties", "operator"):
        json_path, html_path = certificate.write_certificate(data, run["sid"], tmp_path / copy,
                                                             copy=copy)
        for path in (json_path, html_path):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        document = json.loads(json_path.read_text())
        assert document["certificate"]["price"] == 7_777_700
        assert certificate.verify_certificate(document, data).ok, copy
    page = (tmp_path / "parties.html").read_text()
    assert "not public" in page and "Acme Printing" not in page
    document = json.loads((tmp_path / "parties.json").read_text())
    document["copy"] = "public"                      # claims the feed published it
    result = certificate.verify_certificate(document, data)
    assert not result.ok and "not public" in " ".join(result.problems)
    with Store.open(tmp_path / "pub.sqlite", public=True) as store:
        store.update(data)
    db = sqlite3.connect(tmp_path / "pub.sqlite")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "ev_certificate_issued" not in tables or \
        db.execute("SELECT count(*) FROM ev_certificate_issued").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM events WHERE type = 'CertificateIssued'").fetchone()[0] == 0
    view = MarketView()
    for env, events in run["log"]:
        view.fold(env.seq, events)
    held = view.snapshot("S1") + view.snapshot("", "AG-1") + view.snapshot()
    assert not any(isinstance(e, CertificateIssued) for e in held)
    assert not any("AG-1" in repr(e) for e in held)
