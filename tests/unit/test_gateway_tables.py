"""The gateway's per-order tables: client ids of a day in shards, the recent
results in a fixed ring. Each checked against a plain dict, with a seed."""

from __future__ import annotations

import os
import random

import pytest

from gateway.tables import ID_SHARDS, ClientIds, RecentResults

SEED = int(os.environ.get("TABLES_SEED", "20261130"))


def test_client_ids_hold_what_a_dict_holds():
    rnd = random.Random(SEED)
    ids, ref = ClientIds(), {}
    for step in range(20000):
        key = (rnd.choice(("b1", "b2", "op")), f"c-{rnd.randrange(5000)}")
        if rnd.random() < 0.5:
            ids.put(key, (step, "cmd"))
            ref[key] = (step, "cmd")
        assert ids.get(key) == ref.get(key), f"seed {SEED} step {step}"
    assert len(ids) == len(ref)
    assert dict(ids.items()) == ref
    assert sum(1 for shard in ids.shards if shard) > ID_SHARDS // 2   # spread out


def test_recent_results_keep_the_last_size_entries():
    recent = RecentResults(8)
    for seq in range(1, 21):
        recent.put(seq, seq * 10, [f"event {seq}"])
    assert [seq for seq in range(1, 21) if seq in recent] == list(range(13, 21))
    assert recent.get(13) == (130, ["event 13"])
    assert recent.get(12) is None and recent.get(21) is None and 5 not in recent


def test_recent_results_need_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        RecentResults(1000)
