"""The console in headless Chromium against a real node process (RabbitMQ, its store, its
HTTP face): a poisoned package shows as a dead letter with its reason, is replayed from
the page and delivered, and the replay is in the evidence log; a quarantined package
released from the page is delivered. (The cut link: tests/integration/test_ops_sandbox.py.)"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, expect

from adapters.sandbox_tree import free_port
from exchange.evidence import EventKind
from tests.browser import BrowserPage
from tests.conftest import example
from tests.integration.harness import G22, H53, NodeProcess
from tests.integration.test_node_process import publish_raw

pytestmark = pytest.mark.integration


@dataclass
class ConsoleNode:
    process: NodeProcess
    url: str
    operator: str  # the operator's token
    agency: str  # the token of G22's system, whose unsigned packages are held

    async def page(self, page: Page) -> None:
        await page.goto(f"{self.url}/ops/")
        await page.get_by_test_id("login-token").fill(self.operator)
        await page.get_by_test_id("login-submit").click()
        await expect(page.get_by_test_id("node-id")).to_have_text(self.process.node_id)

    async def act(self, page: Page, row: str, action: str, note: str) -> None:
        await page.get_by_test_id(row).get_by_test_id(action).click()
        await page.get_by_test_id("action-note").fill(note)
        await page.get_by_test_id("action-confirm").click()
        await expect(page.get_by_test_id("action-result")).to_have_attribute("data-outcome", "ok")


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[ConsoleNode]:
    process = NodeProcess(tmp_path)
    port, operator, agency = free_port(), secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    process.config.write_text(
        process.config.read_text()
        + '\n[sources.paper]\npolicy = "quarantine"  # signed on paper: a person looks\n\n'
        + f'[http]\nlisten = "127.0.0.1:{port}"\n\n'
        + f'[http.clients.paper-desk]\ntoken_sha256 = "{sha(agency)}"\n'
        + f'organs = ["{G22}"]\nsource = "paper"\n\n'
        + f'[http.operators.ops-an]\ntoken_sha256 = "{sha(operator)}"\n'
    )
    yield ConsoleNode(process, f"http://127.0.0.1:{port}", operator, agency)
    await process.cleanup()


async def wait_http(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(f"{url}/healthz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} never answered")


async def test_a_poisoned_package_is_replayed_from_the_page_delivered_and_in_the_evidence(
    node: ConsoleNode, browser_page: BrowserPage
) -> None:
    process = node.process
    poison = process.signed("document-new.edxml")
    digest = hashlib.sha256(poison).hexdigest()
    await process.declare_queues()
    await publish_raw(process, [poison])
    for _ in range(process.max_attempts):  # it kills the node every time it is admitted
        assert process.start(crash_at=f"admit:{digest}").wait(timeout=60) == -9
    process.start(crash_at=f"admit:{digest}")  # past the limit: dead-lettered, not admitted
    await wait_http(node.url)
    page = browser_page.page
    await node.page(page)
    letters = page.locator("[data-testid^=deadletter-]")
    await expect(letters).to_have_count(1, timeout=15_000)
    await expect(letters.get_by_test_id("reason")).to_contain_text("the process died each time")
    letter_id = (await letters.get_attribute("data-testid") or "").removeprefix("deadletter-")
    assert await process.mailbox(H53) == []
    process.stop()  # the operator fixes the cause (here: the failpoint goes)
    process.start()
    await wait_http(node.url)
    await page.reload()
    await expect(page.get_by_test_id(f"deadletter-{letter_id}")).to_be_visible(timeout=15_000)
    await node.act(page, f"deadletter-{letter_id}", "replay", "the parser is fixed, ticket 88")
    assert len(await process.wait_for_mailbox(H53, 1)) == 1  # delivered
    await expect(letters).to_have_count(0, timeout=15_000)
    store = process.open_store()
    try:
        since = datetime.now(UTC) - timedelta(hours=1)
        (event,) = await store.events_of_kind(EventKind.OPERATOR.value, since)
    finally:
        await store.close()
    assert event.detail["action"] == "replay"
    assert event.detail["by"] == "ops-an"
    assert event.detail["note"] == "the parser is fixed, ticket 88"
    assert event.detail["target"] == f"dead-letter:{letter_id}"
    browser_page.assert_no_errors()


async def test_a_quarantined_package_released_from_the_page_is_delivered(
    node: ConsoleNode, browser_page: BrowserPage
) -> None:
    process = node.process
    process.start()
    await wait_http(node.url)
    unsigned = example("document-new.edxml")  # from G22 to H53 and the commune, no signature
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{node.url}/v1/packages",
            data=unsigned,
            headers={"Authorization": f"Bearer {node.agency}"},
        ) as answer,
    ):
        body = await answer.json()
    assert (answer.status, body["level"]) == (201, "quarantined"), body
    page = browser_page.page
    await node.page(page)
    row = f"quarantine-{body['message_id']}"
    await expect(page.get_by_test_id(row).get_by_test_id("reason")).not_to_be_empty()
    assert await process.mailbox(H53) == []
    await node.act(page, row, "release", "the signed paper copy arrived by post")
    assert await process.wait_for_mailbox(H53, 1) == [body["message_id"]]
    await expect(page.get_by_test_id(row)).to_have_count(0, timeout=15_000)
    browser_page.assert_no_errors()
