"""Keeping the directory current along the tree (DESIGN §5).

The root's operator writes a newly signed directory beside the root's own, as the next
one (``lienthong directory sign``); the root checks it on its next round, keeps it, and
sends it down every link, on a lane of its own (``directory``), so that packages waiting
for it on the other lanes never stand in its way. A node that takes a newer version keeps
it (durably, before using it), puts it to use (routing, hosted agencies, admission), and
sends it on to its children. Packages crossing a link carry the sender's directory
version; a node that is behind requeues them until its directory catches up, rather than
route them by a version that does not know their recipients. A node sends its current
version to its children when it starts too, so a child that was away
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
from exchange.envelope import PeerKey
from exchange.errors import DirectoryRefused, DirectoryStale, LienthongError, TransientFault
from exchange.links import DIRECTORY_LANE, down_queue
from exchange.transport import Message, Transport

log = structlog.get_logger("lienthong.directory")

KIND_HEADER = "lienthong-kind"
VERSION_HEADER = "lienthong-directory-version"  # on link publishes: the sender's version
DIRECTORY = "directory"
LANE = DIRECTORY_LANE  # down each link: the directory alone


class DirectoryHome(Protocol):
    """Where a node keeps its signed directory (adapters: a file, written atomically)."""

    async def read_next(self) -> bytes | None:
        """The root: the version its operator signed to be taken next, if any."""

    async def write(self, wire: bytes) -> None:
        """Durably, before the node uses the new version; TransientFault if it cannot."""


class DirectorySync:
    def __init__(
        self,
        node_id: str,
        *,
        signer: str,
        keys: Mapping[str, PeerKey],
        home: DirectoryHome,
        transport: Transport,
        kept: SignedDirectory,
        apply: Callable[[SignedDirectory], Awaitable[None]],
        children: Callable[[], tuple[str, ...]],
        acceptable: Callable[[SignedDirectory], str | None] = lambda _: None,
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
        self._acceptable = acceptable
        self._timeout = publish_timeout_s
        self._owed: set[str] = set(children())  # children not yet sent the kept version
        self._sending = asyncio.Lock()  # one round at a time: marks follow what was sent

    @property
    def version(self) -> int:
        return self.kept.version

    async def offer(self, wire: bytes, *, came_from: str) -> str:
        """A directory document from the parent link: 'installed', 'same', or refused."""
        try:
            offered = self._open(wire)
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
        await self._install(offered)
        return "installed"

    async def check_next(self) -> bool:
        """The root: has its operator signed a newer directory? Takes it if so."""
        try:
            wire = await self.home.read_next()
            if wire is None:
                return False
            offered = self._open(wire)
            if not newer(self.kept, offered):
                return False
        except (DirectoryRefused, DirectoryStale, OSError) as exc:
            log.warning("directory.next_refused", node=self.node_id, error=str(exc))
            return False
        await self._install(offered)
        return True

    def _open(self, wire: bytes) -> SignedDirectory:
        offered = open_directory(wire, self.keys, self.signer)
        problem = self._acceptable(offered)
        if problem is not None:
            raise DirectoryRefused(f"directory v{offered.version}: {problem}")
        return offered

    async def _install(self, offered: SignedDirectory) -> None:
        await self.home.write(offered.wire)  # kept first: what is used is what survives
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
        async with self._sending:
            sent = self.kept
            for child in sorted(self._owed):
                try:
                    await self.transport.publish(
                        down_queue(self.node_id, child, LANE),
                        Message(sent.wire, headers={KIND_HEADER: DIRECTORY}),
                        timeout=self._timeout,
                    )
                except LienthongError as exc:
                    log.info(
                        "directory.send_waiting", node=self.node_id, child=child, error=exc.message
                    )
                    continue
                if self.kept is sent:  # a newer one came meanwhile: that one is owed now
                    self._owed.discard(child)

    async def run(self, every_s: float) -> None:
        """Send the kept version down once, then check the next one (at the root) and the
        owed children, round after round; a broker or disk that is away waits a round."""
        while True:
            try:
                if self.node_id == self.signer:
                    await self.check_next()
                await self.send_down()
            except TransientFault as exc:
                log.warning("directory.round_failed", node=self.node_id, error=exc.message)
            await asyncio.sleep(every_s)
