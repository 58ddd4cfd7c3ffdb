"""The parent's side of large-package transfers: three routes on its HTTP face, for its
child nodes only (docs/large-packages.md, "Transfers").

    GET   /v1/links/blobs/{sha256}              a complete blob; ``Range: bytes=N-`` resumes
    HEAD  /v1/links/uploads/{sha256}?size=N     how much of an upload is here: Upload-Offset
    PATCH /v1/links/uploads/{sha256}?size=N     append at ``Upload-Offset: K``

The child opens every transfer (it may sit behind NAT): it pulls what comes down to it
and pushes what goes up. Bytes go to and from the spool (adapters/spool.py) one chunk at a
time; a request body is never read whole, and a body that would pass its size is refused
from its headers, before it is read (``Expect: 100-continue`` is answered the same way).

Who calls is a child's link credential (``[http.links.<child>]``); an agency's or an
operator's token is refused here (403), as a link token is everywhere else. A child reads
only the blobs ``allowed(child, digest)`` says are for it; any other is 404, as an unknown
one is, so that a child learns nothing of what is not for it.

A peer that stops moving bytes for ``stall_s`` seconds loses its request: the spool keeps
what arrived, and the child resumes on a new connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from adapters.http_api import problem, problem_for
from adapters.spool import Spool, SpoolWriter, is_digest, read_chunks
from exchange.config_http import HttpSettings
from exchange.errors import (
    LienthongError,
    OperatorsOnly,
    RequestInvalid,
    TransferBeyondSize,
    TransferCorrupt,
    TransferInterrupted,
    TransferNotFound,
    TransferOffsetMismatch,
    TransferStalled,
    Unauthenticated,
)

log = structlog.get_logger("lienthong.transfer")

BLOBS, UPLOADS = "/v1/links/blobs/{sha256}", "/v1/links/uploads/{sha256}"
STATUS = {
    TransferNotFound.code: 404,
    TransferOffsetMismatch.code: 409,
    TransferBeyondSize.code: 413,
    TransferCorrupt.code: 422,
}
_RANGE = re.compile(r"bytes=(\d{1,19})-(\d{1,19})?")

Authorise = Callable[[web.Request], str]  # the calling child's node id, or raises 401/403
Allowed = Callable[[str, str], bool]  # (child, digest): may this child read this blob?


def link_authoriser(settings: HttpSettings) -> Authorise:
    """The child whose ``[http.links.<child>]`` token the request bears."""

    def authorise(request: web.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send Authorization: Bearer <the child's link token>")
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        for link in settings.links.values():
            if hmac.compare_digest(link.token_sha256, digest):
                return link.child
        others = [c.token_sha256 for c in settings.clients.values() if c.token_sha256]
        others += [o.token_sha256 for o in settings.operators.values()]
        if any(hmac.compare_digest(known, digest) for known in others):
            raise OperatorsOnly("/v1/links/ is for child nodes: an agency's or operator's token")
        raise Unauthenticated("this token belongs to no child node of this node")

    return authorise


def add_transfer_routes(
    app: web.Application,
    spool: Spool,
    *,
    authorise: Authorise,
    allowed: Allowed,
    max_size: int,
    stall_s: float = 60.0,
) -> None:
    """Serve the spool to the node's children: what they pull (``allowed``) and what they
    push (up to ``max_size`` bytes a blob)."""
    face = _TransferFace(spool, authorise, allowed, max_size, stall_s)
    app.router.add_route("GET", BLOBS, face.blob, name="transfer-blob")
    app.router.add_route("HEAD", UPLOADS, face.upload_offset)
    app.router.add_route("PATCH", UPLOADS, face.upload, expect_handler=face.expect)


def _answer(fault: LienthongError, **headers: str) -> web.Response:
    status = STATUS.get(fault.code)
    response = problem(status, fault.code, fault.message) if status else problem_for(fault)
    response.headers.update(headers)
    return response


class _TransferFace:
    def __init__(
        self, spool: Spool, authorise: Authorise, allowed: Allowed, max_size: int, stall_s: float
    ) -> None:
        self.spool, self.authorise, self.allowed = spool, authorise, allowed
        self.max_size, self.stall_s = max_size, stall_s

    # --- what the child pulls ---------------------------------------------------------

    async def blob(self, request: web.Request) -> web.StreamResponse:
        try:
            child = self.authorise(request)
            digest = request.match_info["sha256"]
            path = self.spool.path(digest) if is_digest(digest) else None
            if path is None or not self.allowed(child, digest):
                raise TransferNotFound(f"no blob {digest[:64]} here for {child}")
            size = (await asyncio.to_thread(path.stat)).st_size
            start = _range_start(request.headers.get("Range"), size)
        except TransferOffsetMismatch as fault:  # a range past the end
            unsatisfiable = problem(416, fault.code, fault.message)
            unsatisfiable.headers["Content-Range"] = f"bytes */{size}"
            return unsatisfiable
        except LienthongError as fault:
            return _answer(fault)
        response = web.StreamResponse(
            status=206 if start else 200,
            headers={
                "Content-Type": "application/octet-stream",
                "Accept-Ranges": "bytes",
                "ETag": f'"{digest}"',
                "Digest": f"sha-256={digest}",
                "Cache-Control": "no-store",
            },
        )
        if start:
            response.headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        response.content_length = size - start
        bound = log.bind(child=child, sha256=digest, offset=start)
        await response.prepare(request)
        await self._send(request, response, path, start, bound)
        return response

    async def _send(
        self,
        request: web.Request,
        response: web.StreamResponse,
        path: Path,
        start: int,
        bound: Any,
    ) -> None:
        sent = 0
        try:
            async for chunk in read_chunks(path, start, self.spool.chunk):
                async with asyncio.timeout(self.stall_s):
                    await response.write(chunk)
                sent += len(chunk)
        except OSError as exc:  # a stalled child (TimeoutError), a gone one, a discarded blob
            bound.info("transfer.serve_broken", sent=sent, reason=type(exc).__name__)
            if request.transport is not None:
                request.transport.abort()
            return
        bound.info("transfer.served", sent=sent)

    # --- what the child pushes --------------------------------------------------------

    def _target(self, request: web.Request) -> tuple[str, str, int]:
        """(child, digest, size) of an upload request; raises what the child is told."""
        child = self.authorise(request)
        digest = request.match_info["sha256"]
        if not is_digest(digest):
            raise RequestInvalid("an upload is named by the lowercase hex SHA-256 of its bytes")
        raw = request.query.get("size", "")
        if not raw.isdigit() or len(raw) > 19:
            raise RequestInvalid("query 'size' is the number of bytes of the blob")
        size = int(raw)
        if size > self.max_size:
            raise TransferBeyondSize(f"{size} bytes is past this node's cap of {self.max_size}")
        return child, digest, size

    def _held(self, digest: str, size: int) -> int:
        """The bytes of an upload this node holds: ``size`` once it is complete."""
        return size if self.spool.path(digest) is not None else self.spool.offset(digest)

    async def upload_offset(self, request: web.Request) -> web.StreamResponse:
        try:
            _, digest, size = self._target(request)
            offset = await self._offset(digest, size)
        except LienthongError as fault:
            return _answer(fault)
        return web.Response(
            headers={
                "Upload-Offset": str(offset),
                "Upload-Length": str(size),
                "Cache-Control": "no-store",
            }
        )

    async def _offset(self, digest: str, size: int) -> int:
        """How much of the upload is here; ``size`` only once it is complete and checked.
        A partial that holds every byte but was not sealed (a crash between the last
        write and the check) is checked now: sealed, or removed and started over."""
        if self.spool.path(digest) is not None:
            return size
        offset = self.spool.offset(digest)
        if offset < size:
            return offset
        try:
            async with self.spool.writer(digest, size) as writer:
                if writer.done:
                    await writer.complete()
                    return size
                return writer.offset
        except TransferCorrupt:
            return 0

    def _refusal(self, request: web.Request, size: int, digest: str) -> LienthongError | None:
        """What the headers alone say is wrong with an upload: nothing of its body is read."""
        raw = request.headers.get("Upload-Offset", "")
        if not raw.isdigit() or len(raw) > 19:
            return RequestInvalid("send Upload-Offset: the offset the body starts at")
        claimed, length = int(raw), request.content_length
        if claimed + (length or 0) > size:
            return TransferBeyondSize(
                f"{length} bytes from offset {claimed} would pass the declared size of {size}"
            )
        held = self._held(digest, size)
        if claimed != held:
            return TransferOffsetMismatch(
                f"this node holds {held} bytes of {digest}, not {claimed}"
            )
        return None

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue``: refuse from the headers, before the body is sent."""
        if request.headers.get("Expect", "").lower() != "100-continue":
            raise web.HTTPExpectationFailed(text="only Expect: 100-continue is understood")
        try:
            _, digest, size = self._target(request)
            refusal = self._refusal(request, size, digest)
        except LienthongError as fault:
            return self._refused(fault)
        if refusal is not None:
            return self._refused(refusal, self._held(digest, size))
        await _continue(request)
        return None

    def _refused(self, fault: LienthongError, held: int | None = None) -> web.Response:
        """A refusal, on a connection then closed: nobody lingers reading an unwanted body.
        A 409 tells the offset to resume from."""
        headers = {"Upload-Offset": str(held)} if held is not None else {}
        response = _answer(fault, **headers)
        response.force_close()
        return response

    async def upload(self, request: web.Request) -> web.StreamResponse:
        try:
            child, digest, size = self._target(request)
        except LienthongError as fault:
            return self._refused(fault)
        refusal = self._refusal(request, size, digest)
        if isinstance(refusal, TransferOffsetMismatch):
            return self._refused(refusal, self._held(digest, size))
        if refusal is not None:
            return self._refused(refusal)
        if self.spool.path(digest) is not None:
            return _uploaded(size, digest, complete=True)
        bound = log.bind(child=child, sha256=digest, size=size)
        try:
            claimed = int(request.headers["Upload-Offset"])
            return await self._receive(request, digest, size, claimed, bound)
        except TransferBeyondSize as fault:  # a chunked body that ran past its size
            self.spool.discard(digest)
            bound.warning("transfer.receive_refused", code=fault.code, reason=fault.message)
            return self._refused(fault)
        except TransferOffsetMismatch as fault:
            return self._refused(fault, self._held(digest, size))
        except TransferCorrupt as fault:
            bound.warning("transfer.receive_corrupt", reason=fault.message)
            return _answer(fault)
        except (TransferStalled, TransferInterrupted) as fault:
            bound.info("transfer.receive_broken", code=fault.code, reason=fault.message)
            return self._refused(fault)

    async def _receive(
        self, request: web.Request, digest: str, size: int, claimed: int, bound: Any
    ) -> web.StreamResponse:
        async with self.spool.writer(digest, size) as writer:
            if writer.offset != claimed:  # another upload moved the partial meanwhile
                raise TransferOffsetMismatch(
                    f"this node holds {writer.offset} bytes of {digest}, not {claimed}"
                )
            await self._copy(request, writer)
            if not writer.done:
                return _uploaded(writer.offset, digest, complete=False)
            await writer.complete()
        bound.info("transfer.received", offset=claimed)
        return _uploaded(size, digest, complete=True)

    async def _copy(self, request: web.Request, writer: SpoolWriter) -> None:
        while True:
            try:
                async with asyncio.timeout(self.stall_s):
                    chunk = await request.content.read(self.spool.chunk)
            except TimeoutError as exc:
                raise TransferStalled(
                    f"no byte of the upload for {self.stall_s:g} s at offset {writer.offset}"
                ) from exc
            except (ConnectionError, web.HTTPException, OSError) as exc:
                raise TransferInterrupted(
                    f"the upload broke at offset {writer.offset}: {exc}"
                ) from exc
            if not chunk:
                return
            await writer.write(chunk)


def _uploaded(offset: int, digest: str, *, complete: bool) -> web.Response:
    """201 once the blob is complete and checked; 204 with the offset reached otherwise."""
    headers = {"Upload-Offset": str(offset)}
    if complete:
        headers["ETag"] = f'"{digest}"'
    return web.Response(status=201 if complete else 204, headers=headers)


def _range_start(header: str | None, size: int) -> int:
    """Where a ``Range: bytes=N-`` starts (0 without one). A range this face does not
    serve (several, a suffix, one that ends before the blob does, a malformed one) is
    ignored, as HTTP allows: the whole blob comes, with 200."""
    found = _RANGE.fullmatch(header.strip()) if header else None
    if found is None or (found[2] is not None and int(found[2]) < size - 1):
        return 0
    start = int(found[1])
    if start >= size:
        raise TransferOffsetMismatch(f"the range starts at {start}; the blob has {size} bytes")
    return start


async def _continue(request: web.Request) -> None:
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the body of the answer has not started
