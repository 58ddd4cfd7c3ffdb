"""The node's signed directory on disk.

``<trust.directory>`` is the version the node keeps and uses; it is replaced atomically
(written, fsynced, renamed, folder fsynced) before a newer version is used. At the root,
``<trust.directory>.next`` is where the operator's newly signed version waits for the
root's next check (``lienthong directory sign``); admission never reads it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.durable import write_atomically
from exchange.errors import TransientFault


def next_path(kept: Path) -> Path:
    return kept.with_name(kept.name + ".next")


class DirectoryFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def read_next(self) -> bytes | None:
        def read() -> bytes | None:
            try:
                return next_path(self.path).read_bytes()
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(read)

    async def write(self, wire: bytes) -> None:
        try:
            await asyncio.to_thread(write_atomically, self.path, wire)
        except OSError as exc:  # a full disk: keep the old version, try again later
            raise TransientFault(f"cannot keep the directory in {self.path}: {exc}") from exc
