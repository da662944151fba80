"""`lotex serve` that cannot start says why in one line (exit 2), with no
traceback and without hanging, and leaves a running server serving: the data
directory in use by another server, a port held by another program, a
damaged journal, a file it cannot write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import msgspec

from exchange.commands import CreateSession
from recorder import format as fmt
from recorder import layout
from recorder.journal import Journal
from replay.journaling import RecordingDriver
from tests.e2e.test_serve_cpus import REPO, serve, stop
from tests.integration.gateway_harness import client


def refused(data: Path, *args: str, preexec_fn: Callable[[], None] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--data", str(data), *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=preexec_fn)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith("lotex serve: cannot start: "), done.stderr
    return last


def test_a_data_directory_in_use_or_a_port_held_is_refused_and_the_server_serves_on(tmp_path):
    first = tmp_path / "first"
    proc = serve(first)
    try:
        assert "is in use by another lotex serve" in refused(first, "--random-ports")
        port = json.loads((first / "endpoints.json").read_text())["broker"].rsplit(":", 1)[1]
        second = tmp_path / "second"
        second.mkdir()
        (second / "config.toml").write_text(f"broker_port = {port}\n")
        line = refused(second)
        assert "cannot listen" in line and "Address already in use" in line
        with client(first, "op") as op:
            assert op.request(CreateSession(session="S", name="still serving")).accepted
    finally:
        stop(proc)


def test_a_damaged_journal_is_refused_with_where_to_look(tmp_path):
    proc = serve(tmp_path)
    try:
        with client(tmp_path, "op") as op:
            for n in range(5):
                assert op.request(CreateSession(session=f"S{n}", name="damage")).accepted
    finally:
        stop(proc)
    for snapshots in ("snapshots", "gateway"):        # make recovery read the journal
        for snap in (tmp_path / snapshots).glob("*.snap"):
            snap.unlink()
    (segment,) = sorted((tmp_path / "journal").glob("*.seg"))[:1]
    data = bytearray(segment.read_bytes())
    data[200] ^= 0x40                     # inside an early record, before good ones
    segment.write_bytes(bytes(data))
    line = refused(tmp_path, "--random-ports")
    assert "the journal is damaged" in line and "lotex journal verify" in line


def test_a_torn_tail_that_cannot_be_kept_aside_is_refused_and_nothing_is_cut(tmp_path):
    """A restart on a full disk (here: files limited to 64 KiB) cannot write
    the torn tail's .cut file: one line names the file and the error, the
    partial .cut file is gone and the journal left as it was."""
    import resource

    proc = serve(tmp_path)
    try:
        with client(tmp_path, "op") as op:
            assert op.request(CreateSession(session="S", name="before the crash")).accepted
    finally:
        stop(proc)
    (segment,) = sorted((tmp_path / "journal").glob("*.seg"))
    good_size = segment.stat().st_size
    record, _ = fmt.encode_record(99, 5, fmt.KIND_ENTRY, b"x" * 200_000, bytes(32))
    with open(segment, "ab") as f:                    # killed in a commit: preallocated zeros
        f.write(record[:300] + bytes(128 << 10))
    torn = segment.read_bytes()

    def files_of_64k() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
    line = refused(tmp_path, "--random-ports", preexec_fn=files_of_64k)
    assert f"{segment}.{good_size}.cut: File too large (EFBIG)" in line, line
    assert "make room" in line
    assert segment.read_bytes() == torn and not list(segment.parent.glob("*.cut"))


def test_a_snapshot_of_another_journal_is_refused(tmp_path):
    for name, sessions in (("a", "A"), ("b", "B")):
        proc = serve(tmp_path / name)
        try:
            with client(tmp_path / name, "op") as op:
                for n in range(3):
                    assert op.request(CreateSession(session=f"{sessions}{n}",
                                                    name="mixed up")).accepted
        finally:
            stop(proc)
    (snap,) = (tmp_path / "a" / "snapshots").glob("*.snap")
    target = tmp_path / "b" / "snapshots" / snap.name
    target.write_bytes(snap.read_bytes())      # b's own, overwritten by a's
    line = refused(tmp_path / "b", "--random-ports")
    assert "recovery failed" in line and "does not belong to this journal" in line


class _OtherRules(RecordingDriver):
    """Record as a lotex whose rules named a session differently would have."""

    def record(self, env, events):
        if type(env.cmd) is CreateSession and env.cmd.session == "S1":
            events = [msgspec.structs.replace(e, name="named by other rules") for e in events]
        super().record(env, events)


def test_a_journal_that_replays_to_other_events_is_refused_and_left_alone(tmp_path):
    journal = Journal.open(layout.journal_dir(tmp_path))
    other = _OtherRules(journal, start_ts=1_800_000_000 * 10**9)
    for n in range(3):
        other.ok(CreateSession(session=f"S{n}", name="session"))
    journal.close()
    recorded = _records(tmp_path)
    line = refused(tmp_path, "--random-ports")
    assert "journal entry 2 replays to other events than it recorded" in line, line
    assert f"lotex replay check {tmp_path}" in line
    assert _records(tmp_path) == recorded


def _records(data: Path) -> list[tuple[int, bytes]]:
    journal = Journal.open_readonly(layout.journal_dir(data))
    try:
        return [(record.seq, bytes(record.payload)) for record in journal.read(1)]
    finally:
        journal.close()
