"""The operator console in headless Chromium: a render test of the page.

The real console routes (adapters/console.py) are served together with stand-in handlers
that answer the operator endpoints of the shared contract from one fixed, realistic /status
(tests/ops_stand_in.py: a province node with a cut link to a district, a backlog climbing
since the cut, a dead letter) and record the actions posted to them. What is
tested is what the page shows and sends, not the node behind it: the tests against a
running node use the same fixture (tests/browser.py).

``LIENTHONG_CONSOLE_PNG=docs/console.png scripts/test tests/integration/test_console_render.py
-k screenshot`` renders the picture in docs/console.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Page, expect

from tests.browser import BrowserPage, open_page
from tests.ops_stand_in import (
    CUT,
    DEAD_ID,
    HELD,
    MESSAGE,
    OPERATOR,
    VIEWER,
    FakeOps,
    realistic_status,
)


@pytest.fixture
async def ops() -> AsyncIterator[tuple[FakeOps, str]]:
    fake = FakeOps(datetime.now(UTC))
    async with TestServer(fake.app(), host="127.0.0.1") as server:
        yield fake, str(server.make_url("/ops/"))


async def log_in(page: Page, url: str, token: str) -> None:
    await page.goto(url)
    await page.get_by_test_id("login-token").fill(token)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("node-id")).to_have_text("province-h53")


async def test_the_page_loads_clean_with_labels_in_both_languages(
    ops: tuple[FakeOps, str], browser_page: BrowserPage
) -> None:
    _, url = ops
    page = browser_page.page
    await page.goto(url)
    login = page.get_by_test_id("login-form")
    await expect(login).to_contain_text("Đăng nhập · Log in")
    await expect(login).to_contain_text("Mã truy cập của người vận hành · Operator token")
    await log_in(page, url, OPERATOR)
    await expect(page.get_by_test_id("whoami")).to_contain_text("ops-tayninh")
    await expect(page.get_by_test_id("refresh-state")).to_have_attribute("data-state", "ok")
    for words in (
        "Liên kết · Links",
        "Sơ đồ liên kết · Topology",
        "Tồn đọng · Backlog",
        "Lưu lượng · Throughput",
        "Cần xử lý · Needs attention",
        "Thư chết · Dead letters",
        "Cách ly · Quarantine",
        "Quá hạn xác nhận · Overdue acknowledgements",
        "Hàng đợi · Queues",
        "Tra cứu · Search",
    ):
        await expect(page.locator("main")).to_contain_text(words)
    # every label the page wrote has its two languages
    halves = await page.eval_on_selector_all(
        ".bi",
        "(all) => all.map((b) => [b.querySelector('[lang=vi]'), b.querySelector('[lang=en]')]"
        ".map((s) => (s ? s.textContent.trim() : '')))",
    )
    assert halves
    assert all(vi and en for vi, en in halves), [h for h in halves if not all(h)]
    browser_page.assert_no_errors()


async def test_a_wrong_token_is_refused_and_a_good_one_kept_for_the_tab(
    ops: tuple[FakeOps, str], browser_page: BrowserPage
) -> None:
    _, url = ops
    page = browser_page.page
    await page.goto(url)
    await page.get_by_test_id("login-token").fill("not-a-token")
    await page.get_by_test_id("login-submit").click()
    error = page.get_by_test_id("login-error")
    await expect(error).to_contain_text(
        "Mã truy cập không đúng · The node does not know this token"
    )
    await expect(error).to_contain_text("401 auth.unauthenticated")
    await expect(page.locator("main")).to_be_hidden()
    await log_in(page, url, OPERATOR)
    assert await page.evaluate("sessionStorage.length") == 1
    assert await page.evaluate("localStorage.length") == 0
    await page.reload()  # the same tab: still logged in
    await expect(page.get_by_test_id("node-id")).to_have_text("province-h53")
    await page.get_by_test_id("logout").click()
    await expect(page.get_by_test_id("login-form")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_the_page_follows_the_node_every_few_seconds(
    ops: tuple[FakeOps, str], browser_page: BrowserPage
) -> None:
    fake, url = ops
    page = browser_page.page
    await log_in(page, url, OPERATOR)
    row = page.get_by_test_id(f"link-{CUT}")
    await expect(row).to_have_attribute("data-state", "down")
    fake.status["links"][1] |= {"state": "up", "last_error": None}  # the link came back
    await expect(row).to_have_attribute("data-state", "up", timeout=12_000)
    await expect(page.get_by_test_id(f"topo-link-{CUT}")).to_contain_text("Kết nối · Up")
    del fake.tokens[OPERATOR]  # the token withdrawn while the page is open
    await expect(page.get_by_test_id("login-error")).to_contain_text(
        "The token is no longer valid", timeout=12_000
    )
    await expect(page.locator("main")).to_be_hidden()


async def test_a_cut_link_reads_as_down(
    ops: tuple[FakeOps, str], browser_page: BrowserPage
) -> None:
    _, url = ops
    page = browser_page.page
    await log_in(page, url, OPERATOR)
    row = page.get_by_test_id(f"link-{CUT}")
    await expect(row).to_have_attribute("data-state", "down")
    await expect(row).to_contain_text("Mất kết nối · Down")
    await expect(row).to_contain_text("Connection refused")
    await expect(row.locator("[data-col=backlog_out]")).to_have_text("41")
    drawn = page.get_by_test_id(f"topo-link-{CUT}")
    await expect(drawn).to_have_attribute("data-state", "down")
    await expect(drawn).to_contain_text("Mất kết nối · Down")
    await expect(page.get_by_test_id("link-central")).to_have_attribute("data-state", "up")
    await expect(page.get_by_test_id("topo-upstream-vdxp")).to_have_attribute("data-state", "up")
    await expect(page.get_by_test_id("alert-LienthongLinkDown")).to_contain_text(CUT)
    browser_page.assert_no_errors()


async def test_replay_asks_for_a_note_and_posts_it(
    ops: tuple[FakeOps, str], browser_page: BrowserPage
) -> None:
    fake, url = ops
    page = browser_page.page
    await log_in(page, url, OPERATOR)
    row = page.get_by_test_id(f"deadletter-{DEAD_ID}")
    await expect(row.get_by_test_id("reason")).to_contain_text("signature.invalid")
    await row.get_by_test_id("replay").click()
    form = page.get_by_test_id("action-form")
    await expect(form).to_be_visible()
    await page.get_by_test_id("action-confirm").click()  # no note: not sent
    await expect(page.get_by_test_id("action-error")).to_contain_text(
        "Write a note before confirming"
    )
    assert fake.posts == []
    await page.get_by_test_id("action-note").fill("certificate of district-31 renewed, ticket 4411")
    await page.get_by_test_id("action-confirm").click()
    result = page.get_by_test_id("action-result")
    await expect(result).to_have_attribute("data-outcome", "ok")
    await expect(result).to_contain_text("inbound")
    await expect(form).to_be_hidden()
    assert fake.posts == [
        (
            f"/v1/ops/dead-letters/{DEAD_ID}/replay",
            {"note": "certificate of district-31 renewed, ticket 4411"},
            "ops-tayninh",
        )
    ]
    await expect(row).to_have_count(0)  # refreshed after the action: replayed, gone


async def test_a_refused_action_shows_the_problem_detail(
    ops: tuple[FakeOps, str], browser_page: BrowserPage
) -> None:
    fake, url = ops
    page = browser_page.page
    await log_in(page, url, OPERATOR)
    await page.get_by_test_id(f"deadletter-{DEAD_ID}").get_by_test_id("purge").click()
    await page.get_by_test_id("action-note").fill("duplicate of 1233/UBND-VP")
    await page.get_by_test_id("action-confirm").click()
    result = page.get_by_test_id("action-result")
    await expect(result).to_have_attribute("data-outcome", "error")
    await expect(result).to_contain_text("409 ops.conflict: dead letter 17 was replayed")
    quarantined = page.get_by_test_id(f"quarantine-{HELD}")
    await quarantined.get_by_test_id("refuse").click()
    await page.get_by_test_id("action-note").fill("the PDF signer is not a civil servant")
    await page.get_by_test_id("action-confirm").click()
    await expect(result).to_contain_text("Refused")
    await page.get_by_test_id("drain-toggle").click()
    await page.get_by_test_id("action-note").fill("maintenance window 22:00")
    await page.get_by_test_id("action-confirm").click()
    await expect(result).to_contain_text("Draining")
    assert [(path, body) for path, body, _ in fake.posts] == [
        (f"/v1/ops/dead-letters/{DEAD_ID}/purge", {"note": "duplicate of 1233/UBND-VP"}),
        (f"/v1/ops/quarantine/{HELD}/refuse", {"note": "the PDF signer is not a civil servant"}),
        ("/v1/ops/drain", {"on": True, "note": "maintenance window 22:00"}),
    ]


async def test_a_viewer_sees_no_action_button(
    ops: tuple[FakeOps, str], browser_page: BrowserPage
) -> None:
    _, url = ops
    page = browser_page.page
    await log_in(page, url, VIEWER)
    await expect(page.get_by_test_id("whoami")).to_have_attribute("data-role", "viewer")
    await expect(page.get_by_test_id(f"deadletter-{DEAD_ID}")).to_contain_text("signature.invalid")
    await expect(page.get_by_test_id(f"quarantine-{HELD}")).to_be_visible()
    for testid in ("replay", "purge", "release", "refuse", "drain-toggle"):
        await expect(page.get_by_test_id(testid)).to_have_count(0)
    buttons = await page.locator("main button").evaluate_all(
        "(all) => all.map((b) => b.dataset.testid)"
    )
    assert buttons == ["search-submit"]
    browser_page.assert_no_errors()


async def test_search_opens_a_package_with_its_route_and_recipients(
    ops: tuple[FakeOps, str], browser_page: BrowserPage
) -> None:
    _, url = ops
    page = browser_page.page
    await log_in(page, url, VIEWER)
    await page.get_by_test_id("search-document-id").fill("1234/UBND-VP")
    await page.get_by_test_id("search-submit").click()
    result = page.get_by_test_id(f"search-result-{MESSAGE}")
    await expect(result).to_contain_text("received, delivered, fetched")
    await result.click()
    detail = page.get_by_test_id("package-detail")
    await expect(detail).to_have_attribute("data-message-id", MESSAGE)
    await expect(detail.get_by_test_id("hop-0")).to_contain_text(CUT)
    await expect(detail.get_by_test_id("hop-1")).to_contain_text("province-h53")
    failed = detail.get_by_test_id("recipient-000.00.00.G22")
    await expect(failed).to_have_attribute("data-transport", "failed")
    await expect(failed).to_contain_text("dead-lettered: signature.invalid")
    await expect(detail.get_by_test_id("package-receipts")).to_contain_text("000.00.00.H53")
    browser_page.assert_no_errors()


async def test_server_text_is_shown_as_text_never_as_markup(
    ops: tuple[FakeOps, str], browser_page: BrowserPage
) -> None:
    fake, url = ops
    hostile = '<img src=x onerror="document.body.dataset.owned=1">'
    fake.status["dead_letters"]["items"][0]["reason"] = hostile
    fake.status["links"][1]["last_error"] = hostile
    page = browser_page.page
    await log_in(page, url, OPERATOR)
    reason = page.get_by_test_id(f"deadletter-{DEAD_ID}").get_by_test_id("reason")
    await expect(reason).to_have_text(hostile)
    assert await page.locator("main img").count() == 0
    assert await page.evaluate("document.body.dataset.owned") is None


async def test_a_narrow_screen_scrolls_nothing_sideways(ops: tuple[FakeOps, str]) -> None:
    _, url = ops
    async with open_page(viewport=(390, 844)) as phone:
        await log_in(phone.page, url, OPERATOR)
        await expect(phone.page.get_by_test_id(f"link-{CUT}")).to_have_attribute(
            "data-state", "down"
        )
        widths = await phone.page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1], f"the page is {widths[0]} px wide on a {widths[1]} px screen"
        phone.assert_no_errors()


async def test_screenshot(
    ops: tuple[FakeOps, str], browser_page: BrowserPage, tmp_path: Path
) -> None:
    """The console at 1280x800; written to $LIENTHONG_CONSOLE_PNG when that is set."""
    _, url = ops
    page = browser_page.page
    await log_in(page, url, OPERATOR)
    await expect(page.get_by_test_id(f"topo-link-{CUT}")).to_have_attribute("data-state", "down")
    target = Path(os.environ.get("LIENTHONG_CONSOLE_PNG") or tmp_path / "console.png")
    await page.screenshot(path=str(target))
    assert target.read_bytes().startswith(b"\x89PNG")
    browser_page.assert_no_errors()


def test_the_status_here_keeps_to_the_shared_shape() -> None:
    """The stand-in's status has the keys of ops-spec's GET /status, so the page is
    rendered from what a node will send."""
    status = realistic_status(datetime.now(UTC))
    assert set(status) == {
        "node", "drain", "health", "links", "upstreams", "queues", "mailboxes",
        "dead_letters", "quarantine", "failed", "receipts_last_hour", "overdue",
        "certificates", "directory", "clock", "series", "alerts",
    }  # fmt: skip
    assert len(status["series"]["points"]) == 60
    json.dumps(status)
