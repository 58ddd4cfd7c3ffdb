"""A node as a separate process on the real RabbitMQ, with its own PKI, directory and store.

Each harness uses fresh node ids, so tests do not share queues; it deletes its queues
(and PostgreSQL schema) when done.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from adapters.client import NodeClient
from adapters.pki_files import init_pki
from adapters.store_postgres import PostgresStore
from adapters.store_sqlite import SqliteStore
from adapters.transport_amqp import AmqpTransport
from exchange.node import Node, NodeSettings
from exchange.signing import SigningKey, sign
from tests.conftest import example
from tests.contract.stores import PG_DSN, drop_location
from tests.integration.broker import (
    AMQP_URL,
    delete_queues,
    wait_for_consumers,
    wait_for_count,
)

G22, H53, COMMUNE = "000.00.00.G22", "000.00.00.H53", "000.21.31.H53"
AGENCIES = (G22, H53, COMMUNE)


@dataclass
class NodeProcess:
    folder: Path
    store_kind: str = "sqlite"
    node_id: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    max_attempts: int = 3
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pki = self.folder / "pki"
        init_pki(self.pki, list(AGENCIES), [self.node_id], key_type="ec")
        directory = (self.pki / "directory.toml").read_text()
        for organ in AGENCIES:
            directory = directory.replace(
                f'organ_id = "{organ}"\n', f'organ_id = "{organ}"\nhome_node = "{self.node_id}"\n'
            )
        (self.pki / "directory.toml").write_text(directory)
        self.schema = f"n_{self.node_id}"
        store = (
            'kind = "sqlite"\npath = "store"\n'
            if self.store_kind == "sqlite"
            else f'kind = "postgres"\ndsn = "{PG_DSN}"\nschema = "{self.schema}"\n'
        )
        self.config = self.folder / "node.toml"
        self.config.write_text(
            f'[node]\nid = "{self.node_id}"\n\n'
            f'[rabbitmq]\nurl = "{AMQP_URL}"\nprefetch = 16\npublish_timeout_s = 10\n\n'
            f"[store]\n{store}\n"
            '[trust]\nca = "pki/ca.pem"\ndirectory = "pki/directory.toml"\n'
            f'node_key = "pki/nodes/{self.node_id}.key"\nnode_certs = "pki/nodes"\n\n'
            f"[limits]\nmax_attempts = {self.max_attempts}\n"
        )

    def signed(self, name: str, organ: str = G22, **replace: str) -> bytes:
        data = example(name)
        for old, new in replace.items():
            data = data.replace(old.encode(), new.encode())
        key = SigningKey.from_pem(
            (self.pki / "agencies" / f"{organ}.key").read_bytes(),
            (self.pki / "agencies" / f"{organ}.pem").read_bytes(),
        )
        return sign(data, key)

    def start(
        self, crash_at: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """The node's process; ``env`` is added to this one's environment (a failpoint:
        ``LIENTHONG_FAULTS``, docs/operations.md)."""
        env = {**os.environ, "LIENTHONG_CRASH_AT": crash_at or "", **(env or {})}
        with open(self.folder / "node.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "adapters.cli", "serve", "--config", str(self.config)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.processes.append(process)
        return process

    async def declare_queues(self) -> None:
        """Declare the node's queues as the node does, before it runs."""
        transport = AmqpTransport(AMQP_URL)
        try:
            await Node(
                NodeSettings(
                    self.node_id, hosted=frozenset(AGENCIES), max_attempts=self.max_attempts
                ),
                store=self.open_store(),
                transport=transport,
                admit=None,  # type: ignore[arg-type]  # declaring only
                node_key=None,  # type: ignore[arg-type]
            ).declare()
        finally:
            await transport.close()

    async def ready(self, consumers: int = 1, timeout: float = 60) -> None:
        """Wait until ``consumers`` node processes consume the inbound queue."""
        await wait_for_consumers([f"lienthong.{self.node_id}.inbound"], consumers, timeout)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)

    def client(self, timeout_s: float = 30) -> NodeClient:
        return NodeClient(AMQP_URL, self.node_id, timeout_s=timeout_s)

    def open_store(self) -> SqliteStore | PostgresStore:
        if self.store_kind == "sqlite":
            return SqliteStore(self.folder / "store")
        return PostgresStore(PG_DSN, schema=self.schema, pool_size=2)

    async def mailbox(self, organ: str) -> list[str]:
        store = self.open_store()
        try:
            return [
                e.message_id for e in await store.mailbox(organ, unfetched_only=False, limit=10**7)
            ]
        finally:
            await store.close()

    async def mailbox_digests(self, organ: str) -> list[str]:
        """The SHA-256 of every package in a mailbox: what arrived, not what it was called."""
        store = self.open_store()
        try:
            return [e.digest for e in await store.mailbox(organ, unfetched_only=False, limit=10**7)]
        finally:
            await store.close()

    async def wait_for_mailbox(self, organ: str, count: int, timeout: float = 60) -> list[str]:
        return await wait_for_count(lambda: self.mailbox(organ), count, timeout)

    async def cleanup(self) -> None:
        self.stop()
        logins = tomllib.loads(self.config.read_text()).get("credentials", {})
        await delete_queues(
            [
                *(
                    f"lienthong.{self.node_id}.{suffix}"
                    for suffix in ("inbound", "requests", "dead")
                ),
                *(f"lienthong.{self.node_id}.inbound.{login}" for login in logins),  # their own
            ]
        )
        if self.store_kind == "postgres":
            drop_location("postgres", self.schema)
        log = self.folder / "node.log"
        if log.exists() and "Traceback" in log.read_text(errors="replace"):
            print(log.read_text(errors="replace")[-4000:])  # shown when the test fails
