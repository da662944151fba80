"""``lotex journal verify|head|dump|project``."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from gateway.cli import main
from recorder import layout
from recorder.journal import Journal

from tests.integration.journaled import JournaledDriver, core_session


def make_data_dir(tmp_path):
    journal = Journal.open(layout.journal_dir(tmp_path), segment_bytes=2048)
    d = JournaledDriver(journal)
    core_session(d, parties=5)
    head = journal.head_hash
    journal.close()
    return d, head


def test_verify_and_head_of_a_good_journal(tmp_path, capsys):
    d, head = make_data_dir(tmp_path)
    assert main(["journal", "verify", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"ok {d.seq} records" in out and head in out
    assert main(["journal", "head", str(layout.journal_dir(tmp_path))]) == 0
    assert capsys.readouterr().out.strip() == head
    assert main(["journal", "head", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"seq": d.seq, "head": head}


def test_verify_names_the_first_bad_record(tmp_path, capsys):
    d, _ = make_data_dir(tmp_path)
    first = sorted(layout.journal_dir(tmp_path).glob("*.seg"))[0]
    data = bytearray(first.read_bytes())
    data[64 + 40] ^= 0x01            # inside record 1's payload
    first.write_bytes(bytes(data))
    assert main(["journal", "verify", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{first.name}: record 1 " in err and "bad checksum" in err


def test_every_action_refuses_a_directory_without_a_journal(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "no-segments" / "journal").mkdir(parents=True)
    for where in ("nothing", "empty", "no-segments", "no-segments/journal"):
        for action in ("verify", "head", "dump", "project"):
            assert main(["journal", action, str(tmp_path / where)]) == 2, (action, where)
            err = capsys.readouterr().err
            assert f"lotex journal {action}: no lotex journal in {tmp_path / where}" in err
    assert not list(tmp_path.rglob("*.sqlite"))      # project made no empty store


def test_verify_of_a_journal_with_no_records_yet(tmp_path, capsys):
    Journal.open(layout.journal_dir(tmp_path)).close()
    assert main(["journal", "verify", str(tmp_path)]) == 0
    assert "ok 0 records" in capsys.readouterr().out


def test_dump_prints_entries_as_json_lines(tmp_path, capsys):
    d, _ = make_data_dir(tmp_path)
    assert main(["journal", "dump", str(tmp_path), "--from-seq", "3", "--limit", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["seq"] for line in lines] == [3, 4]
    assert lines[0]["entry"]["env"]["seq"] == 3 and "events" in lines[0]["entry"]


def test_project_builds_and_updates_the_store(tmp_path, capsys):
    d, _ = make_data_dir(tmp_path)
    assert main(["journal", "project", str(tmp_path)]) == 0
    assert f"projected {d.seq} entries" in capsys.readouterr().out
    db = sqlite3.connect(layout.store_path(tmp_path))
    assert db.execute("SELECT count(*) FROM commands").fetchone()[0] == d.seq
    assert main(["journal", "project", str(tmp_path)]) == 0
    assert "projected 0 entries" in capsys.readouterr().out
    assert main(["journal", "project", str(tmp_path), "--rebuild", "--db", str(tmp_path / "x.sqlite")]) == 0
    assert f"projected {d.seq} entries" in capsys.readouterr().out


def test_project_and_head_say_in_a_line_what_is_wrong(tmp_path, capsys):
    make_data_dir(tmp_path)
    store = tmp_path / "full.sqlite"
    assert main(["journal", "project", str(tmp_path), "--db", str(store)]) == 0
    capsys.readouterr()
    assert main(["journal", "project", str(tmp_path), "--db", str(store), "--public"]) == 2
    assert "is a full store: a public one needs a file of its own" in capsys.readouterr().err
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    assert main(["journal", "project", str(tmp_path), "--db", str(junk)]) == 2
    assert f"{junk} exists and is not a SQLite file" in capsys.readouterr().err


@pytest.mark.parametrize("rebuild", [False, True])
def test_project_refuses_a_sqlite_file_that_is_not_a_store_and_leaves_it_alone(tmp_path, capsys, rebuild):
    make_data_dir(tmp_path)
    other = tmp_path / "mine.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE my_data (x)")
    db.execute("INSERT INTO my_data VALUES (42)")
    db.commit()
    db.close()
    os.chmod(other, 0o644)
    args = ["journal", "project", str(tmp_path), "--db", str(other)] + (["--rebuild"] if rebuild else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == f"lotex journal project: {other} exists and is not a lotex analyst store; choose another name\n"
    db = sqlite3.connect(other)
    assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("my_data",)]
    assert db.execute("SELECT x FROM my_data").fetchall() == [(42,)]
    assert os.stat(other).st_mode & 0o777 == 0o644


def test_a_rebuild_drops_the_stores_own_tables_only(tmp_path, capsys):
    make_data_dir(tmp_path)
    store = tmp_path / "store.sqlite"
    assert main(["journal", "project", str(tmp_path), "--db", str(store)]) == 0
    db = sqlite3.connect(store)
    db.execute("CREATE TABLE my_notes (x)")              # an analyst's own table beside the store's
    db.execute("INSERT INTO my_notes VALUES ('keep')")
    db.commit()
    db.close()
    assert main(["journal", "project", str(tmp_path), "--db", str(store), "--rebuild"]) == 0
    db = sqlite3.connect(store)
    assert db.execute("SELECT x FROM my_notes").fetchall() == [("keep",)]
    assert db.execute("SELECT count(*) FROM commands").fetchone()[0] > 0


def test_head_of_a_damaged_live_segment_is_bad(tmp_path, capsys):
    journal = Journal.open(layout.journal_dir(tmp_path))
    core_session(JournaledDriver(journal), parties=3)
    journal.close()
    (live,) = layout.journal_dir(tmp_path).glob("*.seg")
    data = bytearray(live.read_bytes())
    data[64 + 40] ^= 0x01                 # the first record; good ones follow
    live.write_bytes(bytes(data))
    assert main(["journal", "head", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("BAD segment")


def test_backup_copies_a_closed_journal_with_a_torn_tail_cut_and_refuses_bad_targets(
        tmp_path, capsys):
    data = tmp_path / "data"
    d, head = make_data_dir(data)
    live = sorted(layout.journal_dir(data).glob("*.seg"))[-1]
    with open(live, "ab") as torn:                   # an unfinished write at the end
        torn.write(b"\x07" * 13)
    source_size = live.stat().st_size
    (data / "snapshots").mkdir()
    (data / "snapshots" / ".00000000000000000009.snap.1.tmp").write_bytes(b"half")
    assert main(["backup", str(data), str(tmp_path / "copy")]) == 0
    out = capsys.readouterr().out
    assert f"journal up to seq {d.seq}" in out and head in out
    copy = layout.journal_dir(tmp_path / "copy")
    assert len(list(copy.glob("*.seg"))) > 1 and not list(copy.glob("*.cut"))
    assert not list((tmp_path / "copy" / "snapshots").iterdir())
    assert (tmp_path / "copy").stat().st_mode & 0o077 == 0
    assert main(["journal", "verify", str(tmp_path / "copy")]) == 0
    assert live.stat().st_size == source_size        # the source is left as it was
    for target, why in ((tmp_path / "copy", "not an empty directory"),
                        (data / "inside", "inside")):
        assert main(["backup", str(data), str(target)]) == 2
        assert why in capsys.readouterr().err
    assert main(["backup", str(tmp_path / "nothing"), str(tmp_path / "c2")]) == 2
    assert "no lotex journal" in capsys.readouterr().err


def test_backup_cuts_a_record_it_read_half_written_before_records_written_after(
        tmp_path, monkeypatch):
    """The live segment read in two chunks around a group commit that landed
    over preallocated zeros: good records, a torn one, then good ones."""
    from recorder import backup as bk
    from recorder.format import KIND_ENTRY

    data = tmp_path / "data"
    journal = Journal.open(layout.journal_dir(data), preallocate=2 << 20)
    payload = bytes(range(1, 251)) * 2                   # 500 bytes, no zero byte
    for _ in range(40):
        journal.append_many(KIND_ENTRY, [(10**18, payload)] * 10)
        journal.commit()
        journal.reserve()
    live = journal._segments[-1].size
    segment = sorted(layout.journal_dir(data).glob("*.seg"))[-1]
    before = segment.read_bytes()
    journal.append_many(KIND_ENTRY, [(10**18, payload)] * 10)
    journal.commit()
    after = segment.read_bytes()
    journal.close()
    segment.write_bytes(before)                          # as it was when the backup began
    chunk = live + 100                                   # the first read ends here

    def copy_file(source, target):                       # the two reads, around the commit
        if source.suffix == ".seg":
            target.write_bytes(before[:chunk] + after[chunk:])
            return len(after)
        return real(source, target)
    real = bk._copy_file
    monkeypatch.setattr(bk, "_copy_file", copy_file)
    report = bk.backup(data, tmp_path / "copy")
    assert report.last_seq == 400                        # all the journal held before
    assert not list(layout.journal_dir(tmp_path / "copy").glob("*.cut"))


def _flip_in_last_record(data):
    """Flip a byte in the payload of the last record of ``data``'s journal."""
    live = sorted(layout.journal_dir(data).glob("*.seg"))[-1]
    raw = bytearray(live.read_bytes())
    raw[len(bytes(raw).rstrip(b"\0")) - 40] ^= 0xFF
    live.write_bytes(bytes(raw))
    return live


