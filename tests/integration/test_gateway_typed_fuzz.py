"""Structure-aware fuzz over real CURVE connections: every command of the
engine, every client message and every data request, each field of the
right type but of extreme value (zero, negative, 2**63-1, 2**64-1, empty and
long strings, long lists, other users' paddles). Every message that asks
for an answer gets one, the loop never stops, and the engine's invariants
hold afterwards. The byte-level corpus and fuzz are in
`test_gateway_bad_input.py`. Seeded: ``LOTEX_FUZZ_SEED`` repeats a run."""

from __future__ import annotations

import os
import random
import typing
from typing import Any

import msgspec
import msgspec.inspect as mi
import zmq

from exchange.commands import COMMAND_TYPES, RegisterParty
from gateway import protocol as p
from tests.integration.gateway_harness import (build_market, client, raw_dealer, recv_until,
                                               running)

SEED = int(os.environ.get("LOTEX_FUZZ_SEED", "20261130"))
MESSAGES = 500
MAX_BYTES = 16384    # the harness's max_message_bytes
INTS = [0, 1, -1, 2, 100, 10**15, 10**15 + 1, 2**31, 2**63 - 1, -(2**63), 2**64 - 1]


class Maker:
    """Random values of a msgspec type, biased to the edges and to names
    that exist in the market (so that handlers get past the lookups)."""

    def __init__(self, rng: random.Random, ints: list[int], names: list[str]) -> None:
        self.rng = rng
        self.ints = INTS + ints
        self.strs = ["", " ", "x" * 300, "\u00e9", "@operators", "b1", "b2", "op", *names]

    def value(self, info: Any) -> Any:
        rng, kind = self.rng, type(info).__name__
        if kind == "IntType":
            return rng.choice(self.ints + [rng.randint(-1000, 10**6)])
        if kind == "BoolType":
            return rng.random() < 0.5
        if kind == "StrType":
            return rng.choice(self.strs)
        if kind == "LiteralType":
            return rng.choice(list(info.values))
        if kind == "UnionType":
            return self.value(rng.choice(info.types))
        if kind in ("ListType", "VarTupleType", "SetType", "FrozenSetType"):
            return [self.value(info.item_type) for _ in range(rng.choice([0, 1, 2, 5, 50]))]
        if kind == "TupleType":
            return [self.value(t) for t in info.item_types]
        if kind == "DictType":
            return {self.value(info.key_type): self.value(info.value_type)
                    for _ in range(rng.choice([0, 1, 3]))}
        if kind == "StructType":
            return self.struct(info)
        return None                                    # NoneType, Any

    def struct(self, info: Any) -> dict[str, Any]:
        config = info.cls.__struct_config__
        out: dict[str, Any] = {}
        if config.tag is not None:
            out[config.tag_field] = config.tag
        for field in info.fields:
            if field.required or self.rng.random() < 0.7:
                out[field.encode_name] = self.value(field.type)
        return out


def test_typed_fuzz_of_every_message_keeps_the_exchange_serving(tmp_path):
    rng = random.Random(SEED)
    encode = msgspec.msgpack.encode
    commands = [mi.type_info(t) for t in COMMAND_TYPES]
    messages = [mi.type_info(t) for t in typing.get_args(p.ClientMessage)
                if t not in (p.Logout,)]                # a logout ends the fuzzing session
    requests = [mi.type_info(t) for t in typing.get_args(p.DataRequest)]
    with running(tmp_path) as server, client(tmp_path, "op") as op, \
            client(tmp_path, "b1") as b1, client(tmp_path, "b2") as b2:
        market = build_market(op, b1, b2)
        make = Maker(rng, [*market.paddles.values(), *market.parties.values()],
                     [market.english, market.instrument, "S1"])
        context = zmq.Context()
        try:
            socks = {}
            for user, port in (("b1", "broker"), ("op", "operator")):
                socks[port] = raw_dealer(tmp_path, user, port, context)
                socks[port].send(p.encode(p.Logon(heartbeat_ms=60000)))
                assert recv_until(socks[port], p.LogonAccepted) is not None
            socks["data"] = raw_dealer(tmp_path, "viewer", "data", context)
            answered = 0
            for i in range(MESSAGES):
                pick = rng.random()
                if pick < 0.1:
                    port, msg = "data", make.struct(rng.choice(requests))
                else:
                    port = "operator" if rng.random() < 0.3 else "broker"
                    msg = (make.struct(rng.choice(messages)) if pick < 0.2 else
                           {"type": "Request", "client_id": f"fuzz-{i}",
                            "cmd": make.struct(rng.choice(commands))})
                data = encode(msg)
                if len(data) > MAX_BYTES:                     # dropped with the connection
                    continue
                sock = socks[port]
                sock.send(data)
                if msg["type"] == "Heartbeat":
                    continue
                assert sock.poll(10000), f"no answer to message {i}: {msg} (seed {SEED})"
                while sock.poll(0):                           # the answer, notices, more
                    sock.recv()
                answered += 1
            assert answered > MESSAGES // 2
            assert server.failed is None
            assert b2.ok(RegisterParty(name="served after the typed fuzz")).accepted
        finally:
            context.destroy(linger=0)
        from exchange.invariants import check
        check(server.engine.state)
