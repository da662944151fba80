"""Security of the key store and the data directory: user ids checked whole
(no trailing newline), the last operator kept unless forced, key rotation
(the new key serves, the old one is refused by a running server), and the
data directory, journal and snapshots readable by their owner only."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import zmq

from exchange.commands import CreateSession, RegisterParty
from gateway.cli import main
from gateway.client import Client, ClientError, Endpoints, FeedClient, SessionRejectedError
from gateway.config import private_data_dir
from gateway.keys import ClientKey, KeyStore, KeyStoreError, initialise
from recorder.journal import Journal
from recorder.snapshots import write_snapshot
from tests.integration.gateway_harness import client, running, wait_for

REPO = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def keys(data: Path, *args: str) -> int:
    return main(["keys", "--data", str(data), *args])


# ------------------------------------------------------------------------- user ids

def test_a_user_id_with_a_trailing_newline_or_other_bad_ids_are_refused(tmp_path, capsys):
    assert keys(tmp_path, "init", "--defaults") == 0
    store = KeyStore(tmp_path)
    for bad in ("evil\n", "evil\r\n", "\nevil", "Evil", "1evil", "ev il", "a" * 33, "",
                "../evil", "system"):
        with pytest.raises(KeyStoreError, match="must be 1-32"):
            store.add_user(bad, "broker")
    capsys.readouterr()
    assert keys(tmp_path, "add", "evil\n", "--role", "broker") == 1
    assert "must be 1-32" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "clients").iterdir()) == [
        "b1.json", "b2.json", "op.json", "viewer.json"]
    assert set(store.users()) == {"op", "b1", "b2", "viewer"}
    store.add_user("a" * 32, "viewer")                  # the longest good id still passes
    store.add_user("x.y-z_9", "broker")


# ------------------------------------------------------------------ last operator

def test_revoking_the_last_operator_is_refused_unless_forced(tmp_path, capsys):
    assert keys(tmp_path, "init", "--defaults") == 0
    store = KeyStore(tmp_path)
    capsys.readouterr()
    assert keys(tmp_path, "revoke", "op") == 1
    err = capsys.readouterr().err
    assert "last active operator" in err and "--force" in err
    assert not store.users()["op"].revoked
    with pytest.raises(KeyStoreError, match="last active operator"):
        store.revoke("op")

    # with a second operator the first may go; then the second is the last
    assert keys(tmp_path, "add", "op2", "--role", "operator") == 0
    assert keys(tmp_path, "revoke", "op") == 0
    assert keys(tmp_path, "revoke", "b1") == 0          # brokers are never held back
    capsys.readouterr()
    assert keys(tmp_path, "revoke", "op2") == 1
    assert "last active operator" in capsys.readouterr().err
    assert not store.users()["op2"].revoked

    assert keys(tmp_path, "revoke", "op2", "--force") == 0
    users = store.users()
    assert users["op"].revoked and users["op2"].revoked
    assert not any(u.role == "operator" and not u.revoked for u in users.values())


# ------------------------------------------------------------------------- rotation

def _connects(key: ClientKey, endpoint: str) -> bool:
    attempt = Client(key, endpoint, timeout=1.0)
    try:
        attempt.connect()
        return True
    except ClientError:
        return False
    finally:
        attempt.close()


def test_rotate_gives_a_new_key_that_serves_and_a_running_server_refuses_the_old(
        tmp_path, capsys):
    with running(tmp_path, keys_check_ms=50) as server:
        endpoints = Endpoints.load(tmp_path)
        key_file = tmp_path / "clients" / "b1.json"
        old = ClientKey.load(key_file)
        before = KeyStore(tmp_path).users()["b1"]
        assert _connects(old, endpoints.broker)

        capsys.readouterr()
        assert keys(tmp_path, "rotate", "b1") == 0
        out = capsys.readouterr().out
        assert str(key_file) in out

        new = ClientKey.load(key_file)
        assert (new.user, new.role, new.server_public_key) == (
            old.user, old.role, old.server_public_key)
        assert new.public_key != old.public_key and new.secret_key != old.secret_key
        assert mode(key_file) == 0o600
        assert not list((tmp_path / "clients").glob(".*.tmp"))
        after = KeyStore(tmp_path).users()["b1"]
        assert after.public_key == new.public_key
        assert (after.role, after.clients, after.cancel_on_disconnect, after.revoked,
                after.created_ns) == (before.role, before.clients, before.cancel_on_disconnect,
                                      False, before.created_ns)

        # no restart and no Reload: the server's own check of users.json
        assert wait_for(lambda: server.users["b1"].public_key == new.public_key, timeout=10)
        assert wait_for(lambda: _connects(new, endpoints.broker), timeout=10)
        with Client(new, endpoints.broker, timeout=10.0) as b1:
            b1.connect()
            assert b1.ok(RegisterParty(name="Acme")).accepted
        assert not _connects(old, endpoints.broker)
        with FeedClient(old, endpoints.feed, endpoints.data, timeout=1.0) as feed:
            with pytest.raises(ClientError):
                feed.snapshot()
        with FeedClient(new, endpoints.feed, endpoints.data, timeout=10.0) as feed:
            feed.snapshot()


def test_rotate_ends_a_session_logged_on_with_the_old_key(tmp_path):
    with running(tmp_path), client(tmp_path, "op") as op, client(tmp_path, "b1") as b1:
        assert b1.ok(RegisterParty(name="before")).accepted
        KeyStore(tmp_path).rotate("b1")
        op.reload_keys()
        with pytest.raises(SessionRejectedError):
            b1.request(RegisterParty(name="after"), timeout=5.0)


def test_rotate_refuses_a_revoked_or_unknown_user(tmp_path, capsys):
    assert keys(tmp_path, "init", "--defaults") == 0
    assert keys(tmp_path, "revoke", "b2") == 0
    users_file = tmp_path / "keys" / "users.json"
    key_file = tmp_path / "clients" / "b2.json"
    users_before, key_before = users_file.read_bytes(), key_file.read_bytes()
    capsys.readouterr()

    assert keys(tmp_path, "rotate", "b2") == 1
    err = capsys.readouterr().err
    assert "'b2' is revoked" in err
    assert keys(tmp_path, "rotate", "nobody") == 1
    assert "no user 'nobody'" in capsys.readouterr().err
    with pytest.raises(KeyStoreError, match="revoked"):
        KeyStore(tmp_path).rotate("b2")
    assert users_file.read_bytes() == users_before and key_file.read_bytes() == key_before
    assert not (tmp_path / "clients" / "nobody.json").exists()
    # a revoked id stays revoked: it cannot be added again either
    assert keys(tmp_path, "add", "b2", "--role", "broker") == 1


# ------------------------------------------------------------- concurrent changes

def _lock_waiters(pid: int) -> bool:
    """Whether process ``pid`` waits for a file lock (a blocked request is
    listed with "->" in /proc/locks)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()          # "1: -> FLOCK ADVISORY WRITE PID dev:inode 0 EOF"
        if "->" in fields and fields[fields.index("->") + 4:][:1] == [str(pid)]:
            return True
    return False


