"""The child's side of large-package transfers: ``pull`` a blob from the parent, ``push``
one to it (docs/large-packages.md, "Transfers"; the parent's side is
adapters/transfer_http.py).

Both stream (one chunk in memory at a time) and resume from where the other side is after
any break: ``pull`` from the length of its partial in the spool (``Range: bytes=N-``),
``push`` from the parent's ``Upload-Offset``. An attempt breaks when the connection is
refused or cut, when the peer answers 5xx or 429 (``transfer.interrupted``), or when no
byte moved for ``stall_s`` seconds (``transfer.stalled``: that connection is dropped and a
new one opened). Those are transient: the next attempt follows after a backoff (from
``backoff_s``, doubling to 30 s, back to ``backoff_s`` after an attempt that moved bytes).

What is not retried:

- bytes that, once all moved, do not hash to the digest (or run past the size): the
  partial is removed and the transfer starts once more from zero (a byte flipped on the
  way); a second time, ``transfer.corrupt``. ``pull`` never returns a path whose bytes do
  not hash to the digest, since the spool renames a blob into place only then;
- a refusal the peer will repeat: 401 or 403 (the link credential), 404 (no such blob for
  this child), 413 (past the size or the parent's cap), another 4xx: ``transfer.failed``;
- the deadline: ``deadline_s`` bounds everything, attempts and backoffs; past it,
  ``transfer.failed`` with a reason naming the peer, the bytes moved and the last cause.

The URL's scheme is honoured as given: ``https://`` verifies the parent's certificate with
``ssl`` (an ``ssl.SSLContext`` holding the link CA; the system's store when None), and
``http://`` is plain. A link token is a password, so plain HTTP is refused to any host but
the loopback unless ``insecure_http`` is set (a parent behind a TLS terminator is reached
at the terminator's ``https://`` address).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import ssl as ssl_module
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp
import structlog
from yarl import URL

from adapters.spool import Spool, read_chunks
from exchange.errors import (
    LienthongError,
    TransferBeyondSize,
    TransferCorrupt,
    TransferFailed,
    TransferInterrupted,
    TransferOffsetMismatch,
    TransferStalled,
    TransientFault,
)

log = structlog.get_logger("lienthong.transfer")

MAX_BACKOFF_S = 30.0
T = TypeVar("T")


@dataclass(frozen=True)
class TransferProgress:
    """What a transfer did last, for whoever watches (metrics, a test)."""

    event: str  # "bytes": bytes moved; "broken": an attempt broke, the reason says why
    digest: str
    offset: int  # where in the blob the transfer is: written here (pull), sent (push)
    size: int
    moved: int  # bytes moved by this transfer, every attempt together
    reason: str = ""


Observe = Callable[[TransferProgress], None]


@dataclass
class _Transfer:
    """One pull or push: what it moved, where it is, and how it stands with its peer."""

    verb: str  # "pulling" or "pushing"
    base_url: str
    digest: str
    size: int
    stall_s: float
    observe: Observe | None
    offset: int = 0
    moved: int = 0
    attempts: int = 0
    last: str = "no attempt finished"
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def peer(self) -> str:
        url = URL(self.base_url)
        return f"{url.scheme}://{url.host}:{url.port}"

    def tell(self, event: str, reason: str = "", at: int | None = None) -> None:
        if self.observe is not None:
            offset = self.offset if at is None else at
            self.observe(
                TransferProgress(event, self.digest, offset, self.size, self.moved, reason)
            )

    def failure(self, why: str) -> str:
        return (
            f"{self.verb} {self.digest} ({self.size} bytes) with {self.peer}: {why}; "
            f"{self.offset} of {self.size} bytes are across, {self.moved} moved in "
            f"{self.attempts} attempt(s); last: {self.last}"
        )


async def pull(
    base_url: str,
    token: str,
    digest: str,
    size: int,
    spool: Spool,
    *,
    stall_s: float,
    deadline_s: float,
    backoff_s: float = 0.5,
    ssl: ssl_module.SSLContext | None = None,
    insecure_http: bool = False,
    observe: Observe | None = None,
) -> Path:
    """Fetch blob ``digest`` from the parent at ``base_url`` into ``spool``: the path of
    the complete blob, whose bytes hash to ``digest``."""
    transfer = _Transfer("pulling", base_url, digest, size, stall_s, observe)
    url = _url(base_url, f"/v1/links/blobs/{digest}", insecure_http)
    transfer.headers = {"Authorization": f"Bearer {token}"}

    async def attempt(session: aiohttp.ClientSession) -> Path:
        if (done := spool.path(digest)) is not None:
            return done
        return await _pull_once(session, url, transfer, spool)

    def start_over() -> None:
        spool.discard(digest)
        transfer.offset = 0

    path = await _with_retries(transfer, attempt, start_over, deadline_s, backoff_s, ssl)
    log.info("transfer.pulled", peer=transfer.peer, sha256=digest, size=size, moved=transfer.moved)
    return path


async def _pull_once(
    session: aiohttp.ClientSession, url: URL, transfer: _Transfer, spool: Spool
) -> Path:
    loop = asyncio.get_running_loop()
    async with spool.writer(transfer.digest, transfer.size) as writer:
        transfer.offset = start = writer.offset
        if not writer.done:
            headers = dict(transfer.headers)
            if start:
                headers["Range"] = f"bytes={start}-"
            try:
                async with asyncio.timeout(transfer.stall_s) as idle:
                    async with session.get(url, headers=headers) as reply:
                        # a peer that ignores the range sends from zero: what we hold is
                        # skipped (the digest check at the end covers it)
                        skip = await _check_pull(reply, transfer, start)
                        while chunk := await reply.content.read(spool.chunk):
                            idle.reschedule(loop.time() + transfer.stall_s)
                            transfer.moved += len(chunk)
                            if skip:
                                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
                            await writer.write(chunk)
                            transfer.offset = writer.offset
                            transfer.tell("bytes")
            except TimeoutError as exc:
                raise _broken(transfer, exc, idle.expired()) from exc
            except aiohttp.ClientError as exc:
                raise _broken(transfer, exc, stalled=False) from exc
            except TransferBeyondSize as exc:
                raise TransferCorrupt(f"the peer sent more than {transfer.size} bytes") from exc
            if not writer.done:
                raise TransferInterrupted(
                    f"the body ended at offset {writer.offset} of {transfer.size}"
                )
        return await writer.complete()


async def _check_pull(reply: aiohttp.ClientResponse, transfer: _Transfer, start: int) -> int:
    """That the answer is the blob, from ``start`` or from zero: how many bytes to skip."""
    if reply.status == 416:
        raise TransferCorrupt(f"the peer's blob is shorter than {start} bytes")
    if reply.status >= 400:
        raise await _refusal(reply)
    if reply.status == 200:
        start, skip = 0, start
    else:
        skip = 0
    expected = f"bytes {start}-{transfer.size - 1}/{transfer.size}"
    if reply.status == 206 and reply.headers.get("Content-Range") != expected:
        raise TransferCorrupt(
            f"the peer answered Content-Range {reply.headers.get('Content-Range')!r}, "
            f"not {expected!r}"
        )
    if reply.status not in (200, 206):
        raise TransferInterrupted(f"the peer answered HTTP {reply.status}")
    if reply.content_length is not None and reply.content_length != transfer.size - start:
        raise TransferCorrupt(
            f"the peer sends {reply.content_length} bytes from offset {start}; "
            f"the blob has {transfer.size}"
        )
    return skip


async def push(
    base_url: str,
    token: str,
    path: Path,
    digest: str,
    size: int,
    *,
    stall_s: float,
    deadline_s: float,
    backoff_s: float = 0.5,
    ssl: ssl_module.SSLContext | None = None,
    insecure_http: bool = False,
    observe: Observe | None = None,
) -> None:
    """Send the file at ``path`` (``size`` bytes hashing to ``digest``) to the parent at
    ``base_url``; returns once the parent holds it complete and checked."""
    transfer = _Transfer("pushing", base_url, digest, size, stall_s, observe)
    url = _url(base_url, f"/v1/links/uploads/{digest}", insecure_http).with_query(size=str(size))
    transfer.headers = {"Authorization": f"Bearer {token}"}
    try:
        held = (await asyncio.to_thread(path.stat)).st_size
    except OSError as exc:
        raise TransferFailed(transfer.failure(f"cannot read {path}: {exc.strerror}")) from exc
    if held != size:
        raise TransferFailed(transfer.failure(f"{path} has {held} bytes, not {size}"))

    async def attempt(session: aiohttp.ClientSession) -> None:
        while not await _push_once(session, url, transfer, path):
            pass  # the parent took a part of the body: on from where it is

    await _with_retries(transfer, attempt, lambda: None, deadline_s, backoff_s, ssl)
    log.info("transfer.pushed", peer=transfer.peer, sha256=digest, size=size, moved=transfer.moved)


async def _push_once(
    session: aiohttp.ClientSession, url: URL, transfer: _Transfer, path: Path
) -> bool:
    """One HEAD and one PATCH from where the parent is: True once the parent holds all."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(transfer.stall_s) as idle:
            async with session.head(url, headers=transfer.headers) as reply:
                if reply.status >= 400:
                    raise await _refusal(reply)
                transfer.offset = _offset(reply, transfer)
            if transfer.offset == transfer.size:
                return True

            async def body() -> AsyncIterator[bytes]:
                sent = transfer.offset
                async for chunk in read_chunks(path, transfer.offset):
                    yield chunk  # back here once the connection took it
                    sent += len(chunk)
                    transfer.moved += len(chunk)
                    idle.reschedule(loop.time() + transfer.stall_s)
                    transfer.tell("bytes", at=sent)

            headers = {
                **transfer.headers,
                "Upload-Offset": str(transfer.offset),
                "Content-Length": str(transfer.size - transfer.offset),
                "Content-Type": "application/offset+octet-stream",
            }
            async with session.patch(url, data=body(), headers=headers, expect100=True) as reply:
                if reply.status == 409 and "Upload-Offset" in reply.headers:
                    transfer.offset = _offset(reply, transfer)
                    raise TransferOffsetMismatch(f"the peer holds {transfer.offset} bytes")
                if reply.status >= 400:
                    raise await _refusal(reply)
                transfer.offset = _offset(reply, transfer)
    except TimeoutError as exc:
        raise _broken(transfer, exc, idle.expired()) from exc
    except aiohttp.ClientError as exc:
        raise _broken(transfer, exc, stalled=False) from exc
    except OSError as exc:  # our own file: nothing the peer can mend
        raise TransferFailed(transfer.failure(f"cannot read {path}: {exc}")) from exc
    return transfer.offset == transfer.size


