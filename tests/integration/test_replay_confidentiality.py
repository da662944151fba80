"""Replay shows the public only what the live feed showed, and nothing the journal does not hold.

- `replay state --at` past the journal's end fires no timer (no close, no
  reveal): only journaled clock commands make scheduled things happen.
- a lot withdrawn while still a draft never existed for the public.
- a revised sealed bid counts once, as the feed counted it, also after the close.
- `whatif` on a journal (private bids) needs the operator key.
- a public CSV export never lands beside an earlier full one.
- a full export needs the operator key, and only its owner can read it.
"""

from __future__ import annotations

import json
import stat

import pytest

from exchange.commands import (AddDocument, CreateLot, CreateSession, DrawPanel, IssuePaddle,
                               LotTerms, OpenDocument, PlaceBid, PublishPriceRange,
                               RecordValuation, RegisterExpert, RegisterParty, ReviewCredit,
                               ScheduleLot, SignNda, VetLot, WithdrawLot)
from gateway.cli import main
from replay import history as hi
from replay import state as st
from replay import whatif
from replay.access import PUBLIC, AccessDenied, Viewer
from replay.journaling import open_recording
from replay.source import ReplayError, Source, format_time

SECOND = 10**9
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
T0 = 1_772_409_600 * SECOND          # 2026-03-02T00:00:00Z
OPERATOR = Viewer(operator=True, user="op")


def record_sealed(data, *, later_entry: bool) -> None:
    """A sealed lot closing at T0+1h: 102 bids 25k then revises to 30k, 103
    bids 31k (the feed counts 2 live bids); a draft lot withdrawn unseen.
    ``later_entry``: one more command at T0+3h, after the close."""
    d = open_recording(data, start_ts=T0)
    d.ok(CreateSession(session="S", name="s"), ts=T0)
    parties = []
    for name in ("seller", "acme", "bohai"):
        party = d.ok(RegisterParty(name=name), actor="b1", role="broker")[0].party
        d.ok(ReviewCredit(party=party, approved=True, credit_limit=10**9, agreement_version="v"))
        d.ok(IssuePaddle(session="S", party=party))
        parties.append(party)
    d.ok(CreateLot(serial="SEAL", session="S", seller=parties[0], terms=LotTerms(
        title="sealed", mechanism="sealed_first", starting_bid=1_000, opens_at=T0,
        closes_at=T0 + HOUR)), actor="b1", role="broker")
    d.ok(VetLot(serial="SEAL", score=1, approved=True))
    d.ok(ScheduleLot(serial="SEAL"))
    d.ok(CreateLot(serial="L-SECRET", session="S", seller=parties[0], terms=LotTerms(
        title="Project Falcon", starting_bid=1_000, opens_at=T0 + HOUR,
        closes_at=T0 + 2 * HOUR)), actor="b1", role="broker")
    d.ok(WithdrawLot(serial="L-SECRET", reason="changed mind"), actor="b1", role="broker")
    d.ok(PlaceBid(serial="SEAL", paddle=102, amount=2_500_000), actor="b1", role="broker",
         ts=T0 + MINUTE)
    d.ok(PlaceBid(serial="SEAL", paddle=103, amount=3_100_000), actor="b1", role="broker",
         ts=T0 + 2 * MINUTE)
    d.ok(PlaceBid(serial="SEAL", paddle=102, amount=3_000_000), actor="b1", role="broker",
         ts=T0 + 3 * MINUTE)
    if later_entry:
        d.ok(RegisterParty(name="late"), actor="b1", role="broker", ts=T0 + 3 * HOUR)
    d.journal.close()


@pytest.fixture()
def cut(tmp_path):
    record_sealed(tmp_path, later_entry=False)
    return tmp_path


def lot_rows(view):
    return {row["serial"]: row for row in view.lots()}


# --------------------------------------------------------------------------
# no timers past the journal's end
# --------------------------------------------------------------------------

def test_state_past_the_journal_end_fires_no_close(cut, capsys):
    source = Source.open(cut)
    view = st.state_at(source, at=T0 + 2 * HOUR)
    seal = lot_rows(view)["SEAL"]
    assert (seal["status"], seal.get("price"), seal.get("leader")) == ("open", None, None)
    assert view.past_end and view.journal_end == T0 + 3 * MINUTE
    assert main(["replay", "state", str(cut), "--at", "2026-03-02T02:00:00"]) == 0
    out = capsys.readouterr().out
    assert "31,000.00" not in out and "sold" not in out
    assert f"the journal ends earlier ({format_time(T0 + 3 * MINUTE)})" in out
    assert main(["replay", "state", str(cut), "--at", "2026-03-02T02:00:00", "--format",
                 "json"]) == 0
    captured = capsys.readouterr()
    assert "journal ends earlier" in captured.err
    assert all(json.loads(line)["status"] != "sold" for line in captured.out.splitlines())


