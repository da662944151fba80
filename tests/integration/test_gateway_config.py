"""The server's configuration file: made with the defaults on first start,
every setting explained by a comment, read back strictly."""

from __future__ import annotations

from dataclasses import fields

import pytest

from gateway.config import SETTINGS, Config, load, load_or_create


def test_first_start_writes_every_setting_under_a_comment_and_reads_it_back(tmp_path):
    config, path, created = load_or_create(tmp_path)
    assert created and path == tmp_path / "config.toml" and config == Config()
    lines = path.read_text().splitlines()
    for f in fields(Config):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{f.name} = "))
        assert lines[at - 1] == f"# {SETTINGS[f.name]}"
    again, _, created = load_or_create(tmp_path)
    assert not created and again == config


@pytest.mark.parametrize("text, reason", [
    ("max_batchh = 10\n", "unknown settings max_batchh"),
    ("durability = \"sometimes\"\n", "durability must be one of"),
    ("preallocate_bytes = -1\n", "preallocate_bytes must be >= 0"),
    ("max_backlog = 0\n", "max_backlog must be positive"),
    ("max_backlog = 40000\n", "max_backlog must be at most 32768"),
    ("broker_port = 70000\n", "broker_port 70000 is not a TCP port"),
    ("broker_port = \"7801\"\n", "broker_port must be an integer, not \"7801\""),
    ("max_batch = true\n", "max_batch must be an integer, not true"),
    ("host = 127\n", "host must be a string, not 127"),
    ("engine_cpu = -2\n", "engine_cpu must be a CPU number, or -1 for none"),
    ("max_requests_per_second = -1\n", "max_requests_per_second must be >= 0"),
])
def test_a_bad_setting_is_refused_with_its_reason(tmp_path, text, reason):
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ValueError, match=reason):
        load(tmp_path / "config.toml")


def test_engine_cpu_is_checked_against_the_cpus_this_process_may_use(monkeypatch):
    from gateway import server
    assert server.cpu_plan(-1) is None
    monkeypatch.setattr(server.os, "sched_getaffinity", lambda pid: {0, 2, 3}, raising=False)
    monkeypatch.setattr(server.os, "sched_setaffinity", lambda pid, cpus: None, raising=False)
    assert server.cpu_plan(2) == (2, {0, 3})
    with pytest.raises(ValueError, match="engine_cpu 1 is not among the CPUs this process "
                                         "may use: 0, 2, 3"):
        server.cpu_plan(1)
    monkeypatch.setattr(server.os, "sched_getaffinity", lambda pid: {5})
    with pytest.raises(ValueError, match="the only CPU this process may use"):
        server.cpu_plan(5)
