"""A Python client of the REST API v1 for agency systems (docs/http-api.md): async, with
a thin synchronous wrapper for code that is not.

    async with ApiClient("https://node.example", token) as api:
        answer = await api.send(package_bytes)
        for item in await api.mailbox("000.00.00.H53", wait=20):
            data = await api.fetch("000.00.00.H53", item["message_id"])
            await api.ack("000.00.00.H53", item["message_id"])

Refusals raise ``ApiError`` with the node's stable code, its message and, for an invalid
package, the problems (line, element path, message).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (bytes so far, bytes in all)
CHUNK = 256 * 1024


@dataclass(frozen=True)
class ApiError(Exception):
    status: int
    code: str
    detail: str
    problems: tuple[dict[str, Any], ...] = ()

    def __str__(self) -> str:
        return f"[{self.code}] {self.detail} (HTTP {self.status})"


class ApiClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, *, want: str = "json", **kwargs: Any) -> Any:
        assert self._session is not None, "use the client as an async context manager"
        async with self._session.request(method, f"{self.base_url}{path}", **kwargs) as reply:
            if reply.status >= 400:
                raise await _error(reply)
            if want == "bytes":
                return await reply.read()
            return await reply.json()

    async def send(
        self, data: bytes, *, as_organ: str | None = None, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Submit a signed package: the node's answer (accepted, or duplicate: the same
        package again, with the original message id)."""
        headers = {"Content-Type": "application/xml"}
        if as_organ:
            headers["Lienthong-As"] = as_organ
        body: Any = _streamed(data, progress) if progress else data
        if progress:
            headers["Content-Length"] = str(len(data))
        answer: dict[str, Any] = await self._call(
            "POST", "/v1/packages", data=body, headers=headers
        )
        return answer

    async def validate(self, data: bytes) -> dict[str, Any]:
        """What intake would establish of the package, storing nothing (dry run)."""
        result: dict[str, Any] = await self._call(
            "POST", "/v1/validate", data=data, headers={"Content-Type": "application/xml"}
        )
        return result

    async def mailbox(
        self,
        organ: str,
        *,
        pending: bool = True,
        limit: int = 100,
        offset: int = 0,
        wait: float = 0.0,
    ) -> list[dict[str, Any]]:
        params = {
            "state": "pending" if pending else "all",
            "limit": str(limit),
            "offset": str(offset),
            "wait": str(wait),
        }
        page = await self._call("GET", f"/v1/agencies/{organ}/mailbox", params=params)
        items: list[dict[str, Any]] = page["items"]
        return items

    async def fetch(self, organ: str, message_id: str) -> bytes:
        """The package, the exact bytes delivered."""
        data: bytes = await self._call(
            "GET", f"/v1/agencies/{organ}/packages/{message_id}", want="bytes"
        )
        return data

    async def ack(self, organ: str, message_id: str) -> None:
        await self._call("POST", f"/v1/agencies/{organ}/packages/{message_id}/ack")

    async def status(self, organ: str, ident: str) -> dict[str, Any]:
        """Where a document the agency sent stands, recipient by recipient, with its
        signed receipts (base64)."""
        view: dict[str, Any] = await self._call("GET", f"/v1/agencies/{organ}/sent/{ident}")
        return view

    async def receipts(self, organ: str, ident: str) -> list[bytes]:
        view = await self.status(organ, ident)
        return [base64.b64decode(r["document"]) for r in view.get("receipts", [])]

    async def directory(self) -> list[dict[str, str]]:
        agencies: list[dict[str, str]] = (await self._call("GET", "/v1/directory"))["agencies"]
        return agencies


async def _error(reply: aiohttp.ClientResponse) -> ApiError:
    try:
        body = await reply.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(
        reply.status,
        str(body.get("code", f"http.{reply.status}")),
        str(body.get("detail", reply.reason or "")),
        tuple(body.get("problems", ())),
    )


async def _streamed(data: bytes, progress: Progress) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        chunk = data[start : start + CHUNK]
        yield chunk
        progress(start + len(chunk), len(data))


class SyncClient:
    """The same calls, for code without an event loop: each runs to its end."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 60.0) -> None:
        self._args = (base_url, token, timeout_s)

    def _run(self, call: Callable[[ApiClient], Coroutine[Any, Any, T]]) -> T:
        async def go() -> T:
            base_url, token, timeout_s = self._args
            async with ApiClient(base_url, token, timeout_s=timeout_s) as api:
                return await call(api)

        return asyncio.run(go())

    def send(self, data: bytes, *, as_organ: str | None = None) -> dict[str, Any]:
        return self._run(lambda api: api.send(data, as_organ=as_organ))

    def validate(self, data: bytes) -> dict[str, Any]:
        return self._run(lambda api: api.validate(data))

    def mailbox(self, organ: str, **options: Any) -> list[dict[str, Any]]:
        return self._run(lambda api: api.mailbox(organ, **options))

    def fetch(self, organ: str, message_id: str) -> bytes:
        return self._run(lambda api: api.fetch(organ, message_id))

    def ack(self, organ: str, message_id: str) -> None:
        self._run(lambda api: api.ack(organ, message_id))

    def status(self, organ: str, ident: str) -> dict[str, Any]:
        return self._run(lambda api: api.status(organ, ident))
