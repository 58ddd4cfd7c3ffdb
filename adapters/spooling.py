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


# A body that arrives slower than this on average has stalled: 64 KiB/s is about half a
# megabit, a slow commune uplink still sends 8 MiB in a little over two minutes
FLOOR_BYTES_PER_S = 64 * 1024


@asynccontextmanager
async def body_deadline(seconds: float, expected: int = 0) -> AsyncIterator[None]:
    """A body of about ``expected`` bytes that has not arrived within ``seconds`` plus the
    time it takes at the floor rate is refused (http.request_timeout)."""
    allowed = seconds + expected / FLOOR_BYTES_PER_S
    try:
        async with asyncio.timeout(allowed):
            yield
    except TimeoutError as exc:
        raise RequestTimeout(f"the body did not arrive within {allowed:.0f} s") from exc


class BodyClock:
    """The deadline of a streamed body: ``timeout_s`` to begin, and a second more for each
    ``FLOOR_BYTES_PER_S`` received. A body that keeps to the floor rate on average never
    runs out; one that dribbles (a byte a minute) does, however long it has been going."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.started = asyncio.get_running_loop().time()
        self.received = 0

    async def next(self, stream: AsyncIterator[bytes]) -> bytes:
        """The next chunk (b"" at the end), within what is left of the deadline."""
        loop = asyncio.get_running_loop()
        left = self.started + self.timeout_s + self.received / FLOOR_BYTES_PER_S - loop.time()
        try:
            async with asyncio.timeout(max(0.0, left)):
                chunk = await anext(stream, b"")
        except TimeoutError as exc:
            raise RequestTimeout(
                f"the body stalled: {self.received} bytes in {loop.time() - self.started:.0f} s "
                f"(a body must arrive within {self.timeout_s:g} s plus a second per "
                f"{FLOOR_BYTES_PER_S // 1024} KiB)"
            ) from exc
        self.received += len(chunk)
        return chunk


async def read_or_spool(
    request: web.Request,
    *,
    inline: int,
    cap: int,
    folder: Path | None,
    disk: Disk = PLAIN,
    timeout_s: float = 60.0,
) -> bytes | Spooled:
    """The body, read on a ``BodyClock`` of ``timeout_s``: up to ``inline`` bytes in
    memory, beyond that spooled."""
    if request.content_length is not None and request.content_length > cap:
        raise PackageTooLarge(f"the body is {request.content_length} bytes; the cap is {cap}")
    chunks, size = [], 0
    hasher = hashlib.sha256()
    stream = request.content.iter_chunked(CHUNK)
    clock = BodyClock(timeout_s)
    while chunk := await clock.next(stream):
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
            chunk = await clock.next(stream)
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
