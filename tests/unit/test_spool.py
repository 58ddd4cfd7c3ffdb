"""The spool: blobs named by their SHA-256, written in chunks while hashed, resumed from
their partial, renamed into place only when size and digest match."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest

from adapters.spool import CHUNK, Spool, read_chunks
from exchange.errors import TransferBeyondSize, TransferCorrupt, TransferOffsetMismatch

DATA = os.urandom(3 * CHUNK + 12345)
DIGEST = hashlib.sha256(DATA).hexdigest()


def pieces(data: bytes, size: int = 70_000) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def test_a_blob_written_in_chunks_is_renamed_into_place_once_it_checks(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    async with spool.writer(DIGEST, len(DATA)) as writer:
        assert writer.offset == 0
        for piece in pieces(DATA):
            await writer.write(piece)
        assert spool.path(DIGEST) is None  # not before complete
        path = await writer.complete()
    assert path == spool.path(DIGEST) == tmp_path / DIGEST
    assert path.read_bytes() == DATA
    assert not spool.part(DIGEST).exists()
    assert spool.offset(DIGEST) == 0


async def test_a_broken_write_resumes_at_the_partial_with_its_hash_rebuilt(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    half = len(DATA) // 2 + 7
    async with spool.writer(DIGEST, len(DATA)) as writer:
        await writer.write(DATA[:half])  # leaves without complete: the partial stays
    assert spool.offset(DIGEST) == half
    assert spool.path(DIGEST) is None
    again = Spool(tmp_path)  # as after a restart
    async with again.writer(DIGEST, len(DATA)) as writer:
        assert writer.offset == half
        for piece in pieces(DATA[half:]):
            await writer.write(piece)
        path = await writer.complete()
    assert path.read_bytes() == DATA


async def test_bytes_that_do_not_hash_to_the_digest_are_removed_with_the_reason(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    bad = bytearray(DATA)
    bad[len(bad) // 3] ^= 0x01
    async with spool.writer(DIGEST, len(DATA)) as writer:
        await writer.write(bytes(bad))
        with pytest.raises(TransferCorrupt, match=f"not to {DIGEST}.*the partial was removed"):
            await writer.complete()
    assert spool.path(DIGEST) is None
    assert spool.offset(DIGEST) == 0
    assert list(tmp_path.iterdir()) == []


async def test_a_write_past_the_size_is_refused_and_complete_waits_for_every_byte(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    async with spool.writer(DIGEST, len(DATA)) as writer:
        await writer.write(DATA[:100])
        with pytest.raises(TransferOffsetMismatch, match="holds 100 of"):
            await writer.complete()
        with pytest.raises(TransferBeyondSize, match="would pass its size"):
            await writer.write(DATA[100:] + b"x")
        assert writer.offset == 100
    assert spool.offset(DIGEST) == 100


async def test_a_partial_longer_than_the_size_is_started_over(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.part(DIGEST).write_bytes(b"x" * (len(DATA) + 1))
    async with spool.writer(DIGEST, len(DATA)) as writer:
        assert writer.offset == 0
        await writer.write(DATA)
        assert (await writer.complete()).read_bytes() == DATA


async def test_a_new_writer_takes_the_partial_over_from_one_left_hanging(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    async with spool.writer(DIGEST, len(DATA)) as stale:
        await stale.write(DATA[:CHUNK])  # handed to the file: one whole chunk
        async with spool.writer(DIGEST, len(DATA)) as fresh:
            assert fresh.offset == CHUNK
            with pytest.raises(TransferOffsetMismatch, match="took its partial over"):
                await stale.write(DATA[CHUNK : 2 * CHUNK])
            await fresh.write(DATA[CHUNK:])
            assert (await fresh.complete()).read_bytes() == DATA
    assert spool._slots == {}


async def test_discard_removes_partial_and_blob(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    async with spool.writer(DIGEST, len(DATA)) as writer:
        await writer.write(DATA)
        await writer.complete()
    spool.part(DIGEST).write_bytes(b"left over")
    spool.discard(DIGEST)
    assert (spool.path(DIGEST), spool.offset(DIGEST)) == (None, 0)


async def test_a_blob_is_read_back_in_chunks_from_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(DATA)
    chunks = [c async for c in read_chunks(path, 1000, 64 * 1024)]
    assert b"".join(chunks) == DATA[1000:]
    assert max(len(c) for c in chunks) == 64 * 1024


async def test_memory_does_not_grow_with_the_size(tmp_path: Path) -> None:
    size, piece = 64 * 1024 * 1024, os.urandom(64 * 1024)
    digest = hashlib.sha256()
    for _ in range(size // len(piece)):
        digest.update(piece)
    spool = Spool(tmp_path)
    tracemalloc.start()
    try:
        async with spool.writer(digest.hexdigest(), size) as writer:
            for _ in range(size // len(piece) // 2):
                await writer.write(piece)
        async with spool.writer(digest.hexdigest(), size) as writer:  # resumed: rehashed
            for _ in range(size // len(piece) // 2):
                await writer.write(piece)
            await writer.complete()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, peak


def test_names_and_chunks_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        Spool(tmp_path).path("../etc/passwd")
    with pytest.raises(ValueError, match="65536 to 1048576"):
        Spool(tmp_path, chunk=1024)
