"""Several nodes as separate processes on the real RabbitMQ, linked into a tree."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography import x509

from adapters.client import NodeClient
from adapters.pki_files import init_pki
from adapters.store_sqlite import SqliteStore
from exchange.links import down_queue
from exchange.node import Queues, queues_of
from exchange.signing import SigningKey, sign
from exchange.store import MailboxEntry
from exchange.trust import fingerprint
from tests.conftest import example
from tests.integration.broker import (
    AMQP_URL,
    delete_queues,
    wait_for_consumers,
    wait_for_count,
)


class TreeProcesses:
    """``link_urls`` points a child's link (its ``[link] parent_url``) elsewhere than the
    broker itself, e.g. through a fault proxy. The other options hold for every node:
    ``link_max_bytes`` bounds every link lane (parent and child declare the same queues,
    so it is one number for the whole tree), ``link_heartbeat_s`` is each link's AMQP
    heartbeat, ``publish_timeout_s`` each publish's deadline. Per node: ``broker_urls`` puts
    its own broker elsewhere, ``link_lines`` adds keys to its ``[link]``, and ``extra`` is
    TOML appended to its node file (its own tables); ``ids`` names the nodes (by default,
    each name with a random suffix); ``trust_lines`` adds keys to every node's ``[trust]``."""

    def __init__(
        self,
        folder: Path,
        parents: dict[str, str | None],
        homes: dict[str, str],
        *,
        link_urls: Mapping[str, str] | None = None,
        link_max_bytes: int | None = None,
        link_heartbeat_s: int | None = None,
        publish_timeout_s: float = 10.0,
        ttl_hours: float | None = None,
        broker_urls: Mapping[str, str] | None = None,
        link_lines: Mapping[str, Sequence[str]] | None = None,
        extra: Mapping[str, str] | None = None,
        ids: Mapping[str, str] | None = None,
        trust_lines: Sequence[str] = (),
    ) -> None:
        self.folder = folder
        suffix = uuid.uuid4().hex[:6]
        self.ids = dict(ids) if ids else {name: f"{name}-{suffix}" for name in parents}
        self.parents = {self.ids[n]: (self.ids[p] if p else None) for n, p in parents.items()}
        self.homes = {organ: self.ids[home] for organ, home in homes.items()}
        self.pki = folder / "pki"
        init_pki(self.pki, list(homes), list(self.ids.values()), key_type="ec")
        lines = ["version = 1", ""]
        for node, parent in self.parents.items():
            lines += (
                ["[[node]]", f'id = "{node}"'] + ([f'parent = "{parent}"'] if parent else []) + [""]
            )
        for organ, home in self.homes.items():
            cert = x509.load_pem_x509_certificate(
                (self.pki / "agencies" / f"{organ}.pem").read_bytes()
            )
            lines += [
                "[[agency]]",
                f'organ_id = "{organ}"',
                f'home_node = "{home}"',
                f'fingerprints = ["{fingerprint(cert)}"]',
                "",
            ]
        (self.pki / "directory.toml").write_text("\n".join(lines))
        self.processes: dict[str, list[subprocess.Popen[bytes]]] = {}
        for name, node in self.ids.items():
            folder_n = folder / name
            folder_n.mkdir()
            parent = self.parents[node]
            url = (link_urls or {}).get(name)
            link = [f'parent_url = "{url}"'] if url else []
            link += [f"max_bytes = {link_max_bytes}"] if link_max_bytes else []
            link += [f"heartbeat_s = {link_heartbeat_s}"] if link_heartbeat_s else []
            link += list((link_lines or {}).get(name, ()))
            broker = (broker_urls or {}).get(name, AMQP_URL)
            (folder_n / "node.toml").write_text(
                f'[node]\nid = "{node}"\n' + (f'parent = "{parent}"\n' if parent else "") + "\n"
                f'[rabbitmq]\nurl = "{broker}"\nprefetch = 16\n'
                f"publish_timeout_s = {publish_timeout_s}\n\n"
                '[store]\nkind = "sqlite"\npath = "store"\n\n'
                f'[trust]\nca = "{self.pki}/ca.pem"\ndirectory = "{self.pki}/directory.toml"\n'
                f'node_key = "{self.pki}/nodes/{node}.key"\nnode_certs = "{self.pki}/nodes"\n'
                + "".join(f"{line}\n" for line in trust_lines)
                + ("\n[link]\n" + "\n".join(link) + "\n" if link else "")
                + (f"\n[deadlines]\nttl_hours = {ttl_hours}\n" if ttl_hours else "")
                + (extra or {}).get(name, "")
            )

    def config(self, name: str) -> Path:
        return self.folder / name / "node.toml"

    def start(
        self,
        name: str,
        crash_at: str | None = None,
        *,
        code: Path | None = None,
        instance: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start the node's process: the code under test, or with ``code`` another
        release's (a folder holding its ``adapters`` and ``exchange``), run by this Python;
        ``instance`` names one of several service instances of the node (``serve
        --instance``, its evidence chain), which logs to ``node-NAME.log``."""
        env = {**os.environ, "LIENTHONG_CRASH_AT": crash_at or ""}
        if code is not None:
            env["PYTHONPATH"] = str(code)
        command = [sys.executable, "-m", "adapters.cli", "serve", "--config"]
        command += [str(self.config(name)), *(["--instance", instance] if instance else [])]
        log_name = f"node-{instance}.log" if instance else "node.log"
        with open(self.folder / name / log_name, "ab") as log:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=code,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.processes.setdefault(name, []).append(process)
        return process

    def stop(self, name: str) -> None:
        for process in self.processes.get(name, []):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)

    async def stopped(self, name: str) -> None:
        """``stop``, off the event loop: a fault proxy in this loop keeps working meanwhile."""
        await asyncio.to_thread(self.stop, name)

    async def ready_inbound(self, name: str) -> None:
        """Wait until the node consumes its inbound queue (its link may be down)."""
        await wait_for_consumers([f"lienthong.{self.ids[name]}.inbound"])

    async def ready(self, name: str) -> None:
        """Wait until the node consumes its inbound queue (and, below the root, its link)."""
        node = self.ids[name]
        queues = [f"lienthong.{node}.inbound"]
        if self.parents[node]:
            queues.append(down_queue(self.parents[node], node, "normal"))  # type: ignore[arg-type]
        await wait_for_consumers(queues)

    def signed(
        self,
        sender: str,
        recipients: Sequence[str],
        number: int,
        *,
        size: int = 0,
        priority: int = 0,
    ) -> bytes:
        """A document from ``sender``, signed; see ``signed_document``."""
        return signed_document(self.pki, sender, recipients, number, size=size, priority=priority)

    def key(self, organ: str) -> SigningKey:
        return SigningKey.from_pem(
            (self.pki / "agencies" / f"{organ}.key").read_bytes(),
            (self.pki / "agencies" / f"{organ}.pem").read_bytes(),
        )

    def client(self, name: str) -> NodeClient:
        return NodeClient(AMQP_URL, self.ids[name], timeout_s=30)

    async def mailbox(self, organ: str) -> list[str]:
        return [e.message_id for e in await self.mailbox_entries(organ)]

    async def mailbox_entries(self, organ: str) -> Sequence[MailboxEntry]:
        """The agency's mailbox, in the order it was delivered."""
        name = next(n for n, node in self.ids.items() if node == self.homes[organ])
        store = SqliteStore(self.folder / name / "store")
        try:
            await store.migrate()
            return await store.mailbox(organ, unfetched_only=False, limit=10_000)
        finally:
            await store.close()

    async def wait_for_mailbox(self, organ: str, count: int, timeout: float = 60) -> list[str]:
        return await wait_for_count(lambda: self.mailbox(organ), count, timeout)

    async def cleanup(self) -> None:
        for name in self.ids:
            await self.stopped(name)
        await delete_queues(
            [name for node, parent in self.parents.items() for name in queues_of(node, parent)]
            + [Queues(home).mailbox(organ) for organ, home in self.homes.items()]  # push
            + [  # each [credentials] login's own intake queue
                Queues(node).login_inbound(login)
                for name, node in self.ids.items()
                for login in tomllib.loads(self.config(name).read_text()).get("credentials", {})
            ]
        )


def signed_document(
    pki: Path,
    sender: str,
    recipients: Sequence[str],
    number: int,
    *,
    size: int = 0,
    priority: int = 0,
) -> bytes:
    """The example new document from ``sender`` to ``recipients``, numbered ``number`` (so
    distinct numbers are distinct packages), signed with the sender's key under ``pki``;
    ``size`` pads its content to about that many bytes, ``priority`` is its edXML Priority
    (2-4 take a link's urgent lane)."""
    data = example("document-new.edxml").replace(b"000.00.00.G22", sender.encode())
    tos = "".join(f"<edXML:To><edXML:OrganId>{r}</edXML:OrganId></edXML:To>" for r in recipients)
    start = data.index(b"<edXML:To>")
    end = data.rindex(b"</edXML:To>") + len(b"</edXML:To>")
    data = data[:start] + tos.encode() + data[end:]  # after the sender: it may be one of them
    data = data.replace(b"125/UBND-VP<", f"{number}/UBND-VP<".encode())
    data = data.replace(b"<edXML:CodeNumber>125<", f"<edXML:CodeNumber>{number}<".encode())
    data = data.replace(b"<edXML:Priority>0<", f"<edXML:Priority>{priority}<".encode())
    if size > len(data):
        filler = (b"Kinh gui cac xa. " * (size // 17 + 1))[: size - len(data)]
        data = data.replace(b"<edXML:Content>", b"<edXML:Content>" + filler, 1)
    key = SigningKey.from_pem(
        (pki / "agencies" / f"{sender}.key").read_bytes(),
        (pki / "agencies" / f"{sender}.pem").read_bytes(),
    )
    return sign(data, key)
