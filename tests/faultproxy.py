"""A TCP proxy on the loopback that injects network faults, switched at run time.

Test support, in the manner of aio-pika's own tests that cut real connections: a node's
link is pointed at the proxy instead of at RabbitMQ, and the test decides what the
network between them does:

- ``passthrough()``: bytes flow both ways;
- ``delay(ms)``: every chunk, both ways, is held ``ms`` milliseconds (latency, not a
  throughput cap: chunks keep their order and do not add up their delays);
- ``blackhole()``: sockets stay open but bytes are silently dropped both ways, and so is
  a close: to each side, the other is a dead peer it has not been told about;
- ``half_open(direction)``: the same in one direction only (``UP``, client to server, or
  ``DOWN``, server to client);
- ``cut()``: every current connection is closed and new ones are refused.

A connection that lost bytes to a blackhole or a half-open link stays that way after
the proxy is restored: its stream has a hole that cannot be mended, as when a NAT
mapping expired or the peer restarted. Only new connections pass again, so recovering
is the business of whoever notices the dead connection (a heartbeat, a deadline).

Listens on 127.0.0.1 only, on a port the system picks.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from dataclasses import dataclass, field
from typing import Self

CHUNK = 64 * 1024
HELD_CHUNKS = 64  # per direction while delayed: the reader waits when this many are held


class Direction(enum.Enum):
    UP = "up"  # client to server
    DOWN = "down"  # server to client


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    dead: set[Direction] = field(default_factory=set)  # bytes this way are dropped, for good
    pumps: int = 2  # directions still read

    def abort(self) -> None:
        for writer in (self.client, self.server):
            writer.transport.abort()


class FaultProxy:
    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5672) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._delay_s = 0.0
        self._dropping: set[Direction] = set()  # new connections are dead this way too
        self._refusing = False
        self.accepted = 0  # connections taken so far (set up or refused)
        self.refused = 0  # connections refused while cut
        self.hung_up = 0  # connections their client closed, even where the close was lost

    # --- life ---------------------------------------------------------------------------

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, amqp_url: str) -> str:
        """``amqp_url`` with its host and port replaced by the proxy's."""
        scheme, _, rest = amqp_url.partition("://")
        credentials, at, host_path = rest.rpartition("@")
        _, slash, path = host_path.partition("/")
        return f"{scheme}://{credentials}{at}127.0.0.1:{self.port}{slash}{path}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # --- faults -------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    def passthrough(self) -> None:
        """Pass bytes again, to new connections and to those no bytes were lost on."""
        self._delay_s = 0.0
        self._dropping = set()
        self._refusing = False

    restore = passthrough

    def delay(self, ms: float) -> None:
        self._delay_s = ms / 1000

    def blackhole(self) -> None:
        self.half_open(Direction.UP, Direction.DOWN)

    def half_open(self, *directions: Direction) -> None:
        self._dropping = set(directions)
        for connection in self._connections:
            connection.dead.update(directions)

    def cut(self) -> None:
        self._refusing = True
        for connection in list(self._connections):
            self._drop(connection)

    # --- the pumps ----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            self.accepted += 1
            self.refused += 1
            return
        dead = set(self._dropping)  # as the network was when the connection came
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            self.accepted += 1
            return
        connection = _Connection(writer, up_writer, dead=dead)
        self.accepted += 1
        if self._refusing:  # cut while this one was connecting upstream
            connection.abort()
            return
        self._connections.add(connection)
        for source, sink, direction in (
            (reader, up_writer, Direction.UP),
            (up_reader, writer, Direction.DOWN),
        ):
            task = asyncio.create_task(self._pump(connection, source, sink, direction))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        connection: _Connection,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        direction: Direction,
    ) -> None:
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(HELD_CHUNKS)
        writer = asyncio.create_task(self._deliver(held, sink))
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    chunk = await source.read(CHUNK)
                except OSError:
                    chunk = b""
                if not chunk and direction is Direction.UP and connection in self._connections:
                    self.hung_up += 1
                if direction in connection.dead:
                    if not chunk:  # a dead peer does not say goodbye: the other way stays open
                        connection.pumps -= 1
                        if connection.pumps == 0:
                            self._drop(connection)
                        return
                    continue
                if not chunk:
                    break
                await held.put((loop.time() + self._delay_s, chunk))
            await held.join()  # what was read before the close still arrives
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        self._drop(connection)  # a close passes on: both sides are closed

    async def _deliver(
        self, held: asyncio.Queue[tuple[float, bytes]], sink: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, chunk = await held.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            try:
                sink.write(chunk)
                await sink.drain()
            except OSError:
                pass  # the other side is gone; the reader on it will close the connection
            held.task_done()

    def _drop(self, connection: _Connection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            connection.abort()