def test_state_inside_the_journal_fires_what_a_later_entry_fired(tmp_path, capsys):
    record_sealed(tmp_path, later_entry=True)
    source = Source.open(tmp_path)
    assert lot_rows(st.state_at(source, at=T0 + HOUR - 1))["SEAL"]["status"] == "open"
    view = st.state_at(source, at=T0 + 2 * HOUR)
    seal = lot_rows(view)["SEAL"]
    assert (seal["status"], seal["price"], seal["leader"]) == ("sold", 3_100_000, 103)
    assert not view.past_end
    assert main(["replay", "state", str(tmp_path), "--at", "2026-03-02T02:00:00"]) == 0
    assert "journal ends" not in capsys.readouterr().out


# --------------------------------------------------------------------------
# never-public lots and sealed counts
# --------------------------------------------------------------------------

def test_a_lot_withdrawn_as_a_draft_is_unknown_to_the_public(cut, capsys):
    source = Source.open(cut)
    view = st.state_at(source, seq=source.last_seq)
    assert "L-SECRET" not in lot_rows(view)
    assert lot_rows(st.state_at(source, seq=source.last_seq, viewer=OPERATOR))["L-SECRET"][
        "status"] == "withdrawn"
    with pytest.raises(ReplayError) as secret:
        hi.history(source, "L-SECRET")
    with pytest.raises(ReplayError) as unknown:
        hi.history(source, "L-NOPE")
    assert str(secret.value).replace("L-SECRET", "X") == str(unknown.value).replace("L-NOPE", "X")
    _, rows = hi.history(source, "L-SECRET", viewer=OPERATOR)
    assert [r["event"] for r in rows][-1] == "withdrawn"
    for serial in ("L-SECRET", "L-NOPE"):
        assert main(["replay", "history", str(cut), "--lot", serial]) == 2
        assert main(["replay", "state", str(cut), "--seq", str(source.last_seq), "--lot",
                     serial]) == 2
    err = capsys.readouterr().err.replace("L-SECRET", "X").replace("L-NOPE", "X").splitlines()
    assert err[0] == err[2] and err[1] == err[3]


