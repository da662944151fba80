"""Snapshots and the one recovery path (latest snapshot, then the journal)."""

from __future__ import annotations

import pytest

from exchange.codec import Entry, encode, encode_entry
from exchange.commands import CloseSession, Envelope, Tick
from exchange.driver import Driver
from exchange.engine import Engine
from recorder import layout
from recorder.format import KIND_ENTRY
from recorder.journal import Journal
from recorder.memory import MemoryJournal
from recorder.recovery import RecoveryError, ReplayDiverged, rebuild, save_snapshot
from recorder.snapshots import find_snapshot, latest_snapshot, read_snapshot, write_snapshot

from tests.integration.journaled import SECOND, T0, JournaledDriver, core_session


def same_state(a: Engine, b: Engine) -> bool:
    return vars(a.state) == vars(b.state)


def run_server(data_dir, sessions: int = 3, snapshot_every: int | None = None) -> JournaledDriver:
    journal = Journal.open(layout.journal_dir(data_dir), segment_bytes=8192)
    d = JournaledDriver(journal)
    for n in range(sessions):
        core_session(d, parties=5, start=T0 + n * 1000 * SECOND, session=f"S{n}")
        if snapshot_every and n % snapshot_every == 0:
            save_snapshot(d.engine, journal, layout.snapshot_dir(data_dir))
    return d


def test_rebuild_from_the_journal_alone_equals_the_live_engine(tmp_path):
    d = run_server(tmp_path)
    d.journal.close()
    seen = []
    engine = rebuild(tmp_path, on_entry=lambda entry, events: seen.append((entry, events)))
    assert same_state(engine, d.engine)
    assert [entry.env for entry, _ in seen] == [env for env, _ in d.log]
    assert all(encode(entry.events) == encode(events) for entry, events in seen)


def test_rebuild_starts_from_the_latest_snapshot(tmp_path):
    d = run_server(tmp_path, sessions=4, snapshot_every=2)
    d.journal.close()
    snap = find_snapshot(layout.snapshot_dir(tmp_path))
    assert snap is not None and 0 < snap.seq < d.seq
    replayed = []
    engine = rebuild(tmp_path, on_entry=lambda entry, events: replayed.append(entry.env.seq))
    assert replayed == list(range(snap.seq + 1, d.seq + 1))
    assert same_state(engine, d.engine)
    assert same_state(rebuild(tmp_path, use_snapshot=False), d.engine)


def test_rebuild_up_to_a_seq_or_a_time(tmp_path):
    d = run_server(tmp_path, sessions=4, snapshot_every=1)
    d.journal.close()
    for upto in (1, 7, 20, 33, d.seq - 1):
        reference = Driver()
        for env, _ in d.log[:upto]:
            reference.engine.apply(env)
        assert same_state(rebuild(tmp_path, upto_seq=upto), reference.engine), upto
        assert same_state(rebuild(tmp_path, upto_seq=upto, use_snapshot=False), reference.engine), upto
    cutoff = T0 + 2000 * SECOND + 3 * SECOND
    reference = Driver()
    for env, _ in d.log:
        if env.ts > cutoff:
            break
        reference.engine.apply(env)
    engine = rebuild(tmp_path, upto_ts=cutoff)
    assert same_state(engine, reference.engine) and engine.state.now <= cutoff


def test_snapshots_keep_the_last_few_and_skip_damaged_ones(tmp_path):
    snaps = tmp_path / "snaps"
    for seq in range(1, 7):
        write_snapshot(snaps, seq * 10, b"state %d" % seq, ts=seq, keep=3)
    assert sorted(p.name for p in snaps.iterdir()) == [f"{s:020d}.snap" for s in (40, 50, 60)]
    assert latest_snapshot(snaps) == (60, b"state 6")
    assert latest_snapshot(snaps, upto_seq=55) == (50, b"state 5")
    assert latest_snapshot(snaps, upto_ts=4) == (40, b"state 4")
    assert latest_snapshot(snaps, upto_seq=39) is None
    newest = snaps / f"{60:020d}.snap"
    raw = bytearray(newest.read_bytes())
    for offset in range(len(raw)):
        raw[offset] ^= 0x40
        newest.write_bytes(bytes(raw))
        assert read_snapshot(newest) is None, offset
        assert latest_snapshot(snaps) == (50, b"state 5")
        raw[offset] ^= 0x40
    newest.write_bytes(bytes(raw[:-1]))
    assert latest_snapshot(snaps) == (50, b"state 5")
    (snaps / ".00000000000000000070.snap.99.tmp").write_bytes(b"half")
    write_snapshot(snaps, 80, b"state 8")
    assert not list(snaps.glob(".*.tmp"))
    assert latest_snapshot(tmp_path / "nowhere") is None


def test_a_snapshot_ahead_of_the_journal_is_not_used(tmp_path):
    d = run_server(tmp_path, sessions=2, snapshot_every=1)
    d.journal.close()
    engine = Engine.restore(d.engine.snapshot())
    engine.apply(Envelope(seq=d.seq + 1, ts=d.ts, actor="op", role="operator", cmd=CloseSession(session="S0"), client_id=""))
    write_snapshot(layout.snapshot_dir(tmp_path), d.seq + 1, engine.snapshot())
    assert same_state(rebuild(tmp_path), d.engine)