def test_backup_refuses_a_damaged_record_a_snapshot_covers_and_copies_nothing(
        tmp_path, capsys):
    """A bad last record that a snapshot shows was whole is damage, not a
    write the copy caught half done: serve refuses the journal, so does
    backup, rather than cut it and leave a copy ending before its snapshot."""
    from recorder.snapshots import write_snapshot

    data = tmp_path / "data"
    d, _ = make_data_dir(data)
    write_snapshot(layout.snapshot_dir(data), d.seq, b"state at the last seq")
    live = _flip_in_last_record(data)
    damaged = live.read_bytes()
    assert main(["backup", str(data), str(tmp_path / "copy")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lotex backup: the journal of ")
    assert (f"is damaged (a bad record at seq {d.seq}, but a snapshot of seq {d.seq}"
            in err and "nothing was copied" in err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]   # no copy, no partial
    assert live.read_bytes() == damaged and not list(live.parent.glob("*.cut"))

    # without the snapshot it reads as the unfinished last write of a crash:
    # cut, as `lotex serve` would cut it, and said so
    for snap in layout.snapshot_dir(data).iterdir():
        snap.unlink()
    assert main(["backup", str(data), str(tmp_path / "copy")]) == 0
    out = capsys.readouterr().out
    assert f"journal up to seq {d.seq - 1}" in out and "cut " in out and "bytes at its end" in out
    assert main(["journal", "verify", str(tmp_path / "copy")]) == 0
    assert live.read_bytes() == damaged                              # the source as it was


def test_backup_refuses_a_bad_record_in_a_closed_segment_or_before_good_ones(
        tmp_path, capsys):
    data = tmp_path / "data"
    make_data_dir(data)
    first = sorted(layout.journal_dir(data).glob("*.seg"))[0]
    raw = bytearray(first.read_bytes())
    raw[64 + 40] ^= 0x01                                  # record 1, in a closed segment
    first.write_bytes(bytes(raw))
    assert main(["backup", str(data), str(tmp_path / "copy")]) == 1
    err = capsys.readouterr().err
    assert "is damaged (segment 00000000000000000001.seg: record 1 " in err
    assert "try again" not in err and not (tmp_path / "copy").exists()

    other = tmp_path / "other"
    journal = Journal.open(layout.journal_dir(other))
    core_session(JournaledDriver(journal), parties=3)
    journal.close()
    (live,) = layout.journal_dir(other).glob("*.seg")
    raw = bytearray(live.read_bytes())
    raw[64 + 40] ^= 0x01                                  # good records follow it
    live.write_bytes(bytes(raw))
    assert main(["backup", str(other), str(tmp_path / "copy")]) == 1
    err = capsys.readouterr().err
    assert "is damaged (" in err and "nothing was copied" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "other"]


def test_a_failed_backup_leaves_nothing_and_the_live_endpoints_stay_behind(tmp_path,
                                                                          monkeypatch):
    from recorder import backup as bk

    data = tmp_path / "data"
    make_data_dir(data)
    (data / "endpoints.json").write_text("{}")
    (data / "config.json").write_text("{}")
    real = bk._copy_file

    def failing(source, target):
        if source.suffix == ".seg":
            raise OSError(28, "No space left on device")
        return real(source, target)
    monkeypatch.setattr(bk, "_copy_file", failing)
    with __import__("pytest").raises(OSError):
        bk.backup(data, tmp_path / "copy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]   # no copy, no partial
    monkeypatch.setattr(bk, "_copy_file", real)
    bk.backup(data, tmp_path / "copy")
    assert (tmp_path / "copy" / "config.json").exists()
    assert not (tmp_path / "copy" / "endpoints.json").exists()


def test_backup_copies_the_key_store_under_its_lock_so_keys_and_store_agree(
        tmp_path, monkeypatch):
    """`lotex keys rotate` writes the user's key file, then users.json, under
    an exclusive flock on keys/LOCK: a rotation between the copies of keys/
    and clients/ would leave a key file the copy's own store refuses."""
    import fcntl
    import shutil

    from gateway.keys import KeyStore, initialise
    from recorder import backup as bk

    data = tmp_path / "data"
    make_data_dir(data)
    initialise(data)
    (data / "keys" / ".users.json.4242.tmp").write_text("a killed write's")
    real, tried = shutil.copytree, []

    def copytree(source, target, **kw):
        copied = real(source, target, **kw)
        if source.name == "keys":          # a rotation now: it waits for the lock, if held
            fd = os.open(data / "keys" / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                tried.append("waited")
            else:
                KeyStore(data).rotate("op")
                tried.append("rotated in between")
            finally:
                os.close(fd)
        return copied
    monkeypatch.setattr(bk.shutil, "copytree", copytree)
    bk.backup(data, tmp_path / "copy")
    copy = tmp_path / "copy"
    stored = KeyStore(copy).users()["op"].public_key
    held = json.loads((copy / "clients" / "op.json").read_text())["public_key"]
    assert (tried, held) == (["waited"], stored)
    assert sorted(p.name for p in (copy / "keys").iterdir()) == ["server.json", "users.json"]


def test_backup_into_an_existing_empty_directory_or_a_link_to_one(tmp_path):
    from recorder import backup as bk

    data = tmp_path / "data"
    d, head = make_data_dir(data)
    (tmp_path / "disk").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "disk")
    report = bk.backup(data, tmp_path / "link")
    assert (report.last_seq, report.head_hash) == (d.seq, head)
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["journal"]
    assert (tmp_path / "disk").stat().st_mode & 0o077 == 0


def test_a_backup_removes_what_a_killed_one_left(tmp_path):
    import subprocess
    import sys

    from recorder import backup as bk

    def made_by_a_backup(path):
        path.mkdir(parents=True)
        path.chmod(0o700)                                   # as a backup makes them
        return path

    data = tmp_path / "data"
    d, head = make_data_dir(data)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(gone.stdout)                                 # a PID no process has now
    beside = made_by_a_backup(tmp_path / f".copy.partial-{dead}")
    (beside / "journal").mkdir()
    alive = made_by_a_backup(tmp_path / f".copy.partial-{os.getppid()}")   # still running
    others = [made_by_a_backup(tmp_path / f".copy.partial-{name}")
              for name in (f"{dead}x", str(10**12), "\u0669" * 8, "\u00b2", f"0{dead}")]
    shared = tmp_path / f".copy.partial-{dead + 1}"         # not 0700: not a backup's
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    assert bk.backup(data, tmp_path / "copy").last_seq == d.seq
    assert not beside.exists() and alive.exists() and shared.exists()
    assert all(other.exists() for other in others)
    (tmp_path / "disk").mkdir()                             # an empty mount point ...
    inside = made_by_a_backup(tmp_path / "disk" / f".partial-{dead}")   # ... a killed backup filled
    (inside / "keys").mkdir()
    assert bk.backup(data, tmp_path / "disk").head_hash == head
    assert not inside.exists() and (tmp_path / "disk" / "journal").is_dir()
    # a directory of the user's that happens to hold such a name is refused untouched
    home = tmp_path / "home"
    made_by_a_backup(home / f".partial-{dead}" / "thesis")
    (home / f".partial-{dead}").chmod(0o700)
    (home / "notes.txt").write_text("mine")
    with pytest.raises(bk.BackupError, match="not an empty directory"):
        bk.backup(data, home)
    assert (home / f".partial-{dead}" / "thesis").is_dir()
    running = tmp_path / "busy"
    made_by_a_backup(running / f".partial-{os.getppid()}")
    (running).chmod(0o755)
    with pytest.raises(bk.BackupError, match="still running"):
        bk.backup(data, running)


def test_a_backup_never_removes_its_own_data_directory(tmp_path):
    import subprocess
    import sys

    from recorder import backup as bk

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    data = tmp_path / f".bk.partial-{int(gone.stdout)}"   # named as a dead backup's partial
    d, head = make_data_dir(data)
    data.chmod(0o700)
    assert bk.backup(data, tmp_path / "bk").head_hash == head
    assert layout.holds_journal(layout.journal_dir(data))


def test_repair_sets_aside_the_snapshots_beyond_the_journals_new_end(tmp_path, capsys):
    """Snapshots of seqs a repair cut off would outrank the new ones (pruned
    at once) and, once the journal passes their seq, stop every start."""
    import struct

    from exchange.commands import CreateSession
    from recorder.recovery import rebuild, save_snapshot
    from recorder.snapshots import _listed
    from tests.integration.journaled import SECOND, T0

    jdir, sdir = layout.journal_dir(tmp_path), layout.snapshot_dir(tmp_path)
    gdir = layout.gateway_snapshot_dir(tmp_path)
    journal = Journal.open(jdir)
    d = JournaledDriver(journal, start_ts=T0)
    for n in range(1, 81):
        d.ok(CreateSession(session=f"A{n}", name="a"), ts=T0 + n * SECOND)
        if n % 20 == 0:
            save_snapshot(d.engine, journal, sdir)           # 40, 60, 80 kept
            save_snapshot(d.engine, journal, gdir)           # (a gateway snapshot's place)
    journal.close()
    (segment,) = jdir.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[data.find(struct.pack("<Q", 30), 64) - 8 + 40] ^= 0x01     # record 30's payload
    segment.write_bytes(bytes(data))

    assert main(["journal", "repair", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "damaged: segment" in out and "the journal now ends at seq 29" in out
    assert "50 good records among them" in out          # 31 to 80
    for directory in (sdir, gdir):
        assert [seq for seq, _ in _listed(directory)] == []
        (aside,) = directory.glob("aside-*")
        assert aside.stat().st_mode & 0o777 == 0o700
        assert sorted(p.name for p in aside.iterdir()) == [f"{s:020d}.snap" for s in (40, 60, 80)]
        assert f"aside to {aside}" in out

    journal = Journal.open(jdir)
    d = JournaledDriver(journal)
    d.engine = rebuild(tmp_path, journal=journal, check_events=True)
    d.seq, d.ts = d.engine.state.last_seq, d.engine.state.now
    for n in range(1, 17):
        d.ok(CreateSession(session=f"B{n}", name="b"), ts=T0 + (200 + n) * SECOND)
        if n % 10 == 0:
            save_snapshot(d.engine, journal, sdir)
    journal.close()
    assert [seq for seq, _ in _listed(sdir)] == [39]          # kept, not outranked
    journal = Journal.open(jdir)                               # at 45: past the old 40
    assert rebuild(tmp_path, journal=journal, check_events=True).state.last_seq == 45
    journal.close()
    assert main(["journal", "repair", str(tmp_path)]) == 0
    assert "nothing to repair: ok 45 records" in capsys.readouterr().out


def test_repair_of_a_whole_journal_sets_aside_snapshots_beyond_its_end(tmp_path, capsys):
    from recorder.snapshots import _listed, write_snapshot
    d, _ = make_data_dir(tmp_path)
    write_snapshot(layout.snapshot_dir(tmp_path), d.seq + 5, b"stale")
    assert main(["journal", "repair", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"moved snapshot {d.seq + 5:020d}.snap" in out and f"now ends at seq {d.seq}" in out
    assert _listed(layout.snapshot_dir(tmp_path)) == []


def test_repair_on_a_full_disk_says_so_in_a_line_and_cuts_nothing(tmp_path, capsys,
                                                                    monkeypatch):
    import errno

    import recorder.journal as journal_module
    d, _ = make_data_dir(tmp_path)
    live = sorted(layout.journal_dir(tmp_path).glob("*.seg"))[-1]
    with open(live, "ab") as f:
        f.write(b"torn at the crash" * 20)
    torn = live.read_bytes()

    def disk_full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(journal_module, "_write_all", disk_full)
    assert main(["journal", "repair", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "cannot repair" in err and "No space left on device" in err and "nothing was cut" in err
    assert live.read_bytes() == torn and not list(live.parent.glob("*.cut"))
    monkeypatch.undo()
    assert main(["journal", "repair", str(tmp_path)]) == 0
    assert f"the journal now ends at seq {d.seq}" in capsys.readouterr().out


def test_repair_that_cannot_move_snapshots_aside_says_so_and_a_rerun_does(tmp_path, capsys,
                                                                          monkeypatch):
    import errno

    import recorder.recovery as recovery_module
    from recorder.snapshots import _listed, write_snapshot
    d, _ = make_data_dir(tmp_path)
    write_snapshot(layout.snapshot_dir(tmp_path), d.seq + 5, b"stale")

    def read_only(*args):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "snapshots"))
    monkeypatch.setattr(recovery_module, "set_aside_snapshots", read_only)
    assert main(["journal", "repair", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"ends at seq {d.seq}" in err and "could not be moved aside" in err
    monkeypatch.undo()
    assert main(["journal", "repair", str(tmp_path)]) == 0
    assert _listed(layout.snapshot_dir(tmp_path)) == []


def test_verify_of_an_unreadable_journal_says_so_in_a_line(tmp_path, capsys, monkeypatch):
    import errno

    import recorder.cli as cli_module
    make_data_dir(tmp_path)

    def unreadable(path):
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))
    monkeypatch.setattr(cli_module, "verify_journal", unreadable)
    assert main(["journal", "verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lotex journal verify: cannot read the journal: [Errno 5]")
    assert len(err.strip().splitlines()) == 1


def test_project_interrupted_says_so_in_a_line_and_keeps_what_it_committed(tmp_path, capsys, monkeypatch):
    import recorder.store as store_module
    d, _ = make_data_dir(tmp_path)
    monkeypatch.setattr(store_module, "BATCH", 3)
    write = store_module.Store._write
    calls = []

    def interrupted(self, batch):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return write(self, batch)

    monkeypatch.setattr(store_module.Store, "_write", interrupted)
    store = tmp_path / "s.sqlite"
    assert main(["journal", "project", str(tmp_path), "--db", str(store)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"lotex journal project: interrupted; {store} holds what was projected before"
    assert not any("Traceback" in line for line in err)
    db = sqlite3.connect(store)
    assert db.execute("SELECT value FROM _meta WHERE key = 'last_seq'").fetchone() == ("3",)
    assert db.execute("SELECT count(*) FROM commands").fetchone() == (3,)
    db.close()
    monkeypatch.setattr(store_module.Store, "_write", write)
    assert main(["journal", "project", str(tmp_path), "--db", str(store)]) == 0
    assert f"projected {d.seq - 3} entries" in capsys.readouterr().out
