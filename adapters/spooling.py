"""A request body taken in: up to the inline cap in memory, beyond it spooled to a file
in the store's spool folder while it is hashed, and refused the moment it passes the
package cap (by its Content-Length before a byte is read, else as the bytes pass it)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from adapters.durable import PLAIN, Disk, disk_full
from exchange.errors import PackageTooLarge, RequestTimeout, StoreFull
from exchange.large import Spooled

CHUNK = 1024 * 1024


@asynccontextmanager
async def body_deadline(seconds: float) -> AsyncIterator[None]:
    """A body that has not arrived within ``seconds`` is refused (http.request_timeout)."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        raise RequestTimeout(f"the body did not arrive within {seconds:g} s") from exc


async def read_or_spool(
    request: web.Request,
    *,
    inline: int,
    cap: int,
    folder: Path | None,
    disk: Disk = PLAIN,
    timeout_s: float = 60.0,
) -> bytes | Spooled:
    """Up to ``inline`` bytes must arrive within ``timeout_s``; beyond, spooled, each
    chunk within it."""
    if request.content_length is not None and request.content_length > cap:
        raise PackageTooLarge(f"the body is {request.content_length} bytes; the cap is {cap}")
    chunks, size = [], 0
    hasher = hashlib.sha256()
    stream = request.content.iter_chunked(CHUNK)
    async with body_deadline(timeout_s):
        async for chunk in stream:
            size += len(chunk)
            hasher.update(chunk)
            chunks.append(chunk)
            if size > inline:
                break
        else:
            return b"".join(chunks)
    if folder is None:
        raise PackageTooLarge(
            f"the body is over the inline cap of {inline} bytes, and this node keeps "
            "packages in its database: it takes none larger (docs/large-packages.md)"
        )
    path = folder / f"http-{uuid.uuid4().hex}.part"
    loop = asyncio.get_running_loop()
    handle = await loop.run_in_executor(None, path.open, "wb")
    try:
        for chunk in chunks:
            await loop.run_in_executor(None, disk.write, handle, chunk)
        chunks.clear()  # from here on, never more than one chunk in memory
        while True:
            async with body_deadline(timeout_s):
                chunk = await anext(stream, b"")
            if not chunk:
                break
            size += len(chunk)
            _within(size, cap)
            hasher.update(chunk)
            await loop.run_in_executor(None, disk.write, handle, chunk)
        await loop.run_in_executor(None, handle.flush)
        await loop.run_in_executor(None, os.fsync, handle.fileno())
    except BaseException as exc:
        with contextlib.suppress(OSError):  # what is still buffered may not fit either
            handle.close()
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and disk_full(exc):
            raise StoreFull(f"the spool folder: the disk is full ({exc})") from exc
        raise
    handle.close()
    return Spooled(path, hasher.hexdigest(), size)


def _within(size: int, cap: int) -> None:
    if size > cap:
        raise PackageTooLarge(f"the body is over the cap of {cap} bytes")
