"""A request body's deadline: a slow but steady sender gets through, one that dribbles
does not, however long it has been going (adapters/spooling.py BodyClock)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters import spooling
from adapters.spooling import read_or_spool
from exchange.errors import RequestTimeout
from exchange.large import Spooled

INLINE = 1024


async def _serve(folder: Path, timeout_s: float) -> TestServer:
    async def take(request: web.Request) -> web.Response:
        try:
            data = await read_or_spool(
                request, inline=INLINE, cap=1 << 30, folder=folder, timeout_s=timeout_s
            )
        except RequestTimeout as exc:
            return web.Response(status=408, text=exc.message)
        size = data.size if isinstance(data, Spooled) else len(data)
        return web.Response(text=str(size))

    app = web.Application()
    app.router.add_post("/", take)
    server = TestServer(app, port=0)
    await server.start_server()
    return server


async def _send(port: int, parts: list[bytes], pause_s: float) -> bytes:
    """A chunked POST whose chunks come ``pause_s`` apart; what the server answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    try:
        for part in parts:
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(pause_s)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    except ConnectionError:
        pass  # answered and closed before the body was done
    answer = await reader.read()
    writer.close()
    return answer


async def test_a_body_that_dribbles_past_the_inline_cap_is_cut_off(
    tmp_path: Path, monkeypatch: object
) -> None:
    server = await _serve(tmp_path, timeout_s=1.0)
    try:
        # past the inline cap at once, then a byte every 0.4 s: each read is quick, the
        # average is not; per-read deadlines alone would wait for ever
        parts = [b"x" * (INLINE + 10)] + [b"y"] * 8
        answer = await _send(server.port or 0, parts, pause_s=0.4)
    finally:
        await server.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"the body stalled" in answer
    assert not list(tmp_path.iterdir()), "the spooled part is removed"


async def test_a_slow_but_steady_body_gets_through(tmp_path: Path, monkeypatch: object) -> None:
    monkeypatch.setattr(spooling, "FLOOR_BYTES_PER_S", 2048)  # type: ignore[attr-defined]
    server = await _serve(tmp_path, timeout_s=0.5)
    try:
        # 6 KiB at about 5 KiB/s: longer than timeout_s, above the floor rate
        answer = await _send(server.port or 0, [b"z" * 512] * 12, pause_s=0.1)
    finally:
        await server.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.endswith(b"6144")
