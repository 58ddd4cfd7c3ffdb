"""One node served by two instances, arranged as docs/operations-guide.md ("Scale-out")
says, as real processes, under steady load while an instance and a broker node are killed.

- RabbitMQ: a private cluster of three brokers (tests/chaos/rabbit_cluster.py); every node
  file lists the three in ``rabbitmq.url`` and sets ``rabbitmq.quorum = true``.
- ``province``: ``lienthong serve --instance a`` and ``--instance b`` with the same node
  file, ``store.kind = "postgres"``, one schema of the real PostgreSQL (no shared folder).
- ``central``, its parent: one instance on SQLite, on the same cluster.

Agencies at both nodes submit over the cluster (tests/chaos/load.py: each submission sent
again, the same bytes, until answered), so packages go into mailboxes at each node and
over the link both ways. Meanwhile instance ``a`` is killed with SIGKILL and later started
again, and the broker node leading province's inbound queue is killed and started again.
Then the ledger (tests/chaos/ledger.py) reads both stores: every accepted package in each
recipient's mailbox exactly once, a receipt at its sender's node for each recipient, none
failed; nothing dead-lettered; each instance's evidence chain whole and holding work of
its own, ``a``'s from after its restart too.

On demand only (three brokers and three node processes; about 1.5 minutes here; ``-s``
prints its account: the faults' times, the ledger, each chain's events):
    scripts/test -m ondemand tests/integration/test_scaleout_cluster.py
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from adapters.sandbox_tree import SandboxAgency, SandboxNode, Topology
from adapters.store_postgres import PostgresStore
from adapters.store_sqlite import SqliteStore
from adapters.transport_amqp import AmqpTransport
from exchange.errors import TransientFault
from exchange.evidence import EventKind, LogEntry, broken_links
from exchange.links import down_queue, up_queue
from exchange.node import Queues
from tests.chaos.ledger import Findings, Ledger
from tests.chaos.load import Load
from tests.chaos.rabbit_cluster import RabbitCluster, available
from tests.contract.stores import PG_DSN, drop_location
from tests.integration.tree import TreeProcesses

pytestmark = [
    pytest.mark.ondemand,
    pytest.mark.integration,
    pytest.mark.skipif(not available(), reason="RabbitMQ is not installed here"),
]

CENTRAL, PROVINCE = "central", "province"
G22, G14 = "000.00.00.G22", "000.00.00.G14"  # hosted by central
H53, COMMUNE = "000.00.00.H53", "000.21.31.H53"  # hosted by province
HOMES = {G22: CENTRAL, G14: CENTRAL, H53: PROVINCE, COMMUNE: PROVINCE}
SENDERS = (G22, COMMUNE)  # one agency at each node; recipients drawn from all four
RATE_PER_S = 10.0
STEADY_S = 8.0  # load between one fault and the next
SETTLE_S = 180.0  # after the load: how long the two nodes may take to deliver and report
SQLITE_STORE = '[store]\nkind = "sqlite"\npath = "store"\n'


class ScaleoutTree:
    """``central`` and its child ``province``, whose node file serves two instances; what
    the load and the ledger need of a tree (tests/chaos/load.py, ``Tree``)."""

    def __init__(self, folder: Path, cluster: RabbitCluster) -> None:
        self.urls = cluster.urls()
        self.files = TreeProcesses(
            folder,
            {CENTRAL: None, PROVINCE: CENTRAL},
            HOMES,
            broker_urls={CENTRAL: self.urls[0], PROVINCE: self.urls[0]},
        )
        self.central, self.province = self.files.ids[CENTRAL], self.files.ids[PROVINCE]
        self.schema = f"scaleout_{uuid.uuid4().hex[:10]}"
        self.topology = Topology(
            nodes=(
                SandboxNode(self.central, None, 1),
                SandboxNode(self.province, self.central, 2),
            ),
            agencies=tuple(
                SandboxAgency(organ, organ, self.files.ids[home]) for organ, home in HOMES.items()
            ),
            demo_sender=G22,
            demo_recipient=H53,
        )
        listed = ", ".join(f'"{url}"' for url in self.urls)
        for name in (CENTRAL, PROVINCE):  # the three brokers, quorum queues: both nodes
            text = self.files.config(name).read_text()
            assert f'url = "{self.urls[0]}"\n' in text, "tree.py changed its [rabbitmq] table"
            text = text.replace(f'url = "{self.urls[0]}"\n', f"url = [{listed}]\nquorum = true\n")
            if name == PROVINCE:  # one database for both instances
                assert SQLITE_STORE in text, "tree.py changed its [store] table"
                text = text.replace(
                    SQLITE_STORE,
                    f'[store]\nkind = "postgres"\ndsn = "{PG_DSN}"\n'
                    f'schema = "{self.schema}"\npool_size = 4\n',
                )
            self.files.config(name).write_text(text)
        self.running: dict[str, subprocess.Popen[bytes]] = {}  # central, a, b

    @property
    def nodes(self) -> list[str]:
        return [self.central, self.province]

    def start(self, who: str) -> None:
        """``central``, or province's instance ``a`` or ``b``."""
        if who == CENTRAL:
            self.running[who] = self.files.start(CENTRAL)
        else:
            self.running[who] = self.files.start(PROVINCE, instance=who)

    def kill(self, who: str) -> None:
        process = self.running[who]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def exited(self) -> dict[str, int]:
        """The processes that ended by themselves, with their exit status."""
        return {who: code for who, p in self.running.items() if (code := p.poll()) is not None}

    async def stop(self) -> None:
        for name in (PROVINCE, CENTRAL):
            await self.files.stopped(name)

    async def ready(self, timeout_s: float = 120) -> None:
        """Until central consumes its inbound queue and its end of the link, and both
        instances of province consume theirs (asked of whichever broker answers)."""
        wanted = {
            Queues(self.central).inbound: 1,
            up_queue(self.central, "normal"): 1,
            Queues(self.province).inbound: 2,
            down_queue(self.central, self.province, "normal"): 2,
        }
        await _until_consumed(self.urls, wanted, timeout_s)

    def document(self, sender: str, recipients: Sequence[str], number: int) -> bytes:
        return self.files.signed(sender, recipients, number)

    def open_store(self, node: str) -> SqliteStore | PostgresStore:
        if node == self.province:
            return PostgresStore(PG_DSN, schema=self.schema, pool_size=2)
        return SqliteStore(self.files.folder / CENTRAL / "store")

    def logs(self) -> str:
        """The end of each process's log, and any traceback in it: for a failure's message."""
        parts = []
        for log in sorted(self.files.folder.glob("*/node*.log")):
            text = log.read_text(errors="replace")
            at = text.find("Traceback")
            parts.append(f"--- {log.parent.name}/{log.name}, last lines:\n{text[-2500:]}")
            if at >= 0:
                parts.append(f"--- first traceback:\n{text[at : at + 3000]}")
        return "\n".join(parts)


