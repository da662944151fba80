"""What replay prints for people: durations in their unit, money in major units everywhere,
JSON rows that say what they are."""

from __future__ import annotations

import json

import pytest

from exchange.commands import (CreateLot, CreateSession, IssuePaddle, LotTerms, RegisterParty,
                               ReviewCredit, ScheduleLot, VetLot)
from gateway.cli import main
from gateway.keys import initialise
from replay import history as hi
from replay.journaling import open_recording
from replay.sample import record_sample
from replay.source import Source, duration

SECOND = 10**9
MINUTE = 60 * SECOND
T0 = 1_772_409_600 * SECOND


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    data = tmp_path_factory.mktemp("sample")
    session = record_sample(data)
    initialise(data)
    return session


def test_durations_print_in_their_unit():
    assert duration(2 * SECOND) == "2 s"
    assert duration(10 * MINUTE) == "10 min"
    assert duration(90 * MINUTE) == "1 h 30 min"
    assert duration(MINUTE + SECOND // 2) == "1 min 0.5 s"
    assert duration(2 * 86_400 * SECOND) == "2 d"


def test_history_shows_a_two_second_soft_close_as_two_seconds(tmp_path):
    d = open_recording(tmp_path, start_ts=T0)
    d.ok(CreateSession(session="S", name="s"), ts=T0)
    seller = d.ok(RegisterParty(name="seller"), actor="b1", role="broker")[0].party
    d.ok(ReviewCredit(party=seller, approved=True, credit_limit=10**9, agreement_version="v"))
    d.ok(IssuePaddle(session="S", party=seller))
    d.ok(CreateLot(serial="X", session="S", seller=seller, terms=LotTerms(
        title="x", starting_bid=1_000, opens_at=T0 + MINUTE, closes_at=T0 + 60 * MINUTE,
        hard_end=T0 + 90 * MINUTE, soft_window=2 * SECOND, soft_extend=2 * SECOND)),
        actor="b1", role="broker")
    d.ok(VetLot(serial="X", score=1, approved=True))
    d.ok(ScheduleLot(serial="X"))
    d.journal.close()
    _, rows = hi.history(Source.open(tmp_path), "X")
    detail = next(r["detail"] for r in rows if r["event"] == "scheduled")
    assert "soft close 2 s (extends 2 s)" in detail and "0 min" not in detail


def test_state_text_prints_depth_and_live_bids_in_major_units(sample, capsys):
    data = sample.data_dir
    assert main(["replay", "state", data, "--at", "2026-03-02T01:45:30", "--lot", "ULR-1"]) == 0
    out = capsys.readouterr().out
    assert "4.90x50(1) 4.80x100(1)" in out and "5.20x100(1)" in out and "490x50" not in out
    assert main(["replay", "state", data, "--seq", str(sample.marks["english_at_90k"]),
                 "--lot", "L-SF", "--operator-key", f"{data}/clients/op.json"]) == 0
    out = capsys.readouterr().out
    assert "103:31,000.00 105:28,000.00 102:30,000.00" in out and "3100000" not in out
    # csv and json keep int minor units, as every other amount there
    assert main(["replay", "state", data, "--at", "2026-03-02T01:45:30", "--lot", "ULR-1",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["bids"] == "490x50(1) 480x100(1)"


def test_comparables_json_rows_say_what_they_are(sample, capsys):
    assert main(["replay", "comparables", sample.data_dir, "--family", "F-100",
                 "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["kind_of_row"], r["serial"]) for r in rows] == [
        ("lot", "L-ENG"), ("lot", "L-SS"), ("lot", "L-BA"), ("activity", "L-BA")]
    assert rows[-1]["instrument"] == "PAT-BA" and "period" in rows[-1]
