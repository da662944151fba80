"""`lotex serve --engine-cpu N` as an operator runs it: the engine thread
alone on CPU N, every other thread of the process elsewhere, and the
exchange serving; a bad config refused in one line, with no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exchange.commands import CreateSession
from tests.integration.gateway_harness import client

REPO = Path(__file__).resolve().parents[2]


def serve(data: Path, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--data", str(data), "--random-ports",
         *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"lotex serve exited: {proc.wait()}"
        if line.strip() == b"ready":
            return proc
    proc.kill()
    raise AssertionError("lotex serve did not get ready in time")


def stop(proc: subprocess.Popen) -> None:
    """Stop a `serve` process as an operator would (SIGTERM): it exits 0."""
    proc.terminate()
    assert proc.wait(timeout=60) == 0
    assert proc.stdout is not None
    proc.stdout.close()


def _task_cpus(pid: int, tid: int) -> list[int]:
    for line in (Path(f"/proc/{pid}/task/{tid}/status")).read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            cpus: list[int] = []
            for part in line.split(":", 1)[1].strip().split(","):
                low, _, high = part.partition("-")
                cpus.extend(range(int(low), int(high or low) + 1))
            return cpus
    raise AssertionError(f"no Cpus_allowed_list for task {tid}")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two CPUs")
def test_engine_cpu_runs_the_engine_thread_alone_and_the_exchange_serves(tmp_path):
    cpu = max(os.sched_getaffinity(0))
    proc = serve(tmp_path, "--engine-cpu", str(cpu))
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{proc.pid}/task"))
        assert len(tids) >= 4        # the engine, ZeroMQ's I/O and reaper, ZAP
        assert set(_task_cpus(proc.pid, proc.pid)) == {cpu}
        for tid in tids:
            if tid != proc.pid:
                cpus = set(_task_cpus(proc.pid, tid))
                assert cpus and cpu not in cpus, (tid, cpus)
        with client(tmp_path, "op") as op:
            result = op.request(CreateSession(session="S", name="pinned"))
            assert result.accepted
    finally:
        stop(proc)


@pytest.mark.parametrize("config, args, reason", [
    ('durability = "sometimes"\n', [], "durability must be one of"),
    ("broker_port = \n", [], "Invalid value"),
    ('max_batch = "many"\n', [], 'max_batch must be an integer, not "many"'),
    ("", ["--engine-cpu", "4096"], "engine_cpu 4096 is not among the CPUs"),
])
def test_a_bad_config_is_refused_in_one_line(tmp_path, config, args, reason):
    if config:
        (tmp_path / "config.toml").write_text(config)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--data", str(tmp_path), *args],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2
    assert done.stderr.startswith("lotex serve: bad config (") and reason in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