def _offset(reply: aiohttp.ClientResponse, transfer: _Transfer) -> int:
    raw = reply.headers.get("Upload-Offset", "")
    if not raw.isdigit() or int(raw) > transfer.size:
        raise TransferInterrupted(f"the peer answered HTTP {reply.status} with no usable offset")
    return int(raw)


# --- attempts, and what each answer means -----------------------------------------------


async def _with_retries(
    transfer: _Transfer,
    attempt: Callable[[aiohttp.ClientSession], Awaitable[T]],
    start_over: Callable[[], None],
    deadline_s: float,
    backoff_s: float,
    ssl: ssl_module.SSLContext | None,
) -> T:
    corrupt_before = False
    delay = backoff_s
    connector = aiohttp.TCPConnector(force_close=True, ssl=ssl if ssl is not None else True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=transfer.stall_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        try:
            async with asyncio.timeout(deadline_s):
                while True:
                    transfer.attempts += 1
                    moved = transfer.moved
                    try:
                        return await attempt(session)
                    except TransferCorrupt as fault:
                        transfer.last = str(fault)
                        start_over()
                        if corrupt_before:
                            raise TransferCorrupt(transfer.failure("corrupt twice")) from fault
                        corrupt_before = True
                        transfer.tell("broken", str(fault))
                        continue  # from zero, at once
                    except TransferFailed as fault:  # refused for good: say by whom
                        transfer.last = str(fault)
                        raise TransferFailed(transfer.failure("refused")) from fault
                    except (TransientFault, TransferOffsetMismatch) as fault:  # or a race
                        transfer.last = str(fault)
                        transfer.tell("broken", str(fault))
                        log.info(
                            "transfer.broken",
                            peer=transfer.peer,
                            sha256=transfer.digest,
                            offset=transfer.offset,
                            code=fault.code,
                            reason=fault.message,
                        )
                    except OSError as exc:  # our own disk: the peer cannot mend it
                        raise TransferFailed(transfer.failure(f"local files: {exc}")) from exc
                    if transfer.moved > moved:
                        delay = backoff_s
                    await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311
                    delay = min(delay * 2, MAX_BACKOFF_S)
        except TimeoutError as exc:
            failed = TransferFailed(transfer.failure(f"gave up after {deadline_s:g} s"))
            log.warning("transfer.failed", peer=transfer.peer, reason=failed.message)
            raise failed from exc
        except LienthongError as fault:
            if isinstance(fault, TransferCorrupt | TransferFailed):
                log.warning("transfer.failed", peer=transfer.peer, reason=fault.message)
            raise


def _broken(transfer: _Transfer, exc: BaseException, stalled: bool) -> LienthongError:
    if stalled:
        return TransferStalled(
            f"no byte moved for {transfer.stall_s:g} s at offset {transfer.offset}"
        )
    return TransferInterrupted(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


async def _refusal(reply: aiohttp.ClientResponse) -> LienthongError:
    """What an HTTP error from the peer means for the transfer."""
    try:
        body = await reply.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        body = {}
    code = body.get("code", f"http.{reply.status}") if isinstance(body, dict) else "?"
    detail = body.get("detail", reply.reason or "") if isinstance(body, dict) else ""
    said = f"HTTP {reply.status} {code}: {detail}"
    if reply.status == 422 and code == TransferCorrupt.code:
        return TransferCorrupt(f"the peer found the bytes corrupt: {detail}")
    if reply.status in (408, 429) or reply.status >= 500:
        return TransferInterrupted(said)
    return TransferFailed(f"the peer refused the transfer for good: {said}")


def _url(base_url: str, path: str, insecure_http: bool) -> URL:
    url = URL(base_url.rstrip("/") + path)
    if url.scheme not in ("http", "https") or not url.host:
        raise TransferFailed(f"not an http(s) URL of a parent node: {base_url!r}")
    if url.scheme == "http" and not insecure_http and not _loopback(url.host):
        raise TransferFailed(
            f"refusing to send a link token in clear to {url.host}: use https:// "
            "(or insecure_http, on a network you trust)"
        )
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
