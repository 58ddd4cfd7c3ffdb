"""A node's transfers of large packages over HTTP (exchange/large.py ``BlobMover``;
docs/large-packages.md): as a child, it pushes to and pulls from its parent's HTTP face
(adapters/transfer_client.py); as a parent, it serves its children from a spool beside
its store (adapters/transfer_http.py), where their pushes land too.

The spool is a folder in the store's spool folder, on the same file system as the store's
blobs: a blob offered to a child is a hard link (no copy), and a blob that arrived is
taken over by the store with a rename.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from aiohttp import web

from adapters.durable import PLAIN, Disk
from adapters.spool import Spool
from adapters.transfer_client import pull, push
from adapters.transfer_http import add_transfer_routes, link_authoriser
from exchange.config import NodeConfig
from exchange.errors import TransferFailed, TransientFault

STALL_S = 30.0  # no byte for this long: the connection is given up and the transfer resumed
# one try of a transfer, its resumptions included: then it is tried again later, from where
# it stopped, until the copy's link expiry; well under RabbitMQ's consumer timeout (30
# min), since a child pulls while it holds the claim unacknowledged
DEADLINE_S = 15 * 60.0


class HttpBlobs:
    def __init__(self, node_id: str, folder: Path, config: NodeConfig, disk: Disk = PLAIN) -> None:
        self.node_id = node_id
        self.spool = Spool(folder / "links", disk=disk)
        self._offered = folder / "offered"  # offered/<child>/<digest>: what a child may pull
        self._parent_url = config.link.transfer_url
        self._token = config.link.transfer_token

    # --- as a child ----------------------------------------------------------------------

    def _to_parent(self) -> tuple[str, str]:
        if not self._parent_url or not self._token:
            raise TransientFault(
                f"node {self.node_id} has no [link] transfer_url and transfer_token_file: "
                "large packages cannot cross its link to its parent"
            )
        return self._parent_url, self._token

    async def push(self, parent: str, path: Path, digest: str, size: int) -> None:
        url, token = self._to_parent()
        try:
            await push(url, token, path, digest, size, stall_s=STALL_S, deadline_s=DEADLINE_S)
        except TransferFailed as exc:  # not now: the link waits, and expires in the end
            raise TransientFault(exc.message) from exc

    async def pull(self, parent: str, digest: str, size: int) -> Path:
        url, token = self._to_parent()
        try:
            return await pull(
                url, token, digest, size, self.spool, stall_s=STALL_S, deadline_s=DEADLINE_S
            )
        except TransferFailed as exc:  # the claim goes back to its queue, to be tried again
            raise TransientFault(exc.message) from exc

    # --- as a parent ---------------------------------------------------------------------

    async def offer(self, child: str, path: Path, digest: str, size: int) -> None:
        def link() -> None:
            served = self.spool.folder / digest
            if not served.exists():
                with contextlib.suppress(FileExistsError):  # another offer of it just now
                    os.link(path, served)
            mark = self._offered / child / digest
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.touch()

        await asyncio.to_thread(link)

    def allowed(self, child: str, digest: str) -> bool:
        return (self._offered / child / digest).is_file()

    def received(self, child: str, digest: str, size: int) -> Path | None:
        found = self.spool.path(digest)
        if found is None or found.stat().st_size != size:
            return None
        return found

    def add_routes(self, app: web.Application, config: NodeConfig) -> None:
        """The parent's side, on its HTTP face: for its children's link tokens only."""
        assert config.http is not None
        add_transfer_routes(
            app,
            self.spool,
            authorise=link_authoriser(config.http),
            allowed=self.allowed,
            max_size=config.max_package_bytes,
        )