def test_snapshots_beyond_the_one_written_are_set_aside_not_kept_over_it(tmp_path):
    """A snapshot is written at the journal's end: any of a higher seq was
    left by a cut and must not outrank it (pruning it at once)."""
    snaps = tmp_path / "snaps"
    for seq in (40, 60, 80):
        write_snapshot(snaps, seq, b"stale %d" % seq)
    write_snapshot(snaps, 39, b"after the cut")
    assert latest_snapshot(snaps) == (39, b"after the cut")
    assert sorted(p.name for p in snaps.glob("*.snap")) == [f"{39:020d}.snap"]
    (aside,) = snaps.glob("aside-*")
    assert aside.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in aside.iterdir()) == [f"{s:020d}.snap" for s in (40, 60, 80)]
    write_snapshot(snaps, 45, b"on")
    assert latest_snapshot(snaps) == (45, b"on") and len(list(snaps.glob("aside-*"))) == 1


def test_a_snapshot_of_another_journal_is_refused(tmp_path, capsys):
    from gateway.cli import main
    d = run_server(tmp_path / "a", sessions=2)
    other = run_server(tmp_path / "b", sessions=2)
    other.send(CloseSession(session="S1"))
    save_snapshot(other.engine, other.journal, layout.snapshot_dir(tmp_path / "a"))
    d.send(Tick(), actor="clock", role="system")
    d.journal.close()
    other.journal.close()
    with pytest.raises(RecoveryError, match="does not belong"):
        rebuild(tmp_path / "a")
    # replay says so in one line, with the way out
    assert main(["replay", "state", str(tmp_path / "a"), "--seq", str(d.seq)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lotex replay state: cannot rebuild: snapshot") and "moved aside" in err
    assert len(err.splitlines()) == 1


def test_save_snapshot_needs_the_engine_and_journal_in_step(tmp_path):
    journal = Journal.open(tmp_path / "j")
    d = JournaledDriver(journal)
    core_session(d, parties=2)
    d.engine.apply(Envelope(seq=d.seq + 1, ts=d.ts, actor="op", role="operator", cmd=Tick(), client_id=""))
    with pytest.raises(RecoveryError):
        save_snapshot(d.engine, journal, tmp_path / "snaps")
    journal.close()


def test_check_events_finds_a_divergence(tmp_path):
    journal = Journal.open(tmp_path / "journal")
    d = JournaledDriver(journal)
    core_session(d, parties=2)
    env = Envelope(seq=d.seq + 1, ts=d.ts, actor="op", role="operator", cmd=CloseSession(session="S1"), client_id="")
    journal.append(env.ts, KIND_ENTRY, encode_entry(Entry(env, [])))   # events left out
    journal.close()
    rebuild(tmp_path)                                  # replay alone does not judge
    with pytest.raises(ReplayDiverged) as diverged:
        rebuild(tmp_path, check_events=True)
    assert diverged.value.seq == env.seq and diverged.value.journaled == []


def test_rebuild_reads_any_backend(tmp_path):
    journal = MemoryJournal.open()
    d = JournaledDriver(journal)
    core_session(d, parties=4)
    save_snapshot(d.engine, journal, tmp_path / "snaps")
    core_session(d, parties=3, start=T0 + 500 * SECOND, session="S2")
    engine = rebuild(journal=journal, snapshot_dir=tmp_path / "snaps")
    assert same_state(engine, d.engine)


def test_server_restart_continues_where_it_left_off(tmp_path):
    d = run_server(tmp_path, sessions=2, snapshot_every=1)
    d.journal.close()
    journal = Journal.open(layout.journal_dir(tmp_path), segment_bytes=8192)
    engine = rebuild(journal=journal, snapshot_dir=layout.snapshot_dir(tmp_path))
    restarted = JournaledDriver(journal, engine=engine)
    assert restarted.seq == journal.last_seq == d.seq
    reference = Driver(Engine.restore(d.engine.snapshot()))
    core_session(restarted, parties=2, start=T0 + 9000 * SECOND, session="S9")
    core_session(reference, parties=2, start=T0 + 9000 * SECOND, session="S9")
    journal.close()
    assert same_state(rebuild(tmp_path), reference.engine)


def test_a_journal_of_the_first_rules_replays_as_recorded_under_the_current_ones(tmp_path):
    """Entries journaled before envelopes carried a rules version (a session
    with an end time that stayed open past it) replay byte for byte from the
    journal's start, and `lotex replay check` finds each record canonical."""
    from exchange.commands import CreateSession, RegisterParty
    from gateway.cli import main
    engine = Engine()
    steps = [(CreateSession(session="S1", name="day", ends_at=T0 + SECOND), "op", "operator"),
             (Tick(), "clock", "system"),
             (RegisterParty(name="Acme"), "b1", "broker")]
    with Journal.open(layout.journal_dir(tmp_path)) as journal:
        for seq, (cmd, actor, role) in enumerate(steps, start=1):
            env = Envelope(seq=seq, ts=T0 + seq * 5 * SECOND, actor=actor, role=role, cmd=cmd,
                           client_id="")                     # rules 1: as written then
            journal.append(env.ts, KIND_ENTRY, encode_entry(Entry(env, engine.apply(env))))
        journal.commit()
    assert engine.state.sessions["S1"].open                  # the first rules kept it open
    rebuilt = rebuild(tmp_path, check_events=True)
    assert rebuilt.state.sessions["S1"].open
    assert main(["replay", "check", str(tmp_path)]) == 0
