"""A folder of large packages on disk, each named by its SHA-256, written while hashed.

    <folder>/<sha256>        a complete blob: its bytes hash to its name, and its size was
                             the size declared (it is renamed into place only then)
    <folder>/<sha256>.part   one still coming in, written from its start and never past it

A transfer that breaks leaves its ``.part`` file, and the next one resumes at its length
(``offset``). The hash state of a resumed partial is rebuilt by reading the part once:
Python's hashlib cannot export or import the state of a SHA-256, so a sidecar could only
hold it by carrying a SHA-256 of our own, and a sidecar can disagree with the part after a
crash, where the part on disk is the truth. One sequential read, on resume only, is cheap
beside the transfer it saves.

Nothing holds a package in memory: bytes move in chunks (256 KiB by default, 64 KiB to
1 MiB), and file work runs in a thread, off the event loop. A partial is not fsynced
while it grows; a crash may leave its tail unwritten, which the digest check at the end
finds (the partial is then removed and fetched again). A complete blob is fsynced before
it is renamed into place and its folder after, so a name that exists is durable.

Only one writer owns a partial at a time: a new writer (the same upload resumed on a new
connection while the old one still hangs) takes it over, and the old one's next write is
refused. The core of this module is the bytes; who may read or write them is the HTTP
face's business (adapters/transfer_http.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Self

from adapters.durable import PLAIN, Disk, disk_full, fsync_folder
from exchange.errors import StoreFull, TransferBeyondSize, TransferCorrupt, TransferOffsetMismatch

CHUNK = 256 * 1024
MIN_CHUNK, MAX_CHUNK = 64 * 1024, 1024 * 1024
_DIGEST = re.compile(r"[0-9a-f]{64}")


def is_digest(value: str) -> bool:
    """A lowercase hex SHA-256: the only names a spool has."""
    return _DIGEST.fullmatch(value) is not None


def _check(digest: str) -> str:
    if not is_digest(digest):
        raise ValueError(f"not a lowercase hex SHA-256: {digest[:80]!r}")
    return digest


@dataclass(eq=False)
class _Slot:
    """What the writers of one digest share: the lock each write takes, and its owner."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    owner: SpoolWriter | None = None
    users: int = 0


class Spool:
    def __init__(self, folder: Path, *, chunk: int = CHUNK, disk: Disk = PLAIN) -> None:
        if not MIN_CHUNK <= chunk <= MAX_CHUNK:
            raise ValueError(f"a spool chunk is {MIN_CHUNK} to {MAX_CHUNK} bytes, not {chunk}")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.chunk, self.disk = folder, chunk, disk
        self._slots: dict[str, _Slot] = {}

    def path(self, digest: str) -> Path | None:
        """The complete blob, or None."""
        path = self.folder / _check(digest)
        return path if path.is_file() else None

    def part(self, digest: str) -> Path:
        return self.folder / f"{_check(digest)}.part"

    def offset(self, digest: str) -> int:
        """How many bytes of a partial are on disk (0 when none)."""
        try:
            return self.part(digest).stat().st_size
        except FileNotFoundError:
            return 0

    def discard(self, digest: str) -> None:
        """Remove the partial and the complete blob, if any; a reader of the blob stops at
        its next chunk."""
        for path in (self.part(digest), self.folder / digest):
            path.unlink(missing_ok=True)

    def writer(self, digest: str, size: int) -> SpoolWriter:
        """``async with spool.writer(digest, size) as w``: appends at ``w.offset``, the end
        of the partial (0 for a new one); leaving without ``complete`` keeps the partial."""
        if size < 0:
            raise ValueError(f"a size is not negative: {size}")
        return SpoolWriter(self, _check(digest), size)

    def _slot(self, digest: str) -> _Slot:
        slot = self._slots.setdefault(digest, _Slot())
        slot.users += 1
        return slot

    def _release(self, digest: str, slot: _Slot) -> None:
        slot.users -= 1
        if slot.users == 0:
            self._slots.pop(digest, None)