async def _until_consumed(urls: list[str], wanted: Mapping[str, int], timeout_s: float) -> None:
    transport = AmqpTransport(urls)
    try:
        async with asyncio.timeout(timeout_s):
            for queue, count in wanted.items():
                while True:
                    with contextlib.suppress(TransientFault):
                        info = await transport.inspect(queue)
                        if info is not None and info.consumers >= count:
                            break
                    await asyncio.sleep(0.5)
    finally:
        await transport.close()


async def _dead_queues(urls: list[str], nodes: list[str]) -> dict[str, int]:
    """Messages in each node's dead-letter queue (where a quorum queue's delivery limit
    and the node's own dead-lettering put them)."""
    transport = AmqpTransport(urls)
    try:
        found = {}
        for node in nodes:
            info = await transport.inspect(Queues(node).dead)
            found[node] = info.messages if info is not None else 0
        return found
    finally:
        await transport.close()


async def _chains(store: SqliteStore | PostgresStore) -> dict[str, list[LogEntry]]:
    """Every evidence chain in a store, each read whole from its first entry."""
    chains: dict[str, list[LogEntry]] = {}
    try:
        await store.migrate()
        for chain, (seq, _) in (await store.chain_heads()).items():
            entries: list[LogEntry] = []
            while len(entries) < seq:
                after = entries[-1].seq if entries else 0
                page = await store.log_entries(chain=chain, after=after, limit=5000)
                if not page:
                    break
                entries += page
            chains[chain] = entries
    finally:
        await store.close()
    return chains


def _kinds(entries: list[LogEntry]) -> dict[str, int]:
    """How many events of each kind: what an instance's chain says it did."""
    return dict(Counter(str(e.event.kind) for e in entries))


async def _head(tree: ScaleoutTree, chain: str) -> int:
    store = tree.open_store(tree.province)
    try:
        await store.migrate()
        return (await store.chain_heads()).get(chain, (0, ""))[0]
    finally:
        await store.close()


async def _dead_letters(tree: ScaleoutTree) -> dict[str, int]:
    found = {}
    for node in tree.nodes:
        store = tree.open_store(node)
        try:
            await store.migrate()
            found[node] = len(await store.dead_letters(include_replayed=True))
        finally:
            await store.close()
    return found


