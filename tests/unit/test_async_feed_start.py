"""AsyncFeedClient.start() takes its snapshot after ``settle`` seconds in
all, as FeedClient.start() does, however busy the feed is: a message does
not restart the wait."""

from __future__ import annotations

import asyncio

from gateway import protocol as p
from gateway.client import AsyncFeedClient, _FeedState


class _BusyFeed:
    """A SUB socket that has a heartbeat every 10 ms, for ever."""

    def __init__(self) -> None:
        self.reads = 0

    async def recv(self) -> bytes:
        await asyncio.sleep(0.01)
        self.reads += 1
        return p.encode(p.FeedHeartbeat(seq=self.reads, ts=0))


def test_start_takes_the_snapshot_while_the_feed_is_busy():
    async def scenario() -> tuple[p.Snapshot, AsyncFeedClient]:
        feed = AsyncFeedClient.__new__(AsyncFeedClient)     # only what start() uses
        feed.sub = _BusyFeed()
        feed.state = _FeedState()

        async def snapshot(session: str = "", key: str = "") -> p.Snapshot:
            return p.Snapshot(seq=7, session=session, key=key, events=[])
        feed.snapshot = snapshot
        return await asyncio.wait_for(feed.start(settle=0.2), 20), feed

    snap, feed = asyncio.run(scenario())
    assert snap.seq == 7 and feed.state.covered == 7
    assert feed.state.buffer                  # what came meanwhile is kept for updates()
