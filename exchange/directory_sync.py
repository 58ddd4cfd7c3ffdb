"""Keeping the directory current along the tree (DESIGN §5).

The root's operator writes a newly signed directory where the root keeps its own
(``lienthong directory sign``); the root notices it on its next check and sends it down
every link. A node that takes a newer version keeps it (durably, before using it), puts
it to use (routing, hosted agencies, admission), and sends it on to its children. A node
sends its current version to its children when it starts too, so a child that was away
catches up from its queue; children ignore a version they already have.

A document from anywhere but the parent link, unsigned, signed by another node than the
directory signer, broken, or older than the kept one is refused, and the node keeps the
version it has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import structlog

from exchange.directory_doc import SignedDirectory, newer, open_directory
from exchange.envelope import NodePublicKey
from exchange.errors import DirectoryRefused, DirectoryStale, LienthongError, TransientFault
from exchange.links import down_queue
from exchange.transport import Message, Transport

log = structlog.get_logger("lienthong.directory")

KIND_HEADER = "lienthong-kind"
DIRECTORY = "directory"
LANE = "normal"


class DirectoryHome(Protocol):
    """Where a node keeps its signed directory (adapters: a file, written atomically)."""

    async def read(self) -> bytes: ...

    async def write(self, wire: bytes) -> None:
        """Durably, before the node uses the new version."""


class DirectorySync:
    def __init__(
        self,
        node_id: str,
        *,
        signer: str,
        keys: Mapping[str, NodePublicKey],
        home: DirectoryHome,
        transport: Transport,
        kept: SignedDirectory,
        apply: Callable[[SignedDirectory], Awaitable[None]],
        children: Callable[[], tuple[str, ...]],
        publish_timeout_s: float = 10.0,
    ) -> None:
        self.node_id = node_id
        self.signer = signer
        self.keys = keys
        self.home = home
        self.transport = transport
        self.kept = kept
        self._apply = apply
        self._children = children
        self._timeout = publish_timeout_s
        self._owed: set[str] = set(children())  # children not yet sent the kept version

    @property
    def version(self) -> int:
        return self.kept.version

    async def offer(self, wire: bytes, *, came_from: str) -> str:
        """A directory document from the parent link: 'installed', 'same', or refused."""
        try:
            offered = open_directory(wire, self.keys, self.signer)
            if not newer(self.kept, offered):
                return "same"
        except (DirectoryRefused, DirectoryStale) as exc:
            log.warning(
                "directory.refused",
                node=self.node_id,
                came_from=came_from,
                code=exc.code,
                error=exc.message,
                kept=self.kept.version,
            )
            return exc.code
        await self._install(offered, write=True)
        return "installed"

    async def check_home(self) -> bool:
        """The root: has its operator written a newer directory? Installs it if so."""
        try:
            offered = open_directory(await self.home.read(), self.keys, self.signer)
            if not newer(self.kept, offered):
                return False
        except (DirectoryRefused, DirectoryStale, OSError) as exc:
            log.warning("directory.home_refused", node=self.node_id, error=str(exc))
            return False
        await self._install(offered, write=False)
        return True

    async def _install(self, offered: SignedDirectory, *, write: bool) -> None:
        if write:
            await self.home.write(offered.wire)
        before = self.kept.version
        await self._apply(offered)
        self.kept = offered
        self._owed = set(self._children())
        log.info(
            "directory.installed",
            node=self.node_id,
            version=offered.version,
            previous=before,
            issued_at=offered.issued_at,
        )
        await self.send_down()

    async def send_down(self) -> None:
        """The kept version to every child still owed it; a link that refuses now (down,
        full) is tried again on the next round."""
        for child in sorted(self._owed):
            try:
                await self.transport.publish(
                    down_queue(self.node_id, child, LANE),
                    Message(self.kept.wire, headers={KIND_HEADER: DIRECTORY}),
                    timeout=self._timeout,
                )
            except (TransientFault, LienthongError) as exc:
                log.info(
                    "directory.send_waiting", node=self.node_id, child=child, error=exc.message
                )
                continue
            self._owed.discard(child)

    async def run(self, every_s: float) -> None:
        """Send the kept version down once, then check the home and the owed children."""
        while True:
            if self.node_id == self.signer:
                await self.check_home()
            await self.send_down()
            await asyncio.sleep(every_s)