def test_a_keys_change_waits_for_the_store_lock_and_reads_the_store_after_it(tmp_path):
    """A second writer (here the test, holding ``keys/LOCK``, between its
    read and its write) and `lotex keys revoke b1` at once: the revoke waits
    for the lock, reads the store the first one wrote, and both changes stay
    (without the lock the revoke's write, or the test's, is lost)."""
    import fcntl
    assert keys(tmp_path, "init", "--defaults") == 0
    users_file = tmp_path / "keys" / "users.json"
    fd = os.open(tmp_path / "keys" / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        body = json.loads(users_file.read_text())            # the first writer's read
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "keys", "--data", str(tmp_path),
             "revoke", "b1"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # until it blocks on the lock (the fix) or is done (no lock: the race lost)
        assert wait_for(lambda: proc.poll() is not None or _lock_waiters(proc.pid),
                        timeout=60)
        assert proc.poll() is None, "lotex keys revoke did not wait for keys/LOCK"
        body["users"]["carol"] = dict(body["users"]["b2"],    # the first writer's change
                                      public_key=zmq.curve_keypair()[0].decode())
        tmp = users_file.with_name(".users.json.test.tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, users_file)
    finally:
        os.close(fd)                                          # releases the lock
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    proc.stderr.close()
    users = KeyStore(tmp_path).users()
    assert users["b1"].revoked and "carol" in users


CONCURRENT_WRITER = """
import sys, time
from pathlib import Path
from gateway.keys import KeyStore, initialise
data, index, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
store, _ = initialise(data)           # every process may be the one that creates it
for j in range(4):
    store.add_user(f"u{index}-{j}", "broker")
    if index == 0:
        store.rotate("b1")
    if index == 1 and j == 0:
        store.revoke("b2")
    if index == 2 and j == 0:
        store.revoke("viewer")
"""


def test_concurrent_keys_changes_lose_nothing(tmp_path):
    """Eight processes change one new store at once (each initialises it,
    adds users; one rotates b1's key again and again, two revoke): every
    change is in the store, every key file matches it, and every client key
    file names the one server key."""
    data, go = tmp_path / "data", tmp_path / "go"
    writers = 8
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(data), str(i),
                               str(go)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              stderr=subprocess.PIPE)
             for i in range(writers)]
    try:
        time.sleep(0.5)                        # (not an assert: most of them are waiting)
        go.touch()
        for proc in procs:
            assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
    store = KeyStore(data)
    users = store.users()
    added = {f"u{i}-{j}" for i in range(writers) for j in range(4)}
    assert added <= set(users), f"lost adds: {sorted(added - set(users))}"
    assert users["b2"].revoked and users["viewer"].revoked and not users["b1"].revoked
    server_public = store.server_keys()[0].decode()
    for uid, user in users.items():
        key = ClientKey.load(store.client_key_path(uid))
        assert key.public_key == user.public_key, f"{uid}: the store lost its key file's key"
        assert key.server_public_key == server_public
    assert not list((data / "keys").glob(".*.tmp")) and not list((data / "clients").glob(".*.tmp"))


