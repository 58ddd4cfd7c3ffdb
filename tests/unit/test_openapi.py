"""The REST API and its OpenAPI description agree: schemathesis runs every operation of
the live application (over the memory tree) against what /v1/openapi.json promises."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web

from tests.unit.memory_tree import Tree
from tests.unit.test_http_api import TOKENS, serve

ST = Path(sys.executable).with_name("st")


async def test_every_operation_keeps_to_the_description(tree: Tree) -> None:
    app = serve(tree.nodes["central"]).app
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        checked = await asyncio.create_subprocess_exec(
            str(ST),
            "run",
            f"http://127.0.0.1:{port}/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {TOKENS['hosted']}",
            "--checks",
            "all",
            # any bytes are a schema-valid body (edXML's validity is the XSD contract, which
            # JSON Schema cannot state), and the API rightly refuses most: not a finding
            "--exclude-checks",
            "positive_data_acceptance",
            "--rate-limit",
            "40/s",
            "--max-examples",
            "12",
            "--seed",
            "7",
            "--request-timeout",
            "40",
            "--generation-deterministic",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(checked.communicate(), timeout=240)
    finally:
        await runner.cleanup()
    assert checked.returncode == 0, out.decode()[-6000:]
