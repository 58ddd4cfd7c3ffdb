"""Files that survive a power cut once written: the data fsynced before the rename that
publishes it, and the folder fsynced after, so that the new name is durable too.

``Disk`` is where a store's bytes meet the file system (the blob and spool files it
writes, the SQLite connection it writes through): the one seam at which a test makes the
disk full (adapters/faults.py). In production it is the plain file system."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, BinaryIO


class Disk:
    """The plain file system."""

    def write(self, handle: BinaryIO, data: bytes) -> None:
        handle.write(data)

    def connect(self, database: Path, **options: Any) -> sqlite3.Connection:
        """A SQLite connection that writes (readers open their own, read-only)."""
        db: sqlite3.Connection = sqlite3.connect(database, **options)
        return db


PLAIN = Disk()

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException) -> bool:
    """Whether a write failed for want of space: ENOSPC or EDQUOT at a file, SQLite's
    SQLITE_FULL ("database or disk is full")."""
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in _FULL


def fsync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_atomically(path: Path, data: bytes, disk: Disk = PLAIN) -> None:
    """Readers see the old file or the whole new one. The temporary name (hidden, one per
    process and thread) lets two writers of the same path work at once. A write that fails
    half way (a full disk) leaves neither the file nor its temporary behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            disk.write(handle, data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    fsync_folder(path.parent)