# --------------------------------------------------------------- a damaged store

def _replace_users(data: Path, body: object) -> None:
    """Write users.json as an editor that writes a new file and renames it."""
    users_file = data / "keys" / "users.json"
    tmp = users_file.with_name(".users.json.edit")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, users_file)


def _damaged(body: dict, how: str) -> object:
    body = json.loads(json.dumps(body))
    body["users"]["b1"]["revoked"] = True                # must not take effect either
    if how == "bad public key":
        body["users"]["b2"]["public_key"] = "not-a-z85-key"
    elif how == "key of 28 bytes":
        body["users"]["b2"]["public_key"] = body["users"]["b2"]["public_key"][:35]
    elif how == "no users":
        return {"version": 1}
    elif how == "bad role":
        body["users"]["b2"]["role"] = "admin"
    elif how == "unknown field":
        body["users"]["b2"]["is_admin"] = True
    elif how == "not json":
        return None
    return body


DAMAGE = ("bad public key", "key of 28 bytes", "no users", "bad role", "unknown field",
          "not json")


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_store_is_refused_whole_and_the_running_server_keeps_its_users(
        tmp_path, capsys, how):
    """A bad edit of users.json: the server logs `keys_reload_failed` once for
    that version of the file (not at each check or Reload), keeps every user
    it had (b1, revoked in the same edit, still serves), and goes on
    serving; the next good version is read."""
    with running(tmp_path, keys_check_ms=20) as server, \
            client(tmp_path, "op") as op, client(tmp_path, "b1") as b1:
        assert b1.ok(RegisterParty(name="before")).accepted
        users_file = tmp_path / "keys" / "users.json"
        good = json.loads(users_file.read_text())
        capsys.readouterr()
        damaged = _damaged(good, how)
        if damaged is None:
            users_file.with_name(".users.json.edit").write_text('{"users": {"op": ')
            os.replace(users_file.with_name(".users.json.edit"), users_file)
        else:
            _replace_users(tmp_path, damaged)
        for _ in range(5):                    # each forces a reload: still one line
            assert op.reload_keys() == 4      # the four users from before the edit
        time.sleep(0.2)                       # ten checks of the file (none is asserted on)
        assert b1.ok(RegisterParty(name="after the bad edit")).accepted
        assert _connects(ClientKey.load(tmp_path / "clients" / "b2.json"),
                         Endpoints.load(tmp_path).broker)
        err = capsys.readouterr().err
        assert err.count('"keys_reload_failed"') == 1, err
        assert "keys_reloaded" not in err

        _replace_users(tmp_path, _damaged(good, "bad role"))  # another bad version: logged
        assert op.reload_keys() == 4
        assert capsys.readouterr().err.count('"keys_reload_failed"') == 1

        good["users"]["b1"]["revoked"] = True             # a good version is read
        _replace_users(tmp_path, good)
        assert op.reload_keys() == 3
        assert server.users["b1"].revoked
        with pytest.raises(SessionRejectedError):
            b1.request(RegisterParty(name="revoked"), timeout=5.0)
        assert server.failed is None


@pytest.mark.parametrize("how", DAMAGE)
def test_serve_refuses_a_damaged_store_in_one_line(tmp_path, how):
    assert keys(tmp_path, "init", "--defaults") == 0
    damaged = _damaged(json.loads((tmp_path / "keys" / "users.json").read_text()), how)
    if damaged is None:
        (tmp_path / "keys" / "users.json").write_text('{"users": ')
    else:
        _replace_users(tmp_path, damaged)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--data", str(tmp_path),
         "--random-ports"], capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith("lotex serve: cannot start: the key store "), done.stderr
    assert "is damaged" in last and "users.json" in last
    assert not (tmp_path / "endpoints.json").exists()


