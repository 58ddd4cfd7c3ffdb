"""Large-package transfers between a child and its parent (docs/large-packages.md,
"Transfers"): real aiohttp servers on the loopback, the fault proxy (tests/faultproxy.py)
between the child and the parent's HTTP face, real files in real spools.

What a node would see: the bytes arrive identical, or not at all; a break resumes where
the other side is; a transfer that cannot complete says why, naming its peer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from adapters.spool import Spool
from adapters.transfer_client import TransferProgress, pull, push
from adapters.transfer_http import add_transfer_routes, link_authoriser
from exchange.config import Credential
from exchange.config_http import HttpClient, HttpLink, HttpOperator, HttpSettings
from exchange.errors import TransferCorrupt, TransferFailed
from tests.faultproxy import FaultProxy

MiB = 1024 * 1024
CHILD, OTHER = "commune-21-31-h53", "commune-22-31-h53"
TOKENS = {
    CHILD: "t-link-commune-21",
    OTHER: "t-link-commune-22",
    "agency": "t-qlvb",
    "ops": "t-ops",
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


SETTINGS = HttpSettings(
    "127.0.0.1",
    0,
    clients={"agency": HttpClient("agency", Credential(), token_sha256=sha(TOKENS["agency"]))},
    operators={"ops": HttpOperator("ops", sha(TOKENS["ops"]))},
    links={child: HttpLink(child, sha(TOKENS[child])) for child in (CHILD, OTHER)},
)


@dataclass(frozen=True)
class Seen:
    """One request as the parent saw it."""

    method: str
    path: str
    range: str | None
    upload_offset: str | None


@dataclass
class Parent:
    spool: Spool
    direct: str  # its HTTP face
    proxy: FaultProxy
    seen: list[Seen] = field(default_factory=list)
    allowed: dict[str, set[str]] = field(default_factory=dict)

    @property
    def url(self) -> str:  # through the fault proxy
        return f"http://127.0.0.1:{self.proxy.port}"

    def requests(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method]


@pytest.fixture
async def parent(tmp_path: Path) -> AsyncIterator[Parent]:
    spool = Spool(tmp_path / "parent")
    found = Parent(spool, "", FaultProxy())

    @web.middleware
    async def remember(request: web.Request, handler):  # type: ignore[no-untyped-def]
        found.seen.append(
            Seen(
                request.method,
                request.path,
                request.headers.get("Range"),
                request.headers.get("Upload-Offset"),
            )
        )
        return await handler(request)

    app = web.Application(middlewares=[remember])
    add_transfer_routes(
        app,
        spool,
        authorise=link_authoriser(SETTINGS),
        allowed=lambda child, digest: digest in found.allowed.get(child, set()),
        max_size=256 * MiB,
        stall_s=2.0,
    )
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    found.direct = f"http://127.0.0.1:{port}"
    found.proxy = FaultProxy("127.0.0.1", port)
    async with found.proxy:
        yield found
    await runner.cleanup()


def blob_file(path: Path, size: int, seed: int = 1) -> tuple[Path, str]:
    """A file of ``size`` pseudo-random bytes, written and hashed a MiB at a time."""
    digest = hashlib.sha256()
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    with path.open("wb") as handle:
        for n in range(0, size, MiB):
            piece = bytes([n // MiB % 251]) + block[1 : min(MiB, size - n)]
            handle.write(piece)
            digest.update(piece)
    return path, digest.hexdigest()


async def held_by_parent(parent: Parent, size: int, child: str = CHILD) -> str:
    """A blob of ``size`` bytes complete in the parent's spool, for ``child``."""
    path, digest = blob_file(parent.spool.folder / "source", size)
    path.replace(parent.spool.folder / digest)
    parent.allowed.setdefault(child, set()).add(digest)
    return digest


def same_file(a: Path, b: Path) -> bool:
    with a.open("rb") as left, b.open("rb") as right:
        while True:
            x, y = left.read(MiB), right.read(MiB)
            if x != y:
                return False
            if not x:
                return True


def range_start(seen: Seen) -> int:
    assert seen.range is not None, seen
    assert seen.range.startswith("bytes="), seen
    return int(seen.range.removeprefix("bytes=").rstrip("-"))


