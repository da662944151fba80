"""The live board says when the feed has gone silent (no Market message and
no heartbeat for three heartbeat intervals: the server is down or out of
reach), instead of showing a stale board as if all were well."""

from __future__ import annotations

import threading

from gateway.cli import main
from gateway.client import FeedClient
from tests.integration.gateway_harness import running


def test_the_live_board_says_when_the_feed_goes_silent(tmp_path, capsys, monkeypatch):
    started = threading.Event()
    real_start = FeedClient.start

    def start(self: FeedClient, *args: object, **kwargs: object) -> object:
        snap = real_start(self, *args, **kwargs)
        started.set()
        return snap

    monkeypatch.setattr(FeedClient, "start", start)
    (tmp_path / "config.toml").write_text("heartbeat_ms = 100\n")  # as a real server reads it
    codes: list[int] = []
    with running(tmp_path, heartbeat_ms=100):
        watcher = threading.Thread(target=lambda: codes.append(
            main(["watch", "--data", str(tmp_path), "--seconds", "5"])))
        watcher.start()
        assert started.wait(30)
    # the server has stopped: its feed sends nothing more
    watcher.join(60)
    assert codes == [0]
    out = capsys.readouterr().out
    assert "feed silent for" in out and "heartbeat every 0.1 s" in out


def test_a_live_feed_is_not_called_silent(tmp_path, capsys):
    (tmp_path / "config.toml").write_text("heartbeat_ms = 100\n")
    with running(tmp_path, heartbeat_ms=100):
        assert main(["watch", "--data", str(tmp_path), "--seconds", "1.5"]) == 0
    assert "feed silent" not in capsys.readouterr().out