def test_serve_refuses_a_damaged_server_key_file_in_one_line(tmp_path):
    """A damaged keys/server.json stopped the start with a traceback (the
    sockets' shutdown ran before they were made)."""
    assert keys(tmp_path, "init", "--defaults") == 0
    (tmp_path / "keys" / "server.json").write_text("{")
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--data", str(tmp_path),
         "--random-ports"], capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith("lotex serve: cannot start: the key store "), done.stderr
    assert "server.json is damaged" in last and "mend that file" in last
    assert not (tmp_path / "endpoints.json").exists()


def test_keys_commands_refuse_a_damaged_store_and_leave_it(tmp_path, capsys):
    assert keys(tmp_path, "init", "--defaults") == 0
    _replace_users(tmp_path, _damaged(json.loads(
        (tmp_path / "keys" / "users.json").read_text()), "bad public key"))
    before = (tmp_path / "keys" / "users.json").read_bytes()
    capsys.readouterr()
    for args in (("list",), ("add", "carol", "--role", "viewer"), ("revoke", "b2"),
                 ("rotate", "op")):
        assert keys(tmp_path, *args) == 1
        err = capsys.readouterr().err
        assert err.startswith("lotex keys: the key store ") and "is damaged" in err, err
    assert (tmp_path / "keys" / "users.json").read_bytes() == before


@pytest.mark.parametrize("server_json", [
    '{"public_key": "abc"',                                  # a half copy
    "{}", "[]", '{"public_key": "abc", "secret_key": "def"}',
    '{"public_key": 5, "secret_key": null}',
    '{"public_key": "%s", "secret_key": "Sup3rSecretButDamaged"}',
])
def test_keys_commands_refuse_a_damaged_server_key_file_in_a_line(tmp_path, capsys,
                                                                  server_json):
    assert keys(tmp_path, "init", "--defaults") == 0
    server_file = tmp_path / "keys" / "server.json"
    if "%s" in server_json:                     # a good public key, a damaged secret
        server_json %= json.loads(server_file.read_text())["public_key"]
    server_file.write_text(server_json)
    with pytest.raises(KeyStoreError, match="server.json is damaged"):
        KeyStore(tmp_path).server_keys()
    capsys.readouterr()
    for args in (("add", "carol", "--role", "viewer"), ("rotate", "b1")):
        assert keys(tmp_path, *args) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"lotex keys: the key store {server_file} is damaged"), err
        assert "Traceback" not in err and len(err.splitlines()) == 1
        assert "Sup3rSecret" not in err
    assert "carol" not in KeyStore(tmp_path).users()


def test_keys_commands_say_in_a_line_which_file_they_cannot_read(tmp_path, capsys):
    assert keys(tmp_path, "init", "--defaults") == 0
    users_file = tmp_path / "keys" / "users.json"
    users_file.unlink()
    users_file.mkdir()                          # read: IsADirectoryError
    capsys.readouterr()
    for args in (("list",), ("add", "carol", "--role", "viewer"), ("revoke", "b2")):
        assert keys(tmp_path, *args) == 1
        err = capsys.readouterr().err
        assert err.startswith("lotex keys: ") and str(users_file) in err, err
        assert len(err.splitlines()) == 1


# ---------------------------------------------------------------------- permissions

PRIVATE_DIRS = ("", "journal", "snapshots", "gateway", "keys", "clients")


