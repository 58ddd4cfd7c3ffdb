"""Files that survive a power cut once written: the data fsynced before the rename that
publishes it, and the folder fsynced after, so that the new name is durable too."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def fsync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one. The temporary name (hidden, one per
    process and thread) lets two writers of the same path work at once."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    fsync_folder(path.parent)