class Watch:
    """A transfer's progress, with a fault to inject once, at an offset or a break."""

    def __init__(self) -> None:
        self.events: list[TransferProgress] = []
        self.at: int | None = None
        self.then: list[object] = []
        self.on_break: list[object] = []

    def __call__(self, progress: TransferProgress) -> None:
        self.events.append(progress)
        if progress.event == "bytes" and self.at is not None and progress.offset >= self.at:
            self.at = None
            for act in self.then:
                act()  # type: ignore[operator]
        if progress.event == "broken":
            for act in self.on_break:
                act()  # type: ignore[operator]
            self.on_break = []

    def breaks(self) -> list[str]:
        return [e.reason for e in self.events if e.event == "broken"]


# --- the bytes arrive identical ---------------------------------------------------------


async def test_a_32_mib_blob_is_pulled_and_pushed_byte_identical(
    parent: Parent, tmp_path: Path
) -> None:
    size = 32 * MiB
    digest = await held_by_parent(parent, size)
    child, watch = Spool(tmp_path / "child"), Watch()
    got = await pull(
        parent.url, TOKENS[CHILD], digest, size, child, stall_s=5, deadline_s=30, observe=watch
    )
    assert got == child.folder / digest
    assert same_file(got, parent.spool.folder / digest)
    assert [s.range for s in parent.requests("GET")] == [None], watch.breaks()

    up, up_digest = blob_file(tmp_path / "up.edxml", size, seed=2)
    await push(parent.url, TOKENS[CHILD], up, up_digest, size, stall_s=5, deadline_s=30)
    kept = parent.spool.path(up_digest)
    assert kept is not None
    assert same_file(kept, up)
    assert [s.upload_offset for s in parent.requests("PATCH")] == ["0"]
    # pushed again: the parent holds it already, and says so without a body
    await push(parent.url, TOKENS[CHILD], up, up_digest, size, stall_s=5, deadline_s=30)
    assert len(parent.requests("PATCH")) == 1


async def test_memory_does_not_grow_with_the_size(parent: Parent, tmp_path: Path) -> None:
    """Both ends in this process: tracemalloc's peak covers the server and the client."""
    size = 64 * MiB
    digest = await held_by_parent(parent, size)
    up, up_digest = blob_file(tmp_path / "up.edxml", size, seed=3)
    child = Spool(tmp_path / "child")
    tracemalloc.start()
    try:
        await pull(parent.direct, TOKENS[CHILD], digest, size, child, stall_s=5, deadline_s=60)
        _, pulled_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        await push(parent.direct, TOKENS[CHILD], up, up_digest, size, stall_s=5, deadline_s=60)
        _, pushed_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parent.spool.path(up_digest) is not None
    assert child.path(digest) is not None
    assert pulled_peak < 4 * MiB, pulled_peak
    assert pushed_peak < 4 * MiB, pushed_peak


# --- breaks are resumed where the other side is -----------------------------------------


async def test_a_pull_cut_in_the_middle_resumes_from_its_offset(
    parent: Parent, tmp_path: Path
) -> None:
    size = 32 * MiB
    digest = await held_by_parent(parent, size)
    watch = Watch()
    watch.at, watch.then = 8 * MiB, [parent.proxy.cut, parent.proxy.passthrough]
    child = Spool(tmp_path / "child")
    got = await pull(
        parent.url, TOKENS[CHILD], digest, size, child,
        stall_s=5, deadline_s=30, backoff_s=0.05, observe=watch,
    )  # fmt: skip
    assert same_file(got, parent.spool.folder / digest)
    gets = parent.requests("GET")
    assert [g.range is None for g in gets] == [True, False], watch.breaks()
    assert range_start(gets[1]) >= 8 * MiB  # not from 0 again
    moved = watch.events[-1].moved
    assert moved < size + 2 * MiB  # what was in flight at the cut, at most, came twice


