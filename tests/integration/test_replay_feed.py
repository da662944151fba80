"""`lotex replay feed`: the recorded public events re-published in the live framing."""

from __future__ import annotations

import threading

import pytest
import zmq

from exchange.codec import decode_entry
from gateway import protocol as p
from gateway.cli import main
from gateway.client import FeedClient
from gateway.keys import ClientKey
from recorder import layout
from recorder.journal import read_journal
from replay import feed
from replay.source import Source

NS = 10**9


def public_entries(data_dir):
    out = []
    for rec in read_journal(layout.journal_dir(data_dir)):
        entry = decode_entry(rec.payload)
        public = [event for event in entry.events if not event.to]
        if public:
            out.append((entry.env.seq, entry.env.ts, public))
    return out


def receive_all(sub, timeout_ms=5_000):
    got = []
    while sub.poll(timeout_ms, zmq.POLLIN):
        message = p.feed_decoder.decode(sub.recv())
        got.append(message)
        if type(message) is p.FeedHeartbeat:
            break
    return got


def test_the_feed_repeats_every_public_event_as_the_live_feed_would(keyed_sample):
    publisher = feed.Publisher("tcp://127.0.0.1:0")
    sub = publisher.context.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(publisher.endpoint)
    try:
        assert publisher.wait_for_subscriber(10)
        sent = feed.replay(Source.open(keyed_sample), publisher, speed=None)
        got = receive_all(sub)
    finally:
        sub.close(linger=0)
        publisher.close()
    expected = public_entries(keyed_sample)
    markets = [m for m in got if type(m) is p.Market]
    assert [(m.seq, m.ts, m.events) for m in markets] == expected
    assert [m.prev for m in markets] == [0] + [m.seq for m in markets[:-1]]
    assert type(got[-1]) is p.FeedHeartbeat and got[-1].seq == expected[-1][0]
    assert (sent.messages, sent.events, sent.last_seq) == (
        len(expected), sum(len(e) for _, _, e in expected), expected[-1][0])
    assert not any(event.to for m in markets for event in m.events)


def test_pacing_follows_the_recorded_gaps_divided_by_the_speed(keyed_sample):
    """Waits are on a schedule from the start: cumulative min(gap / speed, max_gap)."""
    waits: list[float] = []

    class Sink:
        def send(self, data):
            pass

    sent = feed.replay(Source.open(keyed_sample), Sink(), speed=10, max_gap=30.0,
                       sleep=waits.append, clock=lambda: 0.0, from_seq=41, to_seq=48)
    expected = [(seq, ts) for seq, ts, _ in public_entries(keyed_sample) if 41 <= seq <= 48]
    assert sent.messages == len(expected)
    due, schedule = 0.0, []
    for (_, before), (_, after) in zip(expected, expected[1:]):
        due += min((after - before) / NS / 10, 30.0)
        schedule.append(due)
    assert waits == pytest.approx(schedule)
    assert waits[:3] == pytest.approx([0.0, 30.0, 36.0])   # same time, 5 min / 10, 1 min / 10
    waits.clear()
    feed.replay(Source.open(keyed_sample), Sink(), speed=1, max_gap=2.0, sleep=waits.append,
                clock=lambda: 0.0, from_seq=55, limit=4)
    assert waits == pytest.approx([2.0, 4.0, 6.0])          # 10, 5 and 5 minutes, capped at 2 s


