"""The Python client of the REST API, against the live application over the memory tree:
send, dry run, mailbox, fetch, ack, status, receipts, and refusals as ApiError."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from adapters.http_client import ApiClient, ApiError
from tests.conftest import example
from tests.pki import DevPki
from tests.unit.memory_tree import COMMUNE, G14, H41, Tree, document
from tests.unit.test_http_api import TOKENS, serve


async def live(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def urls(tree: Tree) -> AsyncIterator[dict[str, str]]:
    commune, commune_url = await live(serve(tree.nodes["commune-21-31-h53"]).app)
    central, central_url = await live(serve(tree.nodes["central"]).app)
    yield {"commune": commune_url, "central": central_url}
    await commune.cleanup()
    await central.cleanup()


async def test_a_system_sends_and_another_takes_it_through_the_client(
    urls: dict[str, str], pki: DevPki
) -> None:
    data = document(pki, COMMUNE, G14, H41, 160)
    seen: list[tuple[int, int]] = []
    async with ApiClient(urls["commune"], TOKENS["commune"]) as commune:
        checked = await commune.validate(data)
        assert (checked["sender"], checked["level"]) == (COMMUNE, "strict")
        answer = await commune.send(data, progress=lambda done, total: seen.append((done, total)))
        assert answer["outcome"] == "accepted"
        assert seen[-1] == (len(data), len(data))
    async with ApiClient(urls["central"], TOKENS["hosted"]) as ministry:
        (item,) = await ministry.mailbox(G14, wait=20)
        assert item["message_id"] == answer["message_id"]
        assert await ministry.fetch(G14, item["message_id"]) == data
        await ministry.ack(G14, item["message_id"])
        assert await ministry.mailbox(G14) == []
    async with ApiClient(urls["commune"], TOKENS["commune"]) as commune:
        view = await commune.status(COMMUNE, answer["message_id"])
        assert {r["recipient"] for r in view["recipients"]} == {G14, H41}


async def test_refusals_come_back_as_errors_with_the_nodes_code(
    urls: dict[str, str], pki: DevPki
) -> None:
    async with ApiClient(urls["central"], "no-such-token") as stranger:
        with pytest.raises(ApiError) as unknown:
            await stranger.directory()
    assert (unknown.value.status, unknown.value.code) == (401, "auth.unauthenticated")
    async with ApiClient(urls["commune"], TOKENS["commune"]) as commune:
        broken = example("document-new.edxml").replace(
            b"<edXML:CodeNumber>125<", b"<edXML:CodeNumber><"
        )
        with pytest.raises(ApiError) as invalid:
            await commune.validate(broken)
        assert invalid.value.code == "contract.invalid"
        assert invalid.value.problems
        with pytest.raises(ApiError) as theirs:
            await commune.mailbox(G14)
        assert (theirs.value.status, theirs.value.code) == (403, "agency.not_yours")


async def cli(*args: str, token: str) -> tuple[int, str]:
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adapters.cli",
        *args,
        env={**os.environ, "LIENTHONG_TOKEN": token},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(run.communicate(), timeout=60)
    assert run.returncode is not None
    return run.returncode, out.decode()


async def test_send_fetch_and_status_at_a_terminal_over_the_rest_api(
    urls: dict[str, str], pki: DevPki, tmp_path: Path
) -> None:
    package = tmp_path / "letter.edxml"
    package.write_bytes(document(pki, COMMUNE, G14, H41, 161))
    code, out = await cli(
        "send", "--url", urls["commune"], "--as", COMMUNE, str(package), token=TOKENS["commune"]
    )
    assert code == 0, out
    message_id = out.split("message ")[1].split()[0]
    assert out.startswith(f"{package}: accepted: message {message_id} (strict)")
    code, out = await cli(
        "fetch",
        "--url",
        urls["central"],
        "--as",
        G14,
        "--wait",
        "20",
        "-o",
        str(tmp_path / "inbox"),
        token=TOKENS["hosted"],
    )
    assert code == 0, out
    assert (tmp_path / "inbox" / f"{message_id}.edxml").read_bytes() == package.read_bytes()
    assert out.endswith(f"1 package(s) fetched for {G14}\n")
    code, out = await cli(
        "status", "--url", urls["commune"], "--as", COMMUNE, message_id, token=TOKENS["commune"]
    )
    assert code == 0, out
    assert f"  {G14}" in out
    code, out = await cli(
        "send", "--url", urls["commune"], "--as", G14, str(package), token=TOKENS["commune"]
    )
    assert code == 1
    assert "refused [agency.not_yours]" in out
