"""The fault-injecting proxy the link tests use, against a local echo server: what each
fault does to the bytes and to the connections, as each end sees it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.faultproxy import Direction, FaultProxy

QUIET_S = 0.3  # long enough for loopback bytes to cross many times over (see the controls)


@dataclass
class Echo:
    """Echoes what it gets and remembers it."""

    received: bytearray = field(default_factory=bytearray)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                self.received += chunk
                writer.write(chunk)
                await writer.drain()
        writer.close()

    def hang_up(self) -> None:
        for writer in self.writers:
            writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    found = Echo()
    found.server = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    async with found.server:
        yield found
        found.hang_up()


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Proxied(FaultProxy):
    """The proxy, and client connections to it that the test's end closes."""

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port)
        self.clients: list[asyncio.StreamWriter] = []

    async def dial(self) -> Connection:
        """A client connection, once the proxy has taken it (set it up or refused it)."""
        accepted = self.accepted
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.clients.append(writer)
        async with asyncio.timeout(5):
            while self.accepted == accepted:  # noqa: ASYNC110 - the proxy's accept callback
                await asyncio.sleep(0.01)
        return reader, writer


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[Proxied]:
    assert echo.server is not None
    async with Proxied(echo.server.sockets[0].getsockname()[1]) as started:
        yield started
    for writer in started.clients:
        writer.close()


async def round_trip(connection: Connection, data: bytes) -> bytes:
    reader, writer = connection
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(5):
        return await reader.readexactly(len(data))


async def silent(reader: asyncio.StreamReader) -> bool:
    """True when nothing, not even a close, arrives for QUIET_S."""
    try:
        async with asyncio.timeout(QUIET_S):
            await reader.read(1)
    except TimeoutError:
        return True
    return False


async def test_bytes_pass_whole_and_in_order(proxy: Proxied) -> None:
    data = bytes(range(256)) * 1024  # 256 KiB: several chunks each way
    assert await round_trip(await proxy.dial(), data) == data


async def test_a_delay_holds_every_chunk_each_way_without_reordering(proxy: Proxied) -> None:
    connection = await proxy.dial()
    assert await round_trip(connection, b"warm") == b"warm"
    proxy.delay(100)
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = connection
    for i in range(20):
        writer.write(b"%02d" % i)
        await writer.drain()
    async with asyncio.timeout(5):
        got = await reader.readexactly(40)
    took = loop.time() - started
    assert got == b"".join(b"%02d" % i for i in range(20))
    assert took >= 0.2, "100 ms up and 100 ms back"
    assert took < 1.0, "chunks are held side by side, not one after another"
    proxy.passthrough()
    started = loop.time()
    assert await round_trip(connection, b"fast") == b"fast"
    assert loop.time() - started < 0.1


async def test_a_blackhole_drops_bytes_and_closes_both_ways_and_keeps_sockets_open(
    proxy: Proxied, echo: Echo
) -> None:
    connection = await proxy.dial()
    assert await round_trip(connection, b"before") == b"before"  # the control
    proxy.blackhole()
    reader, writer = connection
    writer.write(b"lost")
    await writer.drain()
    assert await silent(reader)
    assert bytes(echo.received) == b"before"
    echo.hang_up()  # the server goes away: the client is not told
    assert await silent(reader)
    assert proxy.connections == 1


async def test_a_blackhole_keeps_a_clients_close_from_the_server(
    proxy: Proxied, echo: Echo
) -> None:
    _, writer = await proxy.dial()
    proxy.blackhole()
    writer.close()
    async with asyncio.timeout(5):
        while not proxy.hung_up:  # noqa: ASYNC110 - the proxy sees the close
            await asyncio.sleep(0.01)
    await asyncio.sleep(QUIET_S)  # a window for a close to arrive: none must
    (server_side,) = echo.writers
    assert not server_side.is_closing()


async def test_a_blackholed_connection_stays_dead_after_restore_and_new_ones_pass(
    proxy: Proxied,
) -> None:
    old = await proxy.dial()
    proxy.blackhole()
    during = await proxy.dial()
    proxy.restore()
    old[1].write(b"again")
    during[1].write(b"again")
    assert await silent(old[0])
    assert await silent(during[0])
    assert await round_trip(await proxy.dial(), b"new") == b"new"


async def test_half_open_upwards_the_server_hears_nothing(proxy: Proxied, echo: Echo) -> None:
    connection = await proxy.dial()
    assert await round_trip(connection, b"a") == b"a"
    proxy.half_open(Direction.UP)
    connection[1].write(b"b")
    assert await silent(connection[0])
    assert bytes(echo.received) == b"a"


async def test_half_open_downwards_the_server_hears_but_the_client_does_not(
    proxy: Proxied, echo: Echo
) -> None:
    connection = await proxy.dial()
    assert await round_trip(connection, b"a") == b"a"
    proxy.half_open(Direction.DOWN)
    connection[1].write(b"b")
    assert await silent(connection[0])
    assert bytes(echo.received) == b"ab"


async def test_a_cut_closes_connections_and_refuses_new_ones_until_restored(
    proxy: Proxied,
) -> None:
    reader, _ = connection = await proxy.dial()
    assert await round_trip(connection, b"up") == b"up"
    proxy.cut()
    async with asyncio.timeout(5):
        assert await closed(reader)
    refused, _ = await proxy.dial()
    async with asyncio.timeout(5):
        assert await closed(refused)
    assert (proxy.connections, proxy.refused) == (0, 1)
    proxy.restore()
    assert await round_trip(await proxy.dial(), b"back") == b"back"


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read(1) == b""
    except ConnectionResetError:
        return True
