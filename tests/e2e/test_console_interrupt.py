"""Ctrl-C while a console or `lotex watch` waits for a server that does not
answer is one line, exit 130, never a KeyboardInterrupt traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.test_serve_cpus import REPO, serve


def _waiting(pid: int) -> bool:
    """Tell whether the process runs ZeroMQ's I/O thread: it has made its
    sockets, and from then on it waits for the server."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            if Path(f"/proc/{pid}/task/{tid}/comm").read_text().startswith("ZMQbg/IO"):
                return True
        except OSError:
            continue
    return False


@pytest.mark.parametrize("argv", [["op", "--timeout", "300",    # no answer-timeout on a busy host
                                   "session", "create", "S1", "--name", "s"],
                                  ["broker", "--timeout", "300", "events"],
                                  ["watch", "--once"]])
def test_ctrl_c_while_waiting_is_one_line_and_exit_130(tmp_path, argv):
    server = serve(tmp_path)
    os.kill(server.pid, signal.SIGSTOP)             # it answers nothing from now on
    try:
        console = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", argv[0], "--data", str(tmp_path), *argv[1:]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 30
        while not _waiting(console.pid) and console.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        console.send_signal(signal.SIGINT)
        out, err = console.communicate(timeout=60)
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.terminate()
        server.wait(timeout=60)
        assert server.stdout is not None
        server.stdout.close()
    assert "Traceback" not in err, err
    # 130, or death by SIGINT, which a shell shows as 130 too: once on a loaded
    # host the interpreter ended by the signal after `lotex watch` returned 130
    assert console.returncode in (130, -signal.SIGINT), (console.returncode, err)
    assert err.strip().splitlines() == [f"lotex {argv[0]}: interrupted"], err
