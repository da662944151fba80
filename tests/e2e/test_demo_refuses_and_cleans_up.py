"""`lotex demo --data DIR` refuses, in one line and before touching it, a
directory a live exchange serves or one that holds a journal already; and a
demo stopped by a signal (SIGTERM, SIGINT while its exchange starts,
SIGKILL) leaves no `lotex serve` of its own running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exchange.commands import CreateSession
from tests.e2e.test_serve_cpus import REPO, serve, stop
from tests.integration.gateway_harness import client


def demo(data: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--data", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200",
                                 "PYTHONUNBUFFERED": "1"})


def refused(data: Path) -> str:
    proc = demo(data)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, out + err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


def servers_of(data: Path) -> list[int]:
    """Return the pids of the `lotex serve` processes on ``data``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in argv and os.fsencode(data) in argv:
                found.append(int(entry.name))
    return found


def gone(data: Path) -> bool:
    """Wait up to 60 s for every `lotex serve` on ``data`` to end (a loaded
    machine: a stopping server makes its journal durable and snapshots)."""
    deadline = time.monotonic() + 60
    while servers_of(data):
        if time.monotonic() > deadline:
            for pid in servers_of(data):
                os.kill(pid, signal.SIGKILL)
            return False
        time.sleep(0.1)
    return True


def until(proc: subprocess.Popen, text: str) -> None:
    """Read the demo's output until a line holding ``text`` (60 s at most)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"the demo ended first: {proc.wait()}"
        if text in line:
            return
    proc.kill()
    raise AssertionError(f"no line with {text!r} in time")


def test_a_live_exchange_directory_is_refused_untouched(tmp_path):
    proc = serve(tmp_path)
    try:
        users = (tmp_path / "keys" / "users.json").read_bytes()
        endpoints = (tmp_path / "endpoints.json").read_bytes()
        line = refused(tmp_path)
        assert "running lotex serve" in line
        assert (tmp_path / "keys" / "users.json").read_bytes() == users
        assert (tmp_path / "endpoints.json").read_bytes() == endpoints
        with client(tmp_path, "op") as op:
            assert op.request(CreateSession(session="S", name="still serving")).accepted
    finally:
        stop(proc)


def test_a_directory_with_a_journal_is_refused(tmp_path):
    data = tmp_path / "earlier"
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "replay", "sample", str(data)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "already holds a journal" in refused(data)
    assert not servers_of(data)


@pytest.mark.parametrize("sig, when", [(signal.SIGTERM, "exchange up"),
                                       (signal.SIGINT, "starting the exchange"),
                                       (signal.SIGKILL, "exchange up")])
def test_a_demo_stopped_by_a_signal_stops_its_exchange(tmp_path, sig, when):
    proc = demo(tmp_path)
    try:
        until(proc, when)
        if sig == signal.SIGINT:        # while the constructor waits for the server
            deadline = time.monotonic() + 30
            while not servers_of(tmp_path) and time.monotonic() < deadline:
                time.sleep(0.01)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if sig != signal.SIGKILL:
        assert proc.returncode == 128 + sig, err
        assert "Traceback" not in err, err
        assert err.strip().splitlines()[-1].startswith("lotex demo: ")
    assert gone(tmp_path), log_tail(tmp_path)


def log_tail(data: Path) -> str:
    """The last lines of the demo server's log, to say why it did not stop."""
    try:
        return "\n".join((data / "server.log").read_text(errors="replace").splitlines()[-15:])
    except OSError as exc:
        return f"no server log: {exc}"
