"""Crash loop: a writer in group mode is killed with SIGKILL at random moments.

Each round starts a child that opens (and so recovers) the journal and
appends batches, reporting each batch's durable seq through a pipe only
after `commit` returned. The parent kills it at a random moment, then checks
that every record it was told of is there, in order, with its payload.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recorder.journal import Journal, verify_journal

SEED = int(os.environ.get("LOTEX_CRASH_SEED", "31337"))
ROUNDS = int(os.environ.get("LOTEX_CRASH_ROUNDS", "30"))
REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import hashlib, os, random, sys
from recorder.journal import Journal

def payload(seq):
    return b"%d|" % seq + hashlib.sha256(b"%d" % seq).digest()[: seq % 33] * (1 + seq % 5)

path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
journal = Journal.open(path, durability="group", segment_bytes=32 << 10)
os.write(1, b"open %d\n" % journal.last_seq)
while True:
    for _ in range(rng.randint(1, 64)):
        seq = journal.last_seq + 1
        journal.append(seq * 1000, 1, payload(seq))
    os.write(1, b"%d\n" % journal.commit())
"""


def payload(seq: int) -> bytes:
    return b"%d|" % seq + hashlib.sha256(b"%d" % seq).digest()[: seq % 33] * (1 + seq % 5)


def check_journal(path: Path, acked: int, context: str) -> int:
    journal = Journal.open(path, segment_bytes=32 << 10)   # recovery, as the server would
    try:
        last = 0
        for rec in journal.read():
            assert rec.seq == last + 1, f"gap after {last} ({context})"
            assert rec.payload == payload(rec.seq) and rec.ts == rec.seq * 1000, f"record {rec.seq} ({context})"
            last = rec.seq
        assert last == journal.last_seq
        assert last >= acked, f"acknowledged {acked} but only {last} recovered ({context})"
        return last
    finally:
        journal.close()


@pytest.mark.slow
def test_killed_writer_loses_nothing_it_acknowledged(tmp_path):
    rng = random.Random(SEED)
    path = tmp_path / "journal"
    acked = 0
    killed_while_writing = 0
    for round_no in range(ROUNDS):
        context = f"round {round_no}, seed {SEED}"
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(SEED * 1000 + round_no)],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            if rng.random() < 0.2:
                time.sleep(rng.uniform(0, 0.15))         # anywhere, start-up and recovery included
            else:
                opened = child.stdout.readline()
                assert opened.startswith(b"open "), f"child failed: {opened!r} {child.stderr.read()!r}"
                assert int(opened.split()[1]) >= acked, context
                time.sleep(rng.uniform(0, 0.06))
                killed_while_writing += 1
            child.send_signal(signal.SIGKILL)
            out, err = child.communicate()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == -signal.SIGKILL, f"child ended on its own: {err!r} ({context})"
        for line in out.split(b"\n"):
            if line.isdigit():
                acked = max(acked, int(line))
        check_journal(path, acked, context)
    assert killed_while_writing >= ROUNDS // 2 and acked > 0
    report = verify_journal(path)
    assert report.count >= acked