async def test_a_push_cut_in_the_middle_resumes_from_the_parents_offset(
    parent: Parent, tmp_path: Path
) -> None:
    size = 32 * MiB
    up, digest = blob_file(tmp_path / "up.edxml", size, seed=4)
    watch = Watch()
    watch.at, watch.then = 8 * MiB, [parent.proxy.cut, parent.proxy.passthrough]
    await push(
        parent.url, TOKENS[CHILD], up, digest, size,
        stall_s=5, deadline_s=30, backoff_s=0.05, observe=watch,
    )  # fmt: skip
    kept = parent.spool.path(digest)
    assert kept is not None
    assert same_file(kept, up)
    offsets = [int(s.upload_offset or -1) for s in parent.requests("PATCH")]
    assert offsets[0] == 0
    assert len(offsets) >= 2
    assert all(o > 4 * MiB for o in offsets[1:])  # resumed, never from 0 again
    assert watch.breaks()


async def test_a_stalled_pull_is_noticed_and_resumed_on_a_new_connection(
    parent: Parent, tmp_path: Path
) -> None:
    size = 32 * MiB
    digest = await held_by_parent(parent, size)
    watch = Watch()
    watch.at, watch.then = 8 * MiB, [parent.proxy.blackhole]
    watch.on_break = [parent.proxy.passthrough]
    child = Spool(tmp_path / "child")
    accepted = parent.proxy.accepted
    got = await pull(
        parent.url, TOKENS[CHILD], digest, size, child,
        stall_s=0.5, deadline_s=30, backoff_s=0.05, observe=watch,
    )  # fmt: skip
    assert same_file(got, parent.spool.folder / digest)
    assert watch.breaks()[0].startswith("transfer.stalled: no byte moved for 0.5 s")
    assert parent.proxy.accepted == accepted + 2  # the dead connection, then a new one
    assert range_start(parent.requests("GET")[-1]) >= 8 * MiB


async def test_a_stalled_push_is_noticed_and_resumed_on_a_new_connection(
    parent: Parent, tmp_path: Path
) -> None:
    size = 32 * MiB
    up, digest = blob_file(tmp_path / "up.edxml", size, seed=5)
    watch = Watch()
    watch.at, watch.then = 8 * MiB, [parent.proxy.blackhole]
    watch.on_break = [parent.proxy.passthrough]
    await push(
        parent.url, TOKENS[CHILD], up, digest, size,
        stall_s=0.5, deadline_s=30, backoff_s=0.05, observe=watch,
    )  # fmt: skip
    kept = parent.spool.path(digest)
    assert kept is not None
    assert same_file(kept, up)
    assert watch.breaks()[0].startswith("transfer.stalled")
    assert int(parent.requests("PATCH")[-1].upload_offset or 0) > 0


# --- nothing corrupt is delivered -------------------------------------------------------