async def _faults(tree: ScaleoutTree, cluster: RabbitCluster, marks: dict[str, float]) -> int:
    """Instance ``a`` killed and started again, then the broker node leading province's
    inbound queue killed and started again, with steady load before, between and after.
    Returns how long ``a``'s chain was when it was killed."""
    await asyncio.sleep(STEADY_S)  # both instances at work
    await asyncio.to_thread(tree.kill, "a")
    marks["a killed"] = time.monotonic()
    killed_at = await _head(tree, "a")
    await asyncio.sleep(STEADY_S)  # b alone
    tree.start("a")
    await tree.ready()
    marks["a back"] = time.monotonic()
    await asyncio.sleep(STEADY_S)  # both again
    inbound = Queues(tree.province).inbound
    leader = await asyncio.to_thread(cluster.leader_of, inbound)
    await asyncio.to_thread(cluster.kill, leader)
    marks[f"broker {leader + 1} killed (led {inbound})"] = time.monotonic()
    await asyncio.sleep(STEADY_S)  # two brokers
    await asyncio.to_thread(cluster.start, leader)
    marks[f"broker {leader + 1} back"] = time.monotonic()
    await asyncio.sleep(STEADY_S)
    return killed_at


async def _settle(ledger: Ledger, load: Load) -> tuple[Findings, float]:
    began = time.monotonic()
    findings = await ledger.check(load.tally.sent)
    while not findings.settled and time.monotonic() - began < SETTLE_S:
        await asyncio.sleep(2)
        findings = await ledger.check(load.tally.sent)
    return findings, time.monotonic() - began


@pytest.mark.timeout(1200)
async def test_two_instances_on_a_broker_cluster_lose_nothing_and_duplicate_nothing(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    with RabbitCluster(3) as cluster:
        formed = time.monotonic() - began
        tree = ScaleoutTree(tmp_path, cluster)
        try:
            for who in (CENTRAL, "a", "b"):
                tree.start(who)
            await tree.ready()
            load = Load(tree, SENDERS, list(HOMES), RATE_PER_S)
            marks = {"load started": time.monotonic()}
            load.start()
            try:
                killed_at = await _faults(tree, cluster, marks)
            finally:
                await load.stop()  # every submission answered
            marks["load stopped"] = time.monotonic()
            findings, settled_s = await _settle(Ledger(tree), load)
            exited = tree.exited()
            dead_queues = await _dead_queues(tree.urls, tree.nodes)
            await tree.stop()
            findings = await Ledger(tree).check(load.tally.sent)  # at rest, the final word
            province = await _chains(tree.open_store(tree.province))
            central = await _chains(tree.open_store(tree.central))
            dead_letters = await _dead_letters(tree)
        except BaseException:
            print(tree.logs())  # shown with the failure
            raise
        finally:
            await tree.stop()
            drop_location("postgres", tree.schema)

    kinds = {chain: _kinds(entries) for chain, entries in province.items()}
    after_restart = _kinds([e for e in province.get("a", []) if e.seq > killed_at])
    start = marks["load started"]
    timeline = ", ".join(f"{what} at {at - start:.0f} s" for what, at in marks.items())
    answered_twice = sum(s.outcome == "duplicate" for s in load.tally.sent)
    print(
        f"\ncluster formed in {formed:.0f} s; {timeline}\n"
        f"{findings.summary()}\n"
        f"settled {settled_s:.0f} s after the load; answered duplicate on a retry: "
        f"{answered_twice}; client retries {load.tally.retries} {load.tally.errors}\n"
        f"province's chains: {kinds}; a's after its restart (past #{killed_at}): "
        f"{after_restart}\n"
        f"whole run {time.monotonic() - began:.0f} s"
    )
    assert not exited, f"a node process exited by itself: {exited}\n{tree.logs()}"
    assert not load.tally.refused, load.tally.refused[:5]
    assert findings.accepted >= RATE_PER_S * 4 * STEADY_S / 2, "too little went through"
    assert findings.holds, f"{findings.summary()}\n{tree.logs()}"
    assert findings.failed_with_reason == 0, findings.summary()
    assert dead_letters == dict.fromkeys(tree.nodes, 0), dead_letters
    assert dead_queues == dict.fromkeys(tree.nodes, 0), dead_queues
    # each instance its own chain, whole from its first entry, across the SIGKILL
    assert {"a", "b"} <= set(province), sorted(province)
    for where, chains in (("province", province), ("central", central)):
        for chain, entries in chains.items():
            assert entries, f"{where} {chain}: no entries read"
            assert entries[0].seq == 1, f"{where} {chain}: starts at #{entries[0].seq}"
            assert not broken_links(entries), broken_links(entries)[:5]
    # both instances took in and delivered packages, and a did again after its restart
    for instance in ("a", "b"):
        assert kinds[instance].get(EventKind.ACCEPTED, 0) > 0, f"{instance}: {kinds[instance]}"
        assert kinds[instance].get(EventKind.DELIVERED, 0) > 0, f"{instance}: {kinds[instance]}"
    assert after_restart.get(EventKind.ACCEPTED, 0) > 0, f"a after its restart: {after_restart}"
