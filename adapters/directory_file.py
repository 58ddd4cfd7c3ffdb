"""The node's signed directory on disk: read for the root's checks, replaced atomically
(written, fsynced, renamed, folder fsynced) when a newer version comes down the link."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


class DirectoryFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def read(self) -> bytes:
        return await asyncio.to_thread(self.path.read_bytes)

    async def write(self, wire: bytes) -> None:
        await asyncio.to_thread(self._replace, wire)

    def _replace(self, wire: bytes) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(wire)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