def test_public_bid_count_of_a_sealed_lot_is_the_feeds(cut, capsys):
    source = Source.open(cut)
    _, rows = hi.history(source, "SEAL")
    fed = [r["detail"] for r in rows if r["event"] == "sealed bids"]
    assert fed[-1] == "2 live"
    assert lot_rows(st.state_at(source, seq=source.last_seq))["SEAL"]["bids"] == 2
    assert main(["replay", "state", str(cut), "--seq", str(source.last_seq), "--lot", "SEAL",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["bids"] == 2


def test_public_bid_count_of_a_closed_sealed_lot_is_the_closes(tmp_path):
    """Count a closed sealed lot's bids as LotClosed did, not its revisions."""
    record_sealed(tmp_path, later_entry=True)
    source = Source.open(tmp_path)
    _, rows = hi.history(source, "SEAL")
    assert [r for r in rows if r["event"] == "sealed bids"][-1]["detail"] == "2 live"
    view = st.state_at(source, seq=source.last_seq)
    assert (lot_rows(view)["SEAL"]["status"], lot_rows(view)["SEAL"]["bids"]) == ("sold", 2)
    assert lot_rows(st.state_at(source, at=T0 + 2 * HOUR))["SEAL"]["bids"] == 2


# --------------------------------------------------------------------------
# whatif on a journal: operators only
# --------------------------------------------------------------------------

def test_whatif_on_a_journal_needs_the_operator_key(keyed_sample, capsys):
    with pytest.raises(AccessDenied, match="operator-key"):
        whatif.run_path(keyed_sample, rules="vickrey")
    with pytest.raises(AccessDenied):
        whatif.run_journal(Source.open(keyed_sample), rules="vickrey", viewer=PUBLIC)
    assert main(["whatif", str(keyed_sample), "--rules", "vickrey"]) == 2
    captured = capsys.readouterr()
    assert "operator-key" in captured.err and captured.out == ""
    assert main(["whatif", str(keyed_sample), "--rules", "vickrey", "--operator-key",
                 str(keyed_sample / "clients" / "b1.json")]) == 2
    assert "not an operator" in capsys.readouterr().err
    assert main(["whatif", str(keyed_sample), "--rules", "vickrey", "--operator-key",
                 str(keyed_sample / "clients" / "op.json")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "reproduced 3 of 5 closing prices"


# --------------------------------------------------------------------------
# a public export never lands beside a full one
# --------------------------------------------------------------------------

def test_public_csv_export_refuses_a_directory_holding_a_full_export(keyed_sample, tmp_path,
                                                                      capsys):
    out = tmp_path / "out"
    assert main(["replay", "export", str(keyed_sample), "--csv", str(out), "--operator-key",
                 str(keyed_sample / "clients" / "op.json")]) == 0
    before = sorted(p.name for p in out.iterdir())
    assert "commands.csv" in before
    capsys.readouterr()
    assert main(["replay", "export", str(keyed_sample), "--csv", str(out), "--public"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == before        # nothing written, nothing lost
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["replay", "export", str(keyed_sample), "--csv", str(empty), "--public"]) == 0
    assert not (empty / "commands.csv").exists()


def test_a_full_export_needs_the_operator_key(keyed_sample, tmp_path, capsys):
    """As every other replay view: without an operator's key no actors,
    sealed amounts or party names, and nothing is written."""
    for target in (["--sqlite", str(tmp_path / "full.sqlite")], ["--csv", str(tmp_path / "csv")]):
        assert main(["replay", "export", str(keyed_sample), *target]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--operator-key" in err and "--public" in err, err
        assert main(["replay", "export", str(keyed_sample), *target, "--operator-key",
                     str(keyed_sample / "clients" / "b1.json")]) == 2
        assert "not an operator" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main(["replay", "export", str(keyed_sample), "--sqlite",
                 str(tmp_path / "public.sqlite"), "--public"]) == 0


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_full_export_is_readable_by_its_owner_only(keyed_sample, tmp_path, loose_umask):
    """Its files 0600 and its directories 0700, as the journal's, whatever the
    umask; a store exported over keeps no wider mode; a public export is for sharing."""
    key = ["--operator-key", str(keyed_sample / "clients" / "op.json")]
    export = ["replay", "export", str(keyed_sample)]
    db = tmp_path / "full.sqlite"
    assert main(export + ["--sqlite", str(db), *key]) == 0
    assert mode(db) == 0o600
    db.chmod(0o644)
    assert main(export + ["--sqlite", str(db), *key]) == 0
    assert mode(db) == 0o600
    out = tmp_path / "made" / "csv"
    assert main(export + ["--csv", str(out), *key]) == 0
    assert mode(out) == 0o700 and mode(out / "lobster") == 0o700
    files = list(out.rglob("*.csv"))
    assert any(f.name == "commands.csv" for f in files)
    assert any(f.parent.name == "lobster" for f in files)
    assert {mode(f) for f in files} == {0o600}
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    assert main(export + ["--csv", str(empty), *key]) == 0
    assert mode(empty) == 0o700 and mode(empty / "commands.csv") == 0o600
    public = tmp_path / "public"
    assert main(export + ["--csv", str(public), "--public"]) == 0
    assert mode(public) == 0o755 and mode(public / "events.csv") == 0o644
    assert main(export + ["--sqlite", str(tmp_path / "public.sqlite"), "--public"]) == 0
    assert mode(tmp_path / "public.sqlite") == 0o644


def test_a_projected_full_store_is_readable_by_its_owner_only(keyed_sample, tmp_path,
                                                              loose_umask, capsys):
    db = tmp_path / "full.sqlite"
    assert main(["journal", "project", str(keyed_sample), "--db", str(db)]) == 0
    assert mode(db) == 0o600
    db.chmod(0o664)
    assert main(["journal", "project", str(keyed_sample), "--db", str(db)]) == 0
    assert mode(db) == 0o600
    public = tmp_path / "public.sqlite"
    assert main(["journal", "project", str(keyed_sample), "--db", str(public), "--public"]) == 0
    assert mode(public) == 0o644
    capsys.readouterr()


def test_an_operators_chart_is_readable_by_its_owner_only(keyed_sample, tmp_path, loose_umask,
                                                          capsys):
    """It marks the bids as made (proxy maxima, sealed amounts); the public chart does not."""
    chart = ["replay", "chart", str(keyed_sample), "--lot", "L-SF", "--out"]
    operator = tmp_path / "operator.png"
    assert main(chart + [str(operator), "--operator-key",
                         str(keyed_sample / "clients" / "op.json")]) == 0
    assert mode(operator) == 0o600 and operator.read_bytes()[:4] == b"\x89PNG"
    operator.chmod(0o644)                       # drawn again over a wider file
    assert main(chart + [str(operator), "--operator-key",
                         str(keyed_sample / "clients" / "op.json")]) == 0
    assert mode(operator) == 0o600
    public = tmp_path / "public.png"
    assert main(chart + [str(public)]) == 0
    assert mode(public) == 0o644
    capsys.readouterr()


def test_a_data_rooms_access_log_is_the_operators_history(tmp_path):
    d = open_recording(tmp_path, start_ts=T0)
    d.ok(CreateSession(session="S", name="s"), ts=T0)
    parties = []
    for name in ("seller", "acme"):
        party = d.ok(RegisterParty(name=name), actor="b1", role="broker")[0].party
        d.ok(ReviewCredit(party=party, approved=True, credit_limit=10**9, agreement_version="v"))
        d.ok(IssuePaddle(session="S", party=party))
        parties.append(party)
    d.ok(CreateLot(serial="ROOM", session="S", seller=parties[0], terms=LotTerms(
        title="with a data room", starting_bid=1_000, opens_at=T0 + HOUR,
        closes_at=T0 + 2 * HOUR)), actor="b1", role="broker")
    d.ok(AddDocument(serial="ROOM", name="claims.pdf", digest="0f" * 32, size=2_048,
                     location="vdr://x/claims.pdf"), actor="b1", role="broker")
    d.ok(VetLot(serial="ROOM", score=1, approved=True))
    d.ok(ScheduleLot(serial="ROOM"))
    d.ok(SignNda(serial="ROOM", party=parties[1], nda="NDA-1"), actor="b1", role="broker")
    d.ok(OpenDocument(serial="ROOM", party=parties[1], name="claims.pdf"), actor="b1",
         role="broker")
    d.journal.close()
    source = Source.open(tmp_path)
    _, rows = hi.history(source, "ROOM")
    public = [(r["event"], r["detail"]) for r in rows if "document" in r["event"]
              or "NDA" in r["event"] or "interest" in r["event"]]
    assert public == [("document added", "claims.pdf v1, 2,048 bytes, sha256 0f0f0f0f0f0f")]
    _, rows = hi.history(source, "ROOM", viewer=OPERATOR)
    events = [r["event"] for r in rows]
    for seen in ("document added (private)", "document added", "NDA signed (private)",
                 "document opened (private)", "data room interest (private)"):
        assert seen in events, (seen, events)
    opened = [r for r in rows if r["event"] == "document opened (private)"]
    assert opened[0]["detail"] == f"party {parties[1]}: claims.pdf v1"


def test_a_pricing_panel_shows_the_public_its_range_only(tmp_path):
    d = open_recording(tmp_path, start_ts=T0)
    d.ok(CreateSession(session="S", name="s"), ts=T0)
    seller = d.ok(RegisterParty(name="seller"), actor="b1", role="broker")[0].party
    d.ok(CreateLot(serial="VAL", session="S", seller=seller, terms=LotTerms(
        title="valued", starting_bid=1_000, opens_at=T0 + HOUR, closes_at=T0 + 2 * HOUR)),
        actor="b1", role="broker")
    experts = [d.ok(RegisterExpert(name=f"Expert {i}"))[0].expert for i in range(3)]
    panel = d.ok(DrawPanel(serial="VAL", size=3))[0].experts
    for expert, (low, high) in zip(panel, ((10_000, 20_000), (12_000, 30_000), (8_000, 9_000))):
        d.ok(RecordValuation(serial="VAL", expert=expert, low=low, high=high))
    d.ok(PublishPriceRange(serial="VAL"))
    d.ok(VetLot(serial="VAL", score=1, approved=True))
    d.ok(ScheduleLot(serial="VAL"))
    d.journal.close()
    source = Source.open(tmp_path)
    _, rows = hi.history(source, "VAL")
    public = [(r["event"], r["detail"]) for r in rows if "price" in r["event"]
              or "panel" in r["event"] or "valuation" in r["event"]]
    assert public == [("price range", "100.00 to 200.00, from 3 of 3 experts (round 1)")]
    _, rows = hi.history(source, "VAL", viewer=OPERATOR)
    events = [r["event"] for r in rows]
    assert events.count("valuation (private)") == 3 and "panel drawn (private)" in events
    assert "price range (private)" in events and "price range" in events
    assert set(experts) == set(panel)
