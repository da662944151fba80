"""`lotex demo`, the README's main command, as a user runs it: a real server
process, real clients over CURVE, exit 0, a results table, a journal."""

import os
import re
import subprocess
import sys
from pathlib import Path


def test_lotex_demo_runs_a_whole_session(tmp_path):
    data = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--data", str(data)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Results of session OT-2017" in out
    assert re.search(r"\d+ lots sold, \d+ not sold", out)
    for mechanism in ("english", "sealed_first", "sealed_second", "dutch", "bid_ask", "reverse"):
        assert mechanism in out
    assert "sold in negotiation" in out and "¥" in out
    assert Path(data / "journal").is_dir()
    assert "chain head" in out
    assert re.search(r"settlement: [1-9]\d* sales paid through escrow", out)
    assert "1 lot re-awarded to the runner-up" in out