class SpoolWriter:
    """One writer of one partial. ``offset`` counts the bytes accepted so far; ``write``
    refuses a chunk that would pass the size (``transfer.beyond_size``) and, once the last
    byte is in, ``complete`` checks the digest: the blob is renamed into place, or the
    partial removed (``transfer.corrupt``)."""

    def __init__(self, spool: Spool, digest: str, size: int) -> None:
        self.spool, self.digest, self.size = spool, digest, size
        self.offset = 0
        self._hash = hashlib.sha256()
        self._pending = bytearray()  # up to one chunk not yet handed to the file
        self._file: BinaryIO | None = None
        self._slot: _Slot | None = None

    @property
    def done(self) -> bool:
        return self.offset == self.size

    async def __aenter__(self) -> Self:
        slot = self._slot = self.spool._slot(self.digest)
        try:
            async with slot.lock:
                slot.owner = self  # a writer still open on this partial is superseded
                self._file, self.offset = self._open()
                if self.offset:  # rebuild the hash state: one read of the partial
                    await asyncio.to_thread(self._rehash, self.offset)
        except BaseException:  # cancelled too: nothing stays open
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        """Keeps the partial: what was accepted is written. Safe to cancel: the file is
        closed and the slot released whatever happens."""
        slot, self._slot = self._slot, None
        if slot is None:
            return
        try:
            if self._pending and slot.owner is self and self._file is not None:
                async with slot.lock:
                    if slot.owner is self:
                        await asyncio.to_thread(self._flush, bytes(self._pending))
        finally:
            self._pending.clear()
            if slot.owner is self:
                slot.owner = None
            if self._file is not None:
                self._file.close()  # waits for a write still running in a thread
                self._file = None
            self.spool._release(self.digest, slot)

    def _open(self) -> tuple[BinaryIO, int]:
        """The partial, open for appending, and its length."""
        part = self.spool.part(self.digest)
        handle = part.open("ab")
        held = handle.tell()
        if held > self.size:  # not this upload's bytes: start over
            handle.truncate(0)
            held = 0
        return handle, held

    def _rehash(self, length: int) -> None:
        with self.spool.part(self.digest).open("rb") as source:
            while length > 0 and (block := source.read(min(self.spool.chunk, length))):
                self._hash.update(block)
                length -= len(block)

    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.offset + len(chunk) > self.size:
            raise TransferBeyondSize(
                f"{self.offset + len(chunk)} bytes of {self.digest} would pass its size "
                f"of {self.size}"
            )
        self._own()
        self._pending += chunk
        self.offset += len(chunk)
        if len(self._pending) >= self.spool.chunk:
            await self._hand_over()

    async def _hand_over(self) -> None:
        data = bytes(self._pending)
        self._pending.clear()
        slot = self._slot
        assert slot is not None
        async with slot.lock:
            self._own()
            await asyncio.to_thread(self._flush, data)

    def _own(self) -> None:
        if self._slot is None or self._slot.owner is not self or self._file is None:
            raise TransferOffsetMismatch(
                f"another upload of {self.digest} took its partial over; this one ends"
            )

    def _flush(self, data: bytes) -> None:
        """Appends ``data``; on a full disk, the partial is cut back to what was accepted
        before (a resumed transfer starts at its length: it must hold only whole chunks)."""
        assert self._file is not None
        start = self._file.tell()
        try:
            self.spool.disk.write(self._file, data)
            self._file.flush()
        except OSError as exc:
            if not disk_full(exc):
                raise
            with contextlib.suppress(OSError):
                self._file.truncate(start)
            raise StoreFull(f"the spool folder: the disk is full ({exc})") from exc
        self._hash.update(data)

    async def complete(self) -> Path:
        """The complete blob, once every byte is in and they hash to the digest; otherwise
        the partial is removed and ``transfer.corrupt`` says why."""
        if not self.done:
            raise TransferOffsetMismatch(
                f"the partial of {self.digest} holds {self.offset} of {self.size} bytes"
            )
        if self._pending:
            await self._hand_over()
        slot = self._slot
        assert slot is not None
        async with slot.lock:
            self._own()
            return await asyncio.to_thread(self._seal)

    def _seal(self) -> Path:
        assert self._file is not None
        handle, self._file = self._file, None
        part, final = self.spool.part(self.digest), self.spool.folder / self.digest
        try:
            handle.flush()
            on_disk = part.stat().st_size
            found = self._hash.hexdigest()
            if on_disk != self.size or found != self.digest:
                part.unlink(missing_ok=True)
                raise TransferCorrupt(
                    f"the {on_disk} bytes received hash to {found}, not to {self.digest} "
                    f"({self.size} bytes) as described; the partial was removed"
                    if found != self.digest
                    else f"the partial of {self.digest} holds {on_disk} bytes on disk, not "
                    f"{self.size}; it was removed"
                )
            os.fsync(handle.fileno())
        finally:
            handle.close()
        part.replace(final)
        fsync_folder(self.spool.folder)
        return final


async def read_chunks(path: Path, start: int = 0, chunk: int = CHUNK) -> AsyncIterator[bytes]:
    """The bytes of a file from ``start``, one chunk at a time, read off the event loop.

    Each chunk opens the file, reads at its offset and closes it, in a thread: nothing is
    held between chunks, so a reader given up half way (a cancelled request, a generator
    never finished) leaks no file. A blob discarded meanwhile ends the reading with
    FileNotFoundError."""
    offset = start
    while block := await asyncio.to_thread(_read_at, path, offset, chunk):
        offset += len(block)
        yield block


def _read_at(path: Path, offset: int, size: int) -> bytes:
    handle = os.open(path, os.O_RDONLY)
    try:
        return os.pread(handle, size, offset)
    finally:
        os.close(handle)
