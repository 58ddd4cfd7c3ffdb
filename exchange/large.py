"""Large packages (docs/large-packages.md, DESIGN §7): above the inline cap, a package's
bytes never ride RabbitMQ. Its link message carries only the signed envelope (which names
the bytes' SHA-256 and size), on the ``large`` lane, marked as a claim; the bytes move
between the two nodes over HTTP, in a transfer the child opens: it pushes to its parent
before it publishes the claim, and pulls from its parent when a claim comes down.

The node sees the transfers through ``BlobMover`` (adapters/transfer_node.py over HTTP; a
memory fake for unit tests, held to the same contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

INLINE_MAX_BYTES = 8 * 1024 * 1024  # the default inline cap: above it, a claim check
MAX_PACKAGE_BYTES = 1024 * 1024 * 1024  # the default cap of a package, large or not
LARGE_LANE = "large"
CLAIM_HEADER = "lienthong-claim"  # on a link message: the bytes come over HTTP, not here


@dataclass(frozen=True)
class Spooled:
    """A package's bytes, spooled to a file in the store's spool folder while hashed."""

    path: Path
    digest: str  # SHA-256, hex
    size: int


class BlobMover(Protocol):
    async def push(self, parent: str, path: Path, digest: str, size: int) -> None:
        """Send the bytes at ``path`` to the parent node, which keeps them once they hash
        to ``digest``; resumes after breaks; raises TransientFault while it may succeed
        later, a SenderFault-free PermanentFault when it cannot."""

    async def pull(self, parent: str, digest: str, size: int) -> Path:
        """Fetch the bytes of ``digest`` from the parent node into this node's spool, and
        return the file once they hash to ``digest`` (never a corrupted one)."""

    async def offer(self, child: str, path: Path, digest: str, size: int) -> None:
        """Let the child pull the bytes at ``path`` (this node's own copy) by ``digest``."""

    def received(self, child: str, digest: str, size: int) -> Path | None:
        """The file a child pushed here for ``digest``, complete and checked; None when
        no such push completed."""


def is_large(size: int, inline_max: int) -> bool:
    return size > inline_max
