"""A tree of lienthong nodes for the benchmarks: its files, its processes, its queues.

Written like the sandbox's (adapters/sandbox_tree.py), but shaped for measurement:
- node ids carry a random suffix, so a run's queues never meet another's, and
  ``delete_queues`` removes every queue the nodes declare;
- only agencies that sign get a key and certificate (a directory of 10,000 recipients
  needs no 10,000 keys); the others are directory entries with a home node;
- each node says how many admission workers it has (0: a thread of its process; None:
  the node's default, one fewer than the cores), and several nodes may share one
  ``lienthong serve`` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aio_pika
from cryptography import x509

from adapters.pki_files import init_pki
from exchange.links import down_queue
from exchange.node import queues_of
from exchange.signing import SigningKey
from exchange.trust import fingerprint

AMQP_URL = os.environ.get("LIENTHONG_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


@dataclass(frozen=True)
class BenchNode:
    id: str
    parent: str | None
    process: int  # nodes with the same number share one `lienthong serve`
    admission_workers: int | None = 0  # None: the node's default


def suffix() -> str:
    return uuid.uuid4().hex[:6]


class BenchTree:
    def __init__(
        self,
        folder: Path,
        nodes: Iterable[BenchNode],
        homes: Mapping[str, str],
        signers: Iterable[str],
        *,
        prefetch: int = 32,
    ) -> None:
        self.folder = folder
        self.nodes = tuple(nodes)
        self.homes = dict(homes)  # OrganId -> node id
        self.signers = tuple(signers)
        self.prefetch = prefetch
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.pki = folder / "pki"

    # --- files ------------------------------------------------------------------------

    def write(self) -> None:
        init_pki(self.pki, list(self.signers), [n.id for n in self.nodes], key_type="rsa")
        (self.pki / "directory.toml").write_text(self._directory(), encoding="utf-8")
        for node in self.nodes:
            self.config(node.id).parent.mkdir(parents=True, exist_ok=True)
            self.config(node.id).write_text(self._node_file(node), encoding="utf-8")

    def _directory(self) -> str:
        lines = ["version = 1", ""]
        for node in self.nodes:
            lines += ["[[node]]", f'id = "{node.id}"']
            lines += [f'parent = "{node.parent}"'] if node.parent else []
        for organ, home in self.homes.items():
            lines += ["[[agency]]", f'organ_id = "{organ}"', f'home_node = "{home}"']
            if organ in self.signers:
                pem = (self.pki / "agencies" / f"{organ}.pem").read_bytes()
                lines += [f'fingerprints = ["{fingerprint(x509.load_pem_x509_certificate(pem))}"]']
        return "\n".join(lines) + "\n"

    def _node_file(self, node: BenchNode) -> str:
        parent = f'parent = "{node.parent}"\n' if node.parent else ""
        workers = (
            f"admission_workers = {node.admission_workers}\n"
            if node.admission_workers is not None
            else ""
        )
        return (
            f'[node]\nid = "{node.id}"\n{parent}\n'
            f'[rabbitmq]\nurl = "{AMQP_URL}"\nprefetch = {self.prefetch}\n\n'
            '[store]\nkind = "sqlite"\npath = "store"\n\n'
            f'[trust]\nca = "{self.pki}/ca.pem"\ndirectory = "{self.pki}/directory.toml"\n'
            f'node_key = "{self.pki}/nodes/{node.id}.key"\nnode_certs = "{self.pki}/nodes"\n\n'
            f"[limits]\n{workers}"
        )

    def config(self, node_id: str) -> Path:
        return self.folder / "nodes" / node_id / "node.toml"

    def database(self, node_id: str) -> Path:
        return self.folder / "nodes" / node_id / "store" / "lienthong.db"

    def key(self, organ: str) -> SigningKey:
        return SigningKey.from_pem(
            (self.pki / "agencies" / f"{organ}.key").read_bytes(),
            (self.pki / "agencies" / f"{organ}.pem").read_bytes(),
        )

    # --- processes --------------------------------------------------------------------

    def start(self, log_level: str = "warning") -> None:
        grouped: dict[int, list[BenchNode]] = {}
        for node in self.nodes:
            grouped.setdefault(node.process, []).append(node)
        for number, members in sorted(grouped.items()):
            command = [sys.executable, "-m", "adapters.cli", "serve", "--log-level", log_level]
            for node in members:
                command += ["--config", str(self.config(node.id))]
            with open(self.folder / f"process-{number}.log", "ab") as log:
                self.processes[number] = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=log
                )

    async def ready(self, timeout: float = 300) -> None:
        """Until every node consumes its inbound queue and every child its link."""
        queues = [f"lienthong.{n.id}.inbound" for n in self.nodes]
        queues += [down_queue(n.parent, n.id, "normal") for n in self.nodes if n.parent]
        await wait_for_consumers(queues, timeout, self.check_alive)

    def check_alive(self) -> None:
        """Raises, with the end of its log, when a node process has exited."""
        for number, process in self.processes.items():
            if process.poll() is not None:
                log = (self.folder / f"process-{number}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"process {number} exited ({process.returncode}):\n{log}")

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values()]

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def queue_names(self) -> list[str]:
        return [name for node in self.nodes for name in queues_of(node.id, node.parent)]


async def wait_for_consumers(
    queues: Iterable[str], timeout: float, check: Callable[[], None] | None = None
) -> None:
    """Until each queue exists and has a consumer; ``check()`` may raise to give up."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection, asyncio.timeout(timeout):
        channel = await connection.channel()
        for queue in queues:
            while True:
                if check is not None:
                    check()
                try:
                    declared = await channel.declare_queue(queue, passive=True)
                    if declared.declaration_result.consumer_count:
                        break
                except aio_pika.exceptions.ChannelClosed:
                    channel = await connection.channel()  # not declared yet
                await asyncio.sleep(0.1)


async def delete_queues(names: Iterable[str], patience_s: float = 120) -> None:
    """Delete the queues; a broker that is away (others restart it on this machine) is
    waited for, up to ``patience_s``."""
    deadline = asyncio.get_running_loop().time() + patience_s
    while True:
        try:
            connection = await aio_pika.connect(AMQP_URL)
            break
        except (ConnectionError, aio_pika.exceptions.AMQPConnectionError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(1.0)
    async with connection:
        channel = await connection.channel()
        for name in names:
            try:
                if name.endswith(".gate"):
                    await channel.exchange_delete(name)
                else:
                    await channel.queue_delete(name)
            except aio_pika.exceptions.ChannelClosed:
                channel = await connection.channel()


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of these processes and all their descendants, from /proc."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    ticks = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, list(pids)
    while todo:
        pid = todo.pop()
        fields = stats.get(pid)
        if fields is None:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        todo += children.get(pid, [])
    return total
