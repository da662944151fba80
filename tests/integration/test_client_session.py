"""The client library against a server: what it tells the caller when a
command's copies are answered differently, one command too large for a
message, a reconnection's heartbeats, a recap's duplicates, and the end of
an AsyncClient's notices."""

from __future__ import annotations

import time
from pathlib import Path

from exchange.commands import RegisterParty
from tests.integration.gateway_harness import client, running


def test_a_throttled_copy_and_an_accepted_resend_report_the_result(tmp_path: Path):
    with running(tmp_path, max_requests_per_second=2) as server:
        # keepalive=False: the program reads only when it calls, so the
        # refusal of the first copy is still unread when the client resends it
        b1 = client(tmp_path, "b1", keepalive=False, resend_after=0.3)
        try:
            b1.send(RegisterParty(name="Filler-1", country="US"))
            b1.send(RegisterParty(name="Filler-2", country="US"))
            cid = b1.send(RegisterParty(name="Acme", country="US"))   # over the allowance
            time.sleep(1.5)                                          # the allowance refills
            result = b1.result(cid)
            assert result.accepted
            acted = [seq for seq in range(1, server.next_seq)
                     if (found := server._original(seq)) is not None
                     and getattr(found[0], "name", "") == "Acme"]
            assert acted == [result.seq]
        finally:
            b1.close()
