"""Transfers between the memory tree's nodes, for unit tests: a node pushes a large
package's file into its parent's spool and pulls one from its parent's store, each copy
checked against its digest; the same contract as the HTTP transfers
(tests/contract/test_blob_mover_contract.py)."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from exchange.errors import TransientFault
from exchange.node import Node


def _digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


class MemoryBlobs:
    def __init__(self, me: str, nodes: Mapping[str, Node]) -> None:
        self.me, self.nodes = me, nodes
        self.pushed: list[str] = []
        self.pulled: list[str] = []
        self.offered: list[tuple[str, str]] = []

    def _spool(self, node: str) -> Path:
        folder = self.nodes[node].store.spool_folder()
        assert folder is not None
        return folder

    async def push(self, parent: str, path: Path, digest: str, size: int) -> None:
        target = self._spool(parent) / f"pushed-{self.me}-{digest}"
        partial = target.with_suffix(".part")
        shutil.copyfile(path, partial)
        if partial.stat().st_size != size or _digest(partial) != digest:
            partial.unlink()
            raise TransientFault(f"the copy of {digest[:16]} to {parent} did not match")
        partial.replace(target)
        self.pushed.append(digest)

    async def pull(self, parent: str, digest: str, size: int) -> Path:
        source = await self.nodes[parent].store.package_file(digest)
        assert source is not None
        target = self._spool(self.me) / f"pulled-{uuid.uuid4().hex}"
        shutil.copyfile(source, target)
        if target.stat().st_size != size or _digest(target) != digest:
            target.unlink()
            raise TransientFault(f"the copy of {digest[:16]} from {parent} did not match")
        self.pulled.append(digest)
        return target

    async def offer(self, child: str, path: Path, digest: str, size: int) -> None:
        self.offered.append((child, digest))

    def received(self, child: str, digest: str, size: int) -> Path | None:
        found = self._spool(self.me) / f"pushed-{child}-{digest}"
        return found if found.is_file() and found.stat().st_size == size else None
