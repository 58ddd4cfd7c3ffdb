"""One node as its own process whose store's disk fills (``LIENTHONG_FAULTS``) while
packages stream in over AMQP, then has room again: nothing lost, nothing twice, nothing
dead-lettered, and the process never stopped."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.faults import ENOSPC, FAULTS_ENV
from tests.integration.broker import wait_for_count
from tests.integration.harness import COMMUNE, H53, NodeProcess
from tests.integration.test_node_process import assert_exactly_once, documents, publish_raw

pytestmark = pytest.mark.integration


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeProcess]:
    process = NodeProcess(tmp_path / "node")  # max_attempts = 3
    yield process
    await process.cleanup()


async def logged(node: NodeProcess, event: str, times: int = 1, timeout: float = 20) -> None:
    """Wait until the node's log (another process's file, polled) names ``event`` ``times``
    times."""
    log = node.folder / "node.log"

    async def lines() -> list[str]:
        text = log.read_text(errors="replace") if log.exists() else ""
        return [line for line in text.splitlines() if event in line]

    await wait_for_count(lines, times, timeout)


async def test_a_full_disk_mid_stream_loses_duplicates_and_dead_letters_nothing(
    node: NodeProcess, tmp_path: Path
) -> None:
    faults = tmp_path / "faults"
    faults.mkdir()
    process = node.start(env={FAULTS_ENV: str(faults)})
    await node.ready()
    packages = documents(node, 24)
    await publish_raw(node, packages[:8])
    await node.wait_for_mailbox(H53, 8)
    (faults / ENOSPC).touch()  # the disk is full from here
    await publish_raw(node, packages[8:16])
    await logged(node, "intake.disk_full")  # the node met it, and held the submissions
    await publish_raw(node, packages[16:])
    # full for a while: more tries than max_attempts (3) for most of the 16 waiting
    await logged(node, "intake.disk_full", times=3 * 16)
    (faults / ENOSPC).unlink()  # room again
    for organ in (H53, COMMUNE):
        assert_exactly_once(await node.wait_for_mailbox(organ, len(packages)), len(packages))
    assert process.poll() is None, "the node process stopped"
    store = node.open_store()
    try:
        assert await store.dead_letters() == []
        assert sorted(await node.mailbox_digests(H53)) == sorted(
            hashlib.sha256(p).hexdigest() for p in packages
        )
    finally:
        await store.close()