@contextlib.contextmanager
def serving(data: Path) -> Iterator[subprocess.Popen]:
    """`lotex serve` on ``data`` (free ports on 127.0.0.1) until the block ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--data", str(data), "--random-ports"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while True:
            line = proc.stdout.readline()
            assert line, f"lotex serve exited: {proc.wait()}"
            if line.strip() == b"ready":
                break
            assert time.monotonic() < deadline, "lotex serve did not get ready"
        yield proc
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_serve_makes_its_data_directory_journal_and_snapshots_private(tmp_path, loose_umask):
    data = tmp_path / "fresh" / "data"
    with serving(data):
        with client(data, "op") as op:
            assert op.request(CreateSession(session="S1", name="private")).accepted
    # shutdown snapshots the engine and the gateway
    for name in PRIVATE_DIRS:
        assert mode(data / name) == 0o700, name
    files = {
        "journal segment": list((data / "journal").glob("*.seg")),
        "journal lock": [data / "journal" / "LOCK"],
        "snapshot": list((data / "snapshots").glob("*.snap")),
        "gateway snapshot": list((data / "gateway").glob("*.snap")),
        "key file": [data / "keys" / "server.json", *(data / "clients").glob("*.json")],
    }
    for what, paths in files.items():
        assert paths, what
        for path in paths:
            assert mode(path) == 0o600, (what, path)

    # an existing directory left open to others is closed at the next start
    os.chmod(data, 0o755)
    with serving(data):
        assert mode(data) == 0o700


def test_serve_tightens_what_a_restore_left_loose_but_never_follows_a_symlink_out(
        tmp_path, loose_umask):
    data = tmp_path / "data"
    with serving(data):
        with client(data, "op") as op:
            assert op.request(CreateSession(session="S1", name="restored")).accepted
    # its shutdown snapshots the engine and the gateway
    secret = [*(data / "journal").iterdir(), *(data / "snapshots").glob("*.snap"),
              *(data / "gateway").glob("*.snap"), data / "keys" / "server.json",
              *(data / "clients").glob("*.json")]
    for name in PRIVATE_DIRS[1:]:               # as a copy that does not keep modes leaves them
        os.chmod(data / name, 0o755)
    for path in secret:
        os.chmod(path, 0o644)
    outside_file, outside_dir = tmp_path / "notes.txt", tmp_path / "shared"
    outside_file.write_text("not the exchange's")
    outside_dir.mkdir()
    (outside_dir / "readme.txt").write_text("not the exchange's")
    os.chmod(outside_file, 0o644)
    os.chmod(outside_dir, 0o755)
    os.chmod(outside_dir / "readme.txt", 0o644)
    (data / "clients" / "notes.txt").symlink_to(outside_file)
    (data / "clients" / "shared").symlink_to(outside_dir)

    with serving(data):
        for name in PRIVATE_DIRS:
            assert mode(data / name) == 0o700, name
        for path in secret:
            assert mode(path) == 0o600, path
    assert mode(data / "keys" / "users.json") == 0o644          # public keys, as written
    assert mode(outside_file) == 0o644 and mode(outside_dir) == 0o755
    assert mode(outside_dir / "readme.txt") == 0o644


def test_private_data_dir_creates_or_tightens(tmp_path, loose_umask):
    made = private_data_dir(tmp_path / "a" / "b")
    assert mode(made) == 0o700
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    os.chmod(open_dir, 0o777)
    private_data_dir(open_dir)
    assert mode(open_dir) == 0o700


def test_journal_files_and_snapshots_are_private(tmp_path, loose_umask):
    path = tmp_path / "journal"
    with Journal.open(path, segment_bytes=4096) as journal:
        for n in range(200):                     # several segments: closed ones get an index
            journal.append(n, 1, b"sealed bid %d" % n)
        journal.commit()
    assert mode(path) == 0o700
    segments = sorted(path.glob("*.seg"))
    assert len(segments) > 1 and list(path.glob("*.idx"))
    for file in path.iterdir():
        assert mode(file) == 0o600, file
    # a torn tail moved aside on reopening is as private as the journal
    with open(segments[-1], "ab") as live:
        live.write(b"\x07" * 40)
    Journal.open(path).close()
    cut = list(path.glob("*.cut"))
    assert cut and all(mode(file) == 0o600 for file in cut)

    snaps = tmp_path / "snapshots"
    written = write_snapshot(snaps, 7, b"reserve 7654321", ts=1)
    assert mode(snaps) == 0o700 and mode(written) == 0o600
    written = write_snapshot(snaps, 8, b"reserve 7654321", ts=2)   # into an existing dir
    assert mode(written) == 0o600


def test_keys_directories_are_private(tmp_path, loose_umask):
    initialise(tmp_path / "data")
    for name in ("keys", "clients"):
        assert mode(tmp_path / "data" / name) == 0o700, name
    assert json.loads((tmp_path / "data" / "keys" / "users.json").read_text())["users"]


def test_keys_init_and_replay_sample_make_a_missing_data_directory_private(tmp_path,
                                                                          loose_umask):
    assert main(["keys", "--data", str(tmp_path / "keys-first"), "init"]) == 0
    assert mode(tmp_path / "keys-first") == 0o700
    assert main(["keys", "--data", str(tmp_path / "defaults"), "init", "--defaults"]) == 0
    assert mode(tmp_path / "defaults") == 0o700
    assert main(["replay", "sample", str(tmp_path / "sample")]) == 0
    assert mode(tmp_path / "sample") == 0o700