def test_lotex_watch_clients_get_snapshots_and_replays(keyed_sample, tmp_path):
    """FeedClient (what `lotex watch` uses) against the replayed feed and its data service."""
    publisher = feed.Publisher("tcp://127.0.0.1:0")
    data = feed.DataService(keyed_sample / "keys", "tcp://127.0.0.1:0", publisher.context)
    endpoints = feed.write_endpoints(tmp_path, publisher.endpoint, data.endpoint, data.public_key)
    assert endpoints.exists()
    result: dict = {}

    def serve():
        try:
            if publisher.wait_for_subscriber(10):
                result["sent"] = feed.replay(Source.open(keyed_sample), publisher, speed=1_000,
                                             max_gap=0.02, data=data)
            data.serve(3.0)
        except BaseException as exc:  # noqa: BLE001  (reported to the test thread)
            result["error"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    key = ClientKey.load(keyed_sample / "clients" / "viewer.json")
    seqs: list[int] = []
    try:
        with FeedClient(key, publisher.endpoint, data.endpoint, timeout=5) as client:
            snap = client.start(settle=0.3)
            for market in client.updates(timeout=2.0):
                seqs.append(market.seq)
    finally:
        thread.join(15)
        data.close()
        publisher.close()
    assert "error" not in result, result.get("error")
    expected = [seq for seq, _, _ in public_entries(keyed_sample)]
    assert snap.seq in [0] + expected
    assert seqs == [seq for seq in expected if seq > snap.seq]
    assert data.answered >= 1


def test_feed_cli_is_bounded(keyed_sample, capsys):
    assert main(["replay", "feed", str(keyed_sample), "--fast", "--wait", "0", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "published 5 messages" in out and "snapshot and replay service on tcp://127.0.0.1:" in out
    assert main(["replay", "feed", str(keyed_sample), "--speed", "0"]) == 2


def test_a_publisher_lets_a_slow_subscriber_take_the_end_before_it_closes():
    """A --fast replay queues far ahead of a slow subscriber: closing at once
    dropped the queued end of the stream (27,078 of 116,352 messages seen)."""
    import time

    from replay.feed import Publisher
    publisher = Publisher("tcp://127.0.0.1:0")
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.rcvhwm = 10
    sub.setsockopt(zmq.RCVBUF, 4096)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(publisher.endpoint)
    assert publisher.wait_for_subscriber(5)
    got = []

    def read() -> None:
        while sub.poll(3000):
            got.append(sub.recv())
            time.sleep(0.0001)

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(20_000):
        publisher.send(b"m%05d" % n + b"." * 200)
    publisher.close(drain=60)                 # returns once the queue is delivered
    reader.join(timeout=120)
    sub.close(linger=0)
    assert len(got) == 20_000 and got[-1].startswith(b"m19999")


def test_the_replay_service_pages_what_was_published_as_it_was_sent(keyed_sample):
    publisher = feed.Publisher("tcp://127.0.0.1:0")
    data = feed.DataService(keyed_sample / "keys", "tcp://127.0.0.1:0", publisher.context)
    try:
        feed.replay(Source.open(keyed_sample), publisher, speed=None, data=data)
        expected = [seq for seq, _, _ in public_entries(keyed_sample)]
        got: list = []
        from_seq = 1
        while True:
            reply = p.data_reply_decoder.decode(
                data._answer(p.encode(p.ReplayRequest(from_seq=from_seq, limit=7))))
            got += reply.messages
            if not reply.more:
                break
            assert reply.through == reply.messages[-1].seq
            from_seq = reply.through + 1
        assert [m.seq for m in got] == expected and reply.through == expected[-1]
        assert [m.prev for m in got] == [0] + expected[:-1]
        middle = p.data_reply_decoder.decode(data._answer(p.encode(
            p.ReplayRequest(from_seq=expected[3], to_seq=expected[5]))))
        assert [m.seq for m in middle.messages] == expected[3:6] and not middle.more
    finally:
        data.close()
        publisher.close()


def answer_from_every_message(sent: list[tuple[int, bytes]], request) -> bytes:
    """The replay service's answer when it kept every message sent (before the ring)."""
    import bisect

    import msgspec
    last = sent[-1][0] if sent else 0
    if request.from_seq < 1 or not 1 <= request.limit <= 10000 \
            or (request.to_seq and request.to_seq < request.from_seq):
        return p.encode(p.SessionRejected(code="bad_request",
                                          text=p.SESSION_REJECTS["bad_request"]))
    seqs = [seq for seq, _ in sent]
    upto = min(request.to_seq or last, last)
    i = bisect.bisect_left(seqs, request.from_seq)
    j = bisect.bisect_right(seqs, upto)
    end = min(j, i + request.limit)
    more = i + request.limit < j
    through = seqs[end - 1] if more else max(upto, request.from_seq - 1)
    return p.encode(p.ReplayOut(messages=[msgspec.Raw(m) for _, m in sent[i:end]],
                               through=through, more=more))


@pytest.mark.parametrize("from_seq, limit", [(1, 0), (30, 25)])
def test_the_replay_service_keeps_a_ring_and_reads_older_messages_back(keyed_sample, from_seq,
                                                                        limit):
    """With a ring of 4 messages, every range (older than the ring, across
    it, inside it, past the end; a feed started past entry 1 and one cut
    short) is answered byte for byte as when every message sent was kept."""
    publisher = feed.Publisher("tcp://127.0.0.1:0")
    data = feed.DataService(keyed_sample / "keys", "tcp://127.0.0.1:0", publisher.context,
                            ring=4)
    sent: list[tuple[int, bytes]] = []
    keep = data.published

    def published(market, encoded):
        sent.append((market.seq, encoded))
        keep(market, encoded)

    data.published = published
    try:
        feed.replay(Source.open(keyed_sample), publisher, speed=None, from_seq=from_seq,
                    limit=limit, data=data)
        assert len(sent) > 20 and len(data.ring.msgs) <= 8
        assert data.ring.first_kept() > sent[10][0]
        last = sent[-1][0]
        asked = 0
        for first in range(0, last + 3):
            for to_seq in sorted({0, first - 1, first, first + 4, last + 9}):
                for most in (1, 3, 10_000):
                    request = p.encode(p.ReplayRequest(from_seq=first, to_seq=max(0, to_seq),
                                                       limit=most))
                    assert data._answer(request) == answer_from_every_message(
                        sent, p.data_request_decoder.decode(request)), (first, to_seq, most)
                    asked += 1
        assert asked > 600
    finally:
        data.close()
        publisher.close()


def _run_with_service(data_dir, from_seq: int, context: zmq.Context) -> feed.DataService:
    publisher = feed.Publisher("tcp://127.0.0.1:0", context)
    data = feed.DataService(data_dir / "keys", "tcp://127.0.0.1:0", context, ring=4)
    try:
        feed.replay(Source.open(data_dir), publisher, speed=None, from_seq=from_seq, data=data)
    finally:
        publisher.close()
    return data


def test_a_feed_started_past_entry_1_answers_as_the_live_server(keyed_sample, monkeypatch):
    """`replay feed --from-seq N` holds what was published before N, as the
    live gateway did when it published N: the same snapshots (whole, of a
    session, of a lot) and the same replays of messages before N, with the
    entries marked as the gateway marks them (here every 8th)."""
    monkeypatch.setattr(feed, "ENTRY_MARK_EVERY", 8)
    public = public_entries(keyed_sample)
    middle = public[len(public) // 2][0]
    context = zmq.Context()
    whole = _run_with_service(keyed_sample, 1, context)
    later = _run_with_service(keyed_sample, middle, context)
    try:
        serial = next(e.serial for _, _, events in public for e in events
                      if type(e).__name__ == "LotScheduled")
        requests = [p.SnapshotRequest(), p.SnapshotRequest(session="S1"),
                    p.SnapshotRequest(key=serial),
                    p.ReplayRequest(from_seq=1, to_seq=middle - 1),
                    p.ReplayRequest(from_seq=1, limit=5), p.ReplayRequest(from_seq=1),
                    p.ReplayRequest(from_seq=public[3][0], to_seq=middle + 3)]
        for request in requests:
            assert later._answer(p.encode(request)) == whole._answer(p.encode(request)), request
        early = p.data_reply_decoder.decode(later._answer(p.encode(requests[3])))
        assert [m.seq for m in early.messages] == [s for s, _, _ in public if s < middle]
        snap = p.data_reply_decoder.decode(later._answer(p.encode(requests[0])))
        assert snap.seq == public[-1][0] and any(
            type(e).__name__ == "SessionCreated" for e in snap.events)
        assert list(later.ring.entry_seqs) == list(whole.ring.entry_seqs) != []
        assert list(later.ring.entry_prevs) == list(whole.ring.entry_prevs)
        for seq, prev in zip(later.ring.entry_seqs, later.ring.entry_prevs):
            assert seq % 8 == 0 and prev == max((s for s, _, _ in public if s < seq), default=0)
    finally:
        whole.close()
        later.close()
        context.term()


def test_lotex_watch_counts_a_replayed_feeds_time_left_by_the_replays_clock(keyed_sample,
                                                                            tmp_path, capsys):
    """Recorded in March 2026: by today's clock every lot would have 0 s left."""
    publisher = feed.Publisher("tcp://127.0.0.1:0")
    data = feed.DataService(keyed_sample / "keys", "tcp://127.0.0.1:0", publisher.context)
    feed.write_endpoints(tmp_path, publisher.endpoint, data.endpoint, data.public_key)
    result: dict = {}
    watched = threading.Event()

    def serve():
        try:
            if publisher.wait_for_subscriber(10):     # up to 10 min after L-BA opened (1 day)
                feed.replay(Source.open(keyed_sample), publisher, speed=None, to_seq=48,
                            data=data)
            while not watched.is_set():
                data.serve(0.05)
        except BaseException as exc:  # noqa: BLE001  (reported to the test thread)
            result["error"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert main(["watch", "--data", str(tmp_path), "--key",
                     str(keyed_sample / "clients" / "viewer.json"), "--seconds", "2"]) == 0
    finally:
        watched.set()
        thread.join(15)
        data.close()
        publisher.close()
    assert "error" not in result, result.get("error")
    row, = [line for line in capsys.readouterr().out.splitlines() if "L-BA" in line]
    assert " 23h 4" in row or " 23h 50m" in row, row


def test_lotex_watch_once_after_a_replay_ended_counts_by_the_replays_clock(keyed_sample,
                                                                           tmp_path, capsys):
    """A board taken once the replay has sent its last message hears no more
    feed messages: its time left came from today's clock (0 s for every lot
    recorded in March 2026). The snapshot carries the feed's time."""
    publisher = feed.Publisher("tcp://127.0.0.1:0")
    data = feed.DataService(keyed_sample / "keys", "tcp://127.0.0.1:0", publisher.context)
    feed.write_endpoints(tmp_path, publisher.endpoint, data.endpoint, data.public_key)
    first = publisher.context.socket(zmq.SUB)        # the subscriber the replay waits for
    first.subscribe(b"")
    first.connect(publisher.endpoint)
    result: dict = {}
    replayed, watched = threading.Event(), threading.Event()

    def serve():
        try:
            if publisher.wait_for_subscriber(10):
                feed.replay(Source.open(keyed_sample), publisher, speed=None, to_seq=48,
                            data=data)
            replayed.set()
            while not watched.is_set():
                data.serve(0.05)
        except BaseException as exc:  # noqa: BLE001  (reported to the test thread)
            result["error"] = exc
            replayed.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert replayed.wait(30)
        assert main(["watch", "--data", str(tmp_path), "--key",
                     str(keyed_sample / "clients" / "viewer.json"), "--once"]) == 0
    finally:
        watched.set()
        thread.join(15)
        first.close(linger=0)
        data.close()
        publisher.close()
    assert "error" not in result, result.get("error")
    row, = [line for line in capsys.readouterr().out.splitlines() if "L-BA" in line]
    assert " 23h 50m" in row or " 23h 49m" in row, row