def flip(path: Path, at: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(at)
        byte = handle.read(1)
        handle.seek(at)
        handle.write(bytes([byte[0] ^ 0x40]))


async def test_a_blob_changed_after_its_descriptor_is_never_delivered(
    parent: Parent, tmp_path: Path
) -> None:
    size = 4 * MiB
    digest = await held_by_parent(parent, size)
    flip(parent.spool.folder / digest, 3 * MiB + 17)
    child = Spool(tmp_path / "child")
    with pytest.raises(TransferCorrupt) as refused:
        await pull(parent.url, TOKENS[CHILD], digest, size, child, stall_s=5, deadline_s=30)
    assert refused.value.code == "transfer.corrupt"
    assert f"127.0.0.1:{parent.proxy.port}" in refused.value.message
    assert "not to " + digest in refused.value.message
    assert child.path(digest) is None
    assert child.offset(digest) == 0
    assert list(child.folder.iterdir()) == []  # the partial removed
    assert [s.range for s in parent.requests("GET")] == [None, None]  # once more, from zero


async def test_a_byte_flipped_once_on_the_way_costs_one_transfer_from_zero(
    parent: Parent, tmp_path: Path
) -> None:
    size = 4 * MiB
    digest = await held_by_parent(parent, size)
    blob = parent.spool.folder / digest
    flip(blob, 1000)
    watch = Watch()
    watch.on_break = [lambda: flip(blob, 1000)]  # mended before the second read
    child = Spool(tmp_path / "child")
    got = await pull(
        parent.url, TOKENS[CHILD], digest, size, child, stall_s=5, deadline_s=30, observe=watch
    )
    assert same_file(got, blob)
    assert watch.breaks()[0].startswith("transfer.corrupt")


async def test_a_push_of_other_bytes_than_described_is_refused_and_nothing_kept(
    parent: Parent, tmp_path: Path
) -> None:
    size = 2 * MiB
    up, digest = blob_file(tmp_path / "up.edxml", size, seed=6)
    flip(up, 5)
    with pytest.raises(TransferCorrupt, match=r"corrupt twice.*the peer found the bytes corrupt"):
        await push(parent.url, TOKENS[CHILD], up, digest, size, stall_s=5, deadline_s=30)
    assert parent.spool.path(digest) is None
    assert parent.spool.offset(digest) == 0
    assert [s.upload_offset for s in parent.requests("PATCH")] == ["0", "0"]


# --- refusals: from the headers, before the body -----------------------------------------


async def raw_patch(url: str, head: str, body: bytes) -> tuple[bytes, bytes]:
    """Send the head of a request and the first bytes of its body, no more: the head and
    the body of the answer that comes back meanwhile."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        async with asyncio.timeout(5):
            answer_head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in answer_head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            return answer_head, await reader.readexactly(length)
    finally:
        writer.close()


async def test_an_upload_past_its_declared_size_is_refused_before_its_body(
    parent: Parent,
) -> None:
    digest, size = "ab" * 32, 10 * MiB
    head = (
        f"PATCH /v1/links/uploads/{digest}?size={size} HTTP/1.1\r\nHost: parent\r\n"
        f"Authorization: Bearer {TOKENS[CHILD]}\r\nUpload-Offset: 0\r\n"
        f"Content-Length: {size + 1}\r\n\r\n"
    )
    answer, problem = await raw_patch(parent.direct, head, b"x" * 1024)  # of 10 MiB + 1
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"\r\nConnection: close\r\n" in answer  # what follows is not taken
    assert json.loads(problem)["code"] == "transfer.beyond_size"
    assert parent.spool.offset(digest) == 0

    # with Expect: 100-continue, the body is never sent
    sent = []

    async def body() -> AsyncIterator[bytes]:
        sent.append(1)
        yield b"x" * 1024

    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            f"{parent.direct}/v1/links/uploads/{digest}?size={size}",
            data=body(),
            expect100=True,
            headers={
                "Authorization": f"Bearer {TOKENS[CHILD]}",
                "Upload-Offset": "0",
                "Content-Length": str(size + 1),
            },
        ) as reply,
    ):
        assert reply.status == 413
        assert (await reply.json())["code"] == "transfer.beyond_size"
    assert sent == []


async def test_a_chunked_upload_that_runs_past_its_size_is_refused_and_dropped(
    parent: Parent,
) -> None:
    data = os.urandom(300 * 1024)
    digest, size = hashlib.sha256(data).hexdigest(), len(data)

    async def body() -> AsyncIterator[bytes]:
        yield data
        yield b"one byte too many"

    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            f"{parent.direct}/v1/links/uploads/{digest}?size={size}",
            data=body(),
            headers={"Authorization": f"Bearer {TOKENS[CHILD]}", "Upload-Offset": "0"},
        ) as reply,
    ):
        assert reply.status == 413
    assert parent.spool.offset(digest) == 0
    assert parent.spool.path(digest) is None


async def test_an_upload_at_the_wrong_offset_is_told_where_to_resume(parent: Parent) -> None:
    data = os.urandom(300 * 1024)
    digest, size = hashlib.sha256(data).hexdigest(), len(data)
    url = f"{parent.direct}/v1/links/uploads/{digest}?size={size}"
    auth = {"Authorization": f"Bearer {TOKENS[CHILD]}"}
    async with aiohttp.ClientSession(headers=auth) as session:
        async with session.head(url) as reply:
            assert (reply.status, reply.headers["Upload-Offset"]) == (200, "0")
        async with session.patch(url, data=data[:1000], headers={"Upload-Offset": "0"}) as reply:
            assert (reply.status, reply.headers["Upload-Offset"]) == (204, "1000")
        async with session.patch(url, data=data[2000:], headers={"Upload-Offset": "2000"}) as r:
            assert (r.status, r.headers["Upload-Offset"]) == (409, "1000")
            assert (await r.json())["code"] == "transfer.offset_mismatch"
        async with session.patch(url, data=data[1000:], headers={"Upload-Offset": "1000"}) as r:
            assert (r.status, r.headers["Upload-Offset"]) == (201, str(size))
        async with session.head(url) as reply:
            assert reply.headers["Upload-Offset"] == str(size)
    assert parent.spool.path(digest) is not None


# --- who may pull what ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [
        (OTHER, 404, "transfer.not_found"),  # a child the blob is not for
        ("agency", 403, "auth.wrong_kind"),
        ("ops", 403, "auth.wrong_kind"),
        ("nobody", 401, "auth.unauthenticated"),
        ("wrong", 401, "auth.unauthenticated"),
    ],
)
async def test_only_the_child_a_blob_is_for_may_pull_it(
    parent: Parent, who: str, status: int, code: str
) -> None:
    digest = await held_by_parent(parent, 1 * MiB)
    headers = {}
    if who in TOKENS:
        headers["Authorization"] = f"Bearer {TOKENS[who]}"
    elif who == "wrong":
        headers["Authorization"] = "Bearer not-a-token"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{parent.direct}/v1/links/blobs/{digest}", headers=headers) as reply,
    ):
        assert reply.status == status
        assert reply.content_type == "application/problem+json"
        assert (await reply.json())["code"] == code
        assert reply.content_length is not None
        assert reply.content_length < 1000


async def test_an_unknown_blob_answers_as_a_forbidden_one_and_the_client_gives_up_at_once(
    parent: Parent, tmp_path: Path
) -> None:
    digest = await held_by_parent(parent, 1 * MiB, child=OTHER)
    child = Spool(tmp_path / "child")
    for wanted in (digest, "cd" * 32):
        with pytest.raises(TransferFailed, match=r"HTTP 404 transfer\.not_found"):
            await pull(parent.url, TOKENS[CHILD], wanted, MiB, child, stall_s=5, deadline_s=30)
    assert len(parent.requests("GET")) == 2  # no retry of a definite no


async def test_a_range_is_served_from_its_start_with_its_digest(parent: Parent) -> None:
    digest = await held_by_parent(parent, 1 * MiB)
    auth = {"Authorization": f"Bearer {TOKENS[CHILD]}"}
    url = f"{parent.direct}/v1/links/blobs/{digest}"
    whole = (parent.spool.folder / digest).read_bytes()
    async with aiohttp.ClientSession(headers=auth) as session:
        async with session.get(url, headers={"Range": "bytes=1000-"}) as reply:
            assert reply.status == 206
            assert reply.headers["Content-Range"] == f"bytes 1000-{MiB - 1}/{MiB}"
            assert reply.headers["ETag"] == f'"{digest}"'
            assert reply.headers["Digest"] == f"sha-256={digest}"
            assert await reply.read() == whole[1000:]
        async with session.get(url, headers={"Range": f"bytes={MiB}-"}) as reply:
            assert reply.status == 416
            assert reply.headers["Content-Range"] == f"bytes */{MiB}"


# --- giving up ---------------------------------------------------------------------------


async def test_a_transfer_that_cannot_complete_fails_naming_its_peer_and_the_bytes_moved(
    parent: Parent, tmp_path: Path
) -> None:
    size = 32 * MiB
    digest = await held_by_parent(parent, size)
    watch = Watch()
    watch.at, watch.then = 8 * MiB, [parent.proxy.cut]  # and never back
    child = Spool(tmp_path / "child")
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(TransferFailed) as failed:
        await pull(
            parent.url, TOKENS[CHILD], digest, size, child,
            stall_s=0.5, deadline_s=1.5, backoff_s=0.1, observe=watch,
        )  # fmt: skip
    assert 1.5 <= loop.time() - began < 3
    reason = failed.value.message
    held = child.offset(digest)
    assert held >= 8 * MiB  # kept for a later transfer to resume
    assert f"with http://127.0.0.1:{parent.proxy.port}: gave up after 1.5 s" in reason
    assert f"{held} of {size} bytes are across" in reason
    assert "last: transfer.interrupted" in reason
    assert failed.value.code == "transfer.failed"


async def test_plain_http_is_refused_beyond_the_loopback(tmp_path: Path) -> None:
    with pytest.raises(TransferFailed, match="refusing to send a link token in clear"):
        await pull(
            "http://parent.example:8480", "t", "ab" * 32, 1, Spool(tmp_path),
            stall_s=1, deadline_s=1,
        )  # fmt: skip
