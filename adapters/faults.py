"""Failpoints for tests and chaos runs: off unless the environment turns them on.

``LIENTHONG_FAULTS=<folder>`` (read once, by ``lienthong serve``) names a folder of switch
files; a fault holds while its file exists, and ends when the file is removed, with no
restart. Unset (production), the store gets the plain ``Disk`` and nothing here runs.

``<folder>/enospc``: the store's disk is full. Every write of a blob or spool file raises
``OSError(ENOSPC)`` at the file write, after half of its bytes went to the file (as a real
full disk does); every write through the store's SQLite connection raises
``sqlite3.OperationalError('database or disk is full')`` where SQLite would (at the commit
of a transaction, or at a write outside one). Reads go on working. The PostgreSQL store
keeps its bytes in the database: a full disk there is PostgreSQL's own (SQLSTATE 53100).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from adapters.durable import PLAIN, Disk

FAULTS_ENV = "LIENTHONG_FAULTS"
ENOSPC = "enospc"  # the switch file of a full disk

_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "ALTER", "DROP"})


def disk_from(environ: Mapping[str, str] = os.environ) -> Disk:
    """The disk a store writes to: the plain one, unless ``LIENTHONG_FAULTS`` is set."""
    folder = environ.get(FAULTS_ENV)
    return FullDisk(Path(folder) / ENOSPC) if folder else PLAIN


def disk_full_error() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FullDisk(Disk):
    """A disk that is full while ``switch`` exists."""

    def __init__(self, switch: Path) -> None:
        self.switch = switch

    @property
    def full(self) -> bool:
        return self.switch.exists()

    def write(self, handle: BinaryIO, data: bytes) -> None:
        if self.full:
            handle.write(data[: len(data) // 2])  # what fitted: a file cut short
            handle.flush()
            raise disk_full_error()
        handle.write(data)

    def connect(self, database: Path, **options: Any) -> sqlite3.Connection:
        db = sqlite3.connect(database, factory=_FullConnection, **options)
        assert isinstance(db, _FullConnection)
        db.disk = self
        return db


class _FullConnection(sqlite3.Connection):
    """A connection whose writes fail as SQLite's do on a full disk, while its disk is."""

    disk: FullDisk | None = None

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        self._check(sql)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        self._check(sql)
        return super().executemany(sql, parameters)

    def _check(self, sql: str) -> None:
        if self.disk is None or not self.disk.full:
            return
        word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        # in a transaction the pages are written at its commit; outside one, at once
        if word in ("COMMIT", "END") if self.in_transaction else word in _WRITES:
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = sqlite3.SQLITE_FULL
            error.sqlite_errorname = "SQLITE_FULL"
            raise error
