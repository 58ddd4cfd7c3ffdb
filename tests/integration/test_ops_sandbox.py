"""The operator surface against a running sandbox, with the commune's link to its district
going through a fault proxy: cut it, and /status, /metrics and ``lienthong ops links``
(and the console, in tests/integration/test_console.py) show the link down and its
backlog growing; restore it, and they show the backlog drain and every document arrive."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from playwright.async_api import expect

from adapters.sandbox import AMQP_URL
from adapters.sandbox import _document as sandbox_document
from adapters.sandbox_tree import Topology, load_topology, topology_file
from tests.browser import BrowserPage
from tests.faultproxy import FaultProxy
from tests.integration.broker import delete_queues
from tests.integration.test_sandbox import tree_queues
from tests.running_sandbox import running_sandbox

pytestmark = pytest.mark.integration

RECIPIENT = "000.00.00.H53"  # at the province, two links up from the commune


@dataclass
class RunningSandbox:
    folder: Path
    topology: Topology
    proxy: FaultProxy
    commune: str  # the node whose parent link goes through the proxy
    district: str
    faces: dict[str, Any]

    def url(self, node: str) -> str:
        return str(self.faces[node]["url"])

    def operator(self, node: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.faces[node]['operator']}"}

    def agency(self, node: str, organ: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.faces[node]['tokens'][organ]}"}

    def node_file(self, node: str) -> Path:
        return self.folder / "nodes" / node / "node.toml"


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[RunningSandbox]:
    suffix = f"-{uuid.uuid4().hex[:6]}"
    topology = load_topology(topology_file(), suffix)
    commune = topology.node_of(topology.demo_sender)
    district = next(n.parent for n in topology.nodes if n.id == commune)
    assert district is not None
    broker = urlsplit(AMQP_URL)
    async with FaultProxy(broker.hostname or "127.0.0.1", broker.port or 5672) as proxy:
        try:
            async with running_sandbox(
                tmp_path, suffix, [f"--parent-url={commune}={proxy.url(AMQP_URL)}"]
            ) as (_, faces):
                yield RunningSandbox(tmp_path, topology, proxy, commune, district, faces)
        finally:
            await delete_queues(tree_queues(topology))


async def link_of(
    http: aiohttp.ClientSession, tree: RunningSandbox, node: str, neighbour: str
) -> dict[str, Any]:
    async with http.get(f"{tree.url(node)}/status", headers=tree.operator(node)) as answer:
        assert answer.status == 200, await answer.text()
        view = await answer.json()
    return next(link for link in view["links"] if link["neighbour"] == neighbour)


async def wait_link(
    http: aiohttp.ClientSession,
    tree: RunningSandbox,
    node: str,
    neighbour: str,
    state: str,
    backlog: int | None = None,
) -> dict[str, Any]:
    """The link as /status shows it once it reads ``state`` (and, if given, exactly that
    backlog): within a minute, as an operator would see it refresh."""
    async with asyncio.timeout(60):
        while True:
            link = await link_of(http, tree, node, neighbour)
            if link["state"] == state and (backlog is None or link["backlog_total"] == backlog):
                return link
            await asyncio.sleep(0.5)


def ops_links(tree: RunningSandbox, node: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "adapters.cli", "ops", "links"),
            *("--config", str(tree.node_file(node))),
            *("--token-file", str(tree.node_file(node).parent / "operator.token")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def send(http: aiohttp.ClientSession, tree: RunningSandbox, number: int) -> str:
    sender = tree.topology.demo_sender
    data = sandbox_document(tree.folder / "pki", sender, RECIPIENT, number)
    async with http.post(
        f"{tree.url(tree.commune)}/v1/packages",
        data=data,
        headers=tree.agency(tree.commune, sender),
    ) as answer:
        body = await answer.json()
        assert answer.status == 201, body
        return str(body["message_id"])


async def test_a_cut_link_shows_down_with_a_growing_backlog_then_drains_when_restored(
    sandbox: RunningSandbox, browser_page: BrowserPage
) -> None:
    tree = sandbox
    page = browser_page.page
    await page.goto(f"{tree.url(tree.commune)}/ops/")
    await page.get_by_test_id("login-token").fill(tree.faces[tree.commune]["operator"])
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("node-id")).to_have_text(tree.commune)
    on_page = page.get_by_test_id(f"link-{tree.district}")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        assert (await link_of(http, tree, tree.commune, tree.district))["state"] != "down"
        for probe in ("healthz", "readyz"):  # no token: for a supervisor
            async with http.get(f"{tree.url(tree.commune)}/{probe}") as answer:
                assert (answer.status, (await answer.json())["ok"]) == (200, True)
        tree.proxy.cut()
        first = [await send(http, tree, 900 + n) for n in range(3)]
        down = await wait_link(http, tree, tree.commune, tree.district, "down", backlog=3)
        assert down["role"] == "parent"
        assert down["last_error"]
        assert down["backlog"]["out"]["normal"] == 3
        listed = ops_links(tree, tree.commune)
        assert listed.returncode == 2, listed.stdout + listed.stderr  # 2: a link is down
        row = next(line for line in listed.stdout.splitlines() if tree.district in line)
        assert row.split()[2] == "DOWN"
        assert "0/3/0" in row
        # the district sees its child gone from its lanes too
        child = await wait_link(http, tree, tree.district, tree.commune, "down")
        assert "no consumer" in child["last_error"]
        # the backlog grows while the link stays cut
        second = [await send(http, tree, 910 + n) for n in range(2)]
        grown = await wait_link(http, tree, tree.commune, tree.district, "down", backlog=5)
        assert grown["since"] == down["since"], "down since the cut, not since the last look"
        row = next(
            line
            for line in ops_links(tree, tree.commune).stdout.splitlines()
            if tree.district in line
        )
        assert "0/5/0" in row
        # the console, refreshing by itself, shows the same
        await expect(on_page).to_have_attribute("data-state", "down", timeout=15_000)
        await expect(on_page.locator("[data-col=backlog_out]")).to_have_text("5", timeout=15_000)
        drawn = page.get_by_test_id(f"topo-link-{tree.district}")
        await expect(drawn).to_have_attribute("data-state", "down")
        metrics = f"{tree.url(tree.commune)}/metrics"
        async with http.get(metrics, headers=tree.operator(tree.commune)) as answer:
            text = await answer.text()
        labels = f'neighbour="{tree.district}",node="{tree.commune}"'
        assert f'lienthong_link_up{{{labels},role="parent"}} 0.0' in text
        assert f'lienthong_link_backlog{{direction="out",{labels}}} 5.0' in text
        # restored: the link comes back up, the backlog drains, every document arrives
        tree.proxy.passthrough()
        await wait_link(http, tree, tree.commune, tree.district, "up", backlog=0)
        listed = ops_links(tree, tree.commune)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        row = next(line for line in listed.stdout.splitlines() if tree.district in line)
        assert row.split()[2] == "UP"
        await expect(on_page).to_have_attribute("data-state", "up", timeout=15_000)
        await expect(on_page.locator("[data-col=backlog_out]")).to_have_text("0", timeout=15_000)
        browser_page.assert_no_errors()
        province = tree.topology.node_of(RECIPIENT)
        mailbox = f"{tree.url(province)}/v1/agencies/{RECIPIENT}/mailbox"
        async with asyncio.timeout(60):
            while True:
                async with http.get(
                    mailbox, params={"limit": "1000"}, headers=tree.agency(province, RECIPIENT)
                ) as answer:
                    arrived = {i["message_id"] for i in (await answer.json())["items"]}
                if set(first + second) <= arrived:
                    break
                await asyncio.sleep(0.5)
