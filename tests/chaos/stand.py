"""The chaos stand: the sandbox tree, each node its own ``lienthong serve`` process, on a
RabbitMQ and a PostgreSQL the suite owns: either one broker node, with every child's link
through a fault proxy, or a three-node cluster with quorum queues, every node and link
given all three brokers' URLs (and no proxies: the cluster's faults are its own).

    central ─┬─ province-h53 ── district-31-h53 ── commune-22-31-h53
             └─ province-h41   (this one on PostgreSQL; the others on SQLite)

What the faults act on: a node's process (SIGKILL, then a new one), the broker (restart),
PostgreSQL (an immediate stop, then a start), a child's link (cut at its proxy, then
restored) and a node's store (ENOSPC at the store's port, through the failpoint folder
``LIENTHONG_FAULTS`` names: while the file ``enospc`` is there, its writes fail).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from adapters.sandbox_tree import Topology, load_topology, topology_file, write_tree
from adapters.store_postgres import PostgresStore
from adapters.store_sqlite import SqliteStore
from exchange.links import down_queue
from tests.chaos.rabbit_cluster import RabbitCluster, SingleBroker
from tests.chaos.services import PrivatePostgres
from tests.faultproxy import FaultProxy
from tests.integration.broker import wait_for_consumers
from tests.integration.tree import signed_document

FAULTS_ENV = "LIENTHONG_FAULTS"
POSTGRES_NODE = "province-h41"
SQLITE_STORE = '[store]\nkind = "sqlite"\npath = "store"\n'


class Stand:
    def __init__(
        self,
        folder: Path,
        broker: SingleBroker | RabbitCluster,
        postgres: PrivatePostgres,
        suffix: str,
    ) -> None:
        self.folder, self.broker, self.postgres = folder, broker, postgres
        self.cluster = broker if isinstance(broker, RabbitCluster) else None
        self.urls = self.cluster.urls() if self.cluster else [broker.nodes[0].url]
        self.url = self.urls[0]
        self.topology: Topology = load_topology(topology_file(), suffix)
        self.ids = {n.id.removesuffix(suffix): n.id for n in self.topology.nodes}
        self.pg_node = self.ids[POSTGRES_NODE]
        self.schema = f"chaos_{suffix.strip('-_').replace('-', '_') or 'tree'}"
        self.proxies: dict[str, FaultProxy] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started: dict[str, int] = {}  # processes started per node, first included

    @property
    def nodes(self) -> list[str]:
        return [n.id for n in self.topology.nodes]

    @property
    def children(self) -> list[str]:
        return [n.id for n in self.topology.nodes if n.parent]

    def home(self, node: str) -> Path:
        return self.folder / "nodes" / node

    def faults(self, node: str) -> Path:
        return self.home(node) / "faults"

    async def start(self) -> None:
        port = urlsplit(self.url).port or 5672
        for child in [] if self.cluster else self.children:
            self.proxies[child] = await FaultProxy(upstream_port=port).start()
        parent_urls = {child: proxy.url(self.url) for child, proxy in self.proxies.items()}
        self.files = write_tree(self.folder, self.topology, self.url, parent_urls)
        if self.cluster:
            self._on_cluster()
        pg = self.files[self.pg_node]
        text = pg.read_text(encoding="utf-8")
        assert SQLITE_STORE in text, "the sandbox node file changed its [store] table"
        pg.write_text(
            text.replace(
                SQLITE_STORE,
                f'[store]\nkind = "postgres"\ndsn = "{self.postgres.dsn}"\n'
                f'schema = "{self.schema}"\npool_size = 4\n',
            ),
            encoding="utf-8",
        )
        for node in self.nodes:
            self.faults(node).mkdir(parents=True, exist_ok=True)
            self.start_node(node)
        await self.ready()

    def _on_cluster(self) -> None:
        """Every node file names the cluster's brokers (links follow ``rabbitmq.url``)
        and declares quorum queues."""
        listed = ", ".join(f'"{url}"' for url in self.urls)
        for node in self.nodes:
            file = self.files[node]
            text = file.read_text(encoding="utf-8")
            assert f'url = "{self.url}"\n' in text, "the sandbox node file changed its [rabbitmq]"
            file.write_text(
                text.replace(f'url = "{self.url}"\n', f"url = [{listed}]\nquorum = true\n"),
                encoding="utf-8",
            )

    def start_node(self, node: str) -> None:
        logs = self.folder / "logs"
        logs.mkdir(exist_ok=True)
        env = {**os.environ, FAULTS_ENV: str(self.faults(node))}
        with open(logs / f"{node}.log", "ab") as log:
            self.processes[node] = subprocess.Popen(
                [sys.executable, "-m", "adapters.cli", "serve", "--config", str(self.files[node])],
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=self.folder,
                env=env,
            )
        self.started[node] = self.started.get(node, 0) + 1

    def kill_node(self, node: str) -> None:
        process = self.processes[node]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)

    def exited(self) -> dict[str, int]:
        """Nodes whose current process ended by itself, with its exit status."""
        return {
            node: code
            for node, process in self.processes.items()
            if (code := process.poll()) is not None and code != -signal.SIGKILL
        }

    async def ready(self, timeout: float = 120) -> None:
        """Until every node consumes its inbound queue and every child its link."""
        queues = [f"lienthong.{node}.inbound" for node in self.nodes]
        queues += [down_queue(n.parent, n.id, "normal") for n in self.topology.nodes if n.parent]
        await wait_for_consumers(queues, timeout=timeout, url=self.url)  # any broker node

    def enospc(self, node: str, on: bool) -> None:
        flag = self.faults(node) / "enospc"
        if on:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def document(self, sender: str, recipients: Sequence[str], number: int) -> bytes:
        return signed_document(self.folder / "pki", sender, recipients, number)

    def open_store(self, node: str) -> SqliteStore | PostgresStore:
        if node == self.pg_node:
            return PostgresStore(self.postgres.dsn, schema=self.schema, pool_size=2)
        return SqliteStore(self.home(node) / "store")

    async def stop(self) -> None:
        """SIGTERM every node (they finish what they hold), then close the proxies."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 10)
        for proxy in self.proxies.values():
            await proxy.close()
