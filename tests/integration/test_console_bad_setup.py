"""`lotex broker`, `lotex op` and `lotex watch` with a key file, an endpoints
file or an endpoint that cannot be used say why in one line and exit 2 (never
a traceback, never a hang: a socket whose CURVE key was refused is closed, so
the context's term() returns); a snapshot service that stops answering while
`lotex watch` runs is one line, exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import zmq

from gateway.cli import main
from gateway.client import (Client, ClientError, ClientSetupError, FeedClient, _curve_socket)
from gateway.keys import ClientKey, initialise
from tests.integration.gateway_harness import running

REPO = Path(__file__).resolve().parents[2]
NOWHERE = "tcp://127.0.0.1:9"         # nothing listens: a good key would wait for an answer


def _key_file(data: Path, user: str, name: str, change: Callable[[dict], Any]) -> Path:
    key = json.loads((data / "clients" / f"{user}.json").read_text())
    changed = change(key)
    path = data / f"{name}.json"
    path.write_text(json.dumps(key if changed is None else changed))
    return path


def _endpoints(data_dir: Path, **endpoints: Any) -> None:
    body = dict(broker=NOWHERE, operator=NOWHERE, feed=NOWHERE, data=NOWHERE)
    body.update(endpoints)
    (data_dir / "endpoints.json").write_text(json.dumps(body))


CASES = {
    "secret key too short": ("broker", lambda k: k.update(secret_key="short"), {}, []),
    "secret key not Z85": ("broker", lambda k: k.update(secret_key='"' * 40), {}, []),
    "secret key a number": ("broker", lambda k: k.update(secret_key=123), {}, []),
    "server key not text": ("broker", lambda k: k.update(server_public_key=[1]), {}, []),
    "key file a list": ("broker", lambda k: [k], {}, []),
    "key file a string": ("op", lambda k: "op", {}, []),
    "endpoint garbage": ("op", None, {}, ["--endpoint", "garbage"]),
    "endpoints file endpoint a number": ("op", None, {"operator": 5}, []),
    "endpoints file a list": ("broker", None, None, []),
    "watch: secret key too short": ("watch", lambda k: k.update(secret_key="short"), {}, []),
    "watch: key file a list": ("watch", lambda k: [k], {}, []),
    "watch: data endpoint garbage": ("watch", None, {"data": "garbage"}, []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_key_or_endpoint_that_cannot_be_used_is_one_line_and_exit_2(tmp_path, case):
    console, change, endpoints, extra = CASES[case]
    initialise(tmp_path)
    user = {"broker": "b1", "op": "op", "watch": "viewer"}[console]
    if endpoints is None:
        (tmp_path / "endpoints.json").write_text("[]")
    else:
        _endpoints(tmp_path, **endpoints)
    key = [] if change is None else ["--key", str(_key_file(tmp_path, user, "bad", change))]
    action = {"broker": ["--timeout", "1", "status"], "op": ["--timeout", "1", "reload"],
              "watch": ["--once"]}[console]
    argv = [console, "--data", str(tmp_path), *key, *extra, *action]
    # a subprocess: the flaw this guards against is a hang in context.term()
    done = subprocess.run([sys.executable, "-m", "gateway.cli", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert (done.returncode, len(lines)) == (2, 1), done.stderr
    assert lines[0].startswith(f"lotex {console}: ") and "Traceback" not in done.stderr


class _Recording(zmq.Context):
    """A context that keeps every socket it made."""

    made: list[zmq.Socket] = []          # (declared: else pyzmq takes it for an option)

    def __init__(self) -> None:
        super().__init__()
        self.made: list[zmq.Socket] = []

    def socket(self, *args: Any, **kwargs: Any) -> Any:
        sock = super().socket(*args, **kwargs)
        self.made.append(sock)
        return sock

    def left_open(self) -> int:
        """Close what was left open (so that term() returns); return how many."""
        left = [sock for sock in self.made if not sock.closed]
        for sock in left:
            sock.close(linger=0)
        self.term()
        return len(left)


def _viewer(tmp_path: Path, **fields: Any) -> ClientKey:
    initialise(tmp_path)
    key = ClientKey.load(tmp_path / "clients" / "viewer.json")
    for name, value in fields.items():
        setattr(key, name, value)
    return key


@pytest.mark.parametrize("fields, endpoint, says", [
    ({"secret_key": "short"}, NOWHERE, "secret_key"),
    ({"public_key": "\ud800" * 40}, NOWHERE, "public_key"),
    ({}, "garbage", "garbage"),
    ({}, 7, "endpoint 7"),
])
def test_a_socket_that_cannot_be_set_up_is_closed(tmp_path, fields, endpoint, says):
    key = _viewer(tmp_path, **fields)
    context = _Recording()
    try:
        with pytest.raises(ClientSetupError, match=says):
            _curve_socket(context, zmq.DEALER, key, endpoint)
    finally:
        left_open = context.left_open()
    assert len(context.made) == 1 and not left_open


def test_clients_close_what_they_opened_when_the_key_or_endpoint_is_bad(tmp_path):
    key = _viewer(tmp_path, role="broker", secret_key="short")
    context = _Recording()
    try:
        client = Client(key, NOWHERE, context=context, keepalive=False)
        with pytest.raises(ClientSetupError, match="secret_key"):
            client.connect()
        client.close()
        with pytest.raises(ClientSetupError, match="garbage"):   # the SUB socket first
            FeedClient(_viewer(tmp_path), "garbage", NOWHERE, context=context)
        with pytest.raises(ClientSetupError, match="secret_key"):  # then the data socket
            FeedClient(key, NOWHERE, NOWHERE, context=context)
    finally:
        left_open = context.left_open()
    assert len(context.made) == 4 and not left_open


def test_a_feed_client_with_a_bad_key_ends_its_own_context(tmp_path, monkeypatch):
    key = _viewer(tmp_path, secret_key="short")
    made: list[zmq.Context] = []

    class _Context(zmq.Context):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)
    monkeypatch.setattr(zmq, "Context", _Context)
    with pytest.raises(ClientSetupError):
        FeedClient(key, NOWHERE, NOWHERE)
    assert len(made) == 1 and made[0].closed


def test_watch_says_in_one_line_when_the_snapshot_service_stops_answering(
        tmp_path, capsys, monkeypatch):
    def unanswered(self: FeedClient, *args: Any, **kwargs: Any) -> Any:
        raise ClientError("no answer from the snapshot service in time")
        yield                                                    # a generator, as updates()

    with running(tmp_path):
        monkeypatch.setattr(FeedClient, "updates", unanswered)
        assert main(["watch", "--data", str(tmp_path), "--seconds", "30"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines()
           if not line.startswith("{")]                         # (the server's log lines)
    assert err == ["lotex watch: no answer from the snapshot service in time"]


@pytest.mark.parametrize("argv", [
    ["op", "--timeout", "nan", "reload"],
    ["op", "--timeout", "0", "reload"],
    ["broker", "--timeout", "-1", "status"],
    ["broker", "--timeout", "inf", "status"],
    ["watch", "--seconds", "nan"],
    ["watch", "--seconds", "-5"],
])
def test_a_timeout_or_duration_that_is_no_number_of_seconds_is_refused(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as stopped:
        main([argv[0], "--data", str(tmp_path), *argv[1:]])
    assert stopped.value.code == 2
    assert "number of seconds" in capsys.readouterr().err
