"""A caller refused again and again waits for its answer (adapters/http_brake.py): the brake
on its own, then at the REST API and the SDK facade, where a legitimate caller's request is
answered at once while an attacker's 401s are held."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.agency_gate import AgencyGate
from adapters.http_api import BRAKE, build_app
from adapters.http_brake import RefusalBrake
from adapters.sdk_facade import add_sdk_routes
from tests.unit.memory_tree import Tree
from tests.unit.test_http_api import SETTINGS, bearer
from tests.unit.test_sdk_facade import CLIENTS, Sdk, as_sdk

HOLD_S = 30.0  # long enough that a held answer is still held when the test looks


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def held_while(brake: RefusalBrake, call: asyncio.Task[object], held: int) -> None:
    """Wait until ``held`` answers are being held, with ``call`` among them."""
    async with asyncio.timeout(5):
        while brake.held < held:
            assert not call.done(), "answered at once, not held"
            await asyncio.sleep(0.01)


async def test_an_address_past_its_burst_is_held_and_another_is_not() -> None:
    clock = Clock()
    brake = RefusalBrake(HOLD_S, per_s=5, burst=10, clock=clock)
    for _ in range(10):
        await brake.unauthenticated("10.0.0.1")  # its burst: answered at once
    assert brake.held_total == 0
    eleventh = asyncio.create_task(brake.unauthenticated("10.0.0.1"))
    await held_while(brake, eleventh, 1)
    await brake.unauthenticated("10.0.0.2")  # another address has its own allowance
    assert brake.held == 1
    eleventh.cancel()
    await asyncio.gather(eleventh, return_exceptions=True)
    clock.now += 0.2  # a fifth of a second: one more answer at once
    await brake.unauthenticated("10.0.0.1")
    assert brake.held == 0
    assert brake.held_total == 1


async def test_a_rate_limited_caller_is_held_until_it_may_call_again_at_most_the_hold() -> None:
    brake = RefusalBrake(0.5)
    await brake.rate_limited(0.0)
    assert brake.held_total == 0
    waiting = asyncio.create_task(brake.rate_limited(3600.0))  # at most the hold, not an hour
    await held_while(brake, waiting, 1)
    async with asyncio.timeout(5):
        await waiting
    assert (brake.held, brake.held_total) == (0, 1)


async def test_past_the_most_held_answers_go_out_at_once() -> None:
    brake = RefusalBrake(HOLD_S, per_s=1, burst=1, most_held=3)
    await brake.unauthenticated("a")
    held = [asyncio.create_task(brake.unauthenticated("a")) for _ in range(3)]
    await held_while(brake, held[-1], 3)
    await brake.unauthenticated("a")  # a fourth: at once
    assert brake.held == 3
    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    assert brake.held == 0


async def test_no_hold_is_no_brake_and_the_addresses_remembered_are_bounded() -> None:
    off = RefusalBrake(0.0, per_s=1, burst=1)
    for _ in range(50):
        await off.unauthenticated("a")
    assert off.held_total == 0
    clock = Clock()
    brake = RefusalBrake(HOLD_S, per_s=1, burst=1, addresses=2, clock=clock)
    await brake.unauthenticated("a")  # a spends its one answer at once
    await brake.unauthenticated("b")
    await brake.unauthenticated("c")  # a, the least recently refused, is forgotten
    await brake.unauthenticated("a")  # so a is answered at once again
    assert brake.held_total == 0


# --- at the faces ------------------------------------------------------------------------


@pytest.fixture
async def rest(tree: Tree) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    node = tree.nodes["central"]
    node.settings = replace(
        node.settings,
        http_credentials={f"http:{n}": c.credential for n, c in SETTINGS.clients.items()},
    )
    settings = replace(SETTINGS, refusal_hold_s=HOLD_S)
    app = build_app(AgencyGate(node, dry_run=node._admit), settings, max_bytes=64 * 1024)
    async with TestClient(TestServer(app)) as http:
        yield http


async def test_wrong_tokens_again_and_again_are_held_while_a_known_caller_is_served(
    rest: TestClient[web.Request, web.Application],
) -> None:
    brake = rest.app[BRAKE]
    for _ in range(10):
        got = await rest.get("/v1/directory", headers=bearer("wrong"))
        assert (got.status, (await got.json())["code"]) == (401, "auth.unauthenticated")
    assert brake.held_total == 0
    again = asyncio.create_task(rest.get("/v1/directory", headers=bearer("wrong")))
    await held_while(brake, again, 1)  # type: ignore[arg-type]
    served = await rest.get("/v1/directory", headers=bearer("hosted"))  # meanwhile
    assert served.status == 200
    assert brake.held == 1
    assert not again.done()
    again.cancel()


async def test_a_system_with_a_wrong_hmac_again_and_again_is_held_at_the_sdk_facade(
    tree: Tree,
) -> None:
    app = web.Application()
    brake = RefusalBrake(HOLD_S)
    node = tree.nodes["central"]
    add_sdk_routes(
        app, AgencyGate(node, dry_run=node._admit), CLIENTS, max_bytes=64 * 1024, brake=brake
    )
    async with TestClient(TestServer(app)) as http:
        sdk = as_sdk(http, CLIENTS["ministry"])
        wrong = Sdk(http, sdk.systemid, b"not-the-secret-0123456789")
        for _ in range(10):
            reply = await wrong.call("getAgenciesList")
            assert (reply.status, reply.code()) == (401, "sdk.signature_invalid")
        assert brake.held_total == 0
        again = asyncio.create_task(wrong.call("getAgenciesList"))
        await held_while(brake, again, 1)  # type: ignore[arg-type]
        assert (await sdk.call("getAgenciesList")).status == 200  # the right secret, at once
        again.cancel()
