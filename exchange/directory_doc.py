"""The published directory: one signed, versioned document (DESIGN §5, docs/wire.md).

The root node's operator signs the directory's content with the root's node key (the
same record signing as the transport envelope); the root sends it down every link, and
each node that takes it sends it on to its own children. A node keeps the last good
version: it refuses a document that is unsigned, signed by any node but the directory's
signer, or broken, and one that is not newer than what it has.

Wire form: canonical JSON (keys sorted, no insignificant whitespace) of
``{"kind": "lienthong-directory", "v": 1, "version": N, "issued_at": ..., "content": {...},
"sig": {...}}``, where ``content`` is the directory itself (as in directory.toml).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exchange.directory import Directory, directory_from_mapping
from exchange.envelope import NodeKey, PeerKey, canonical, verify_record
from exchange.errors import (
    ConfigurationError,
    DirectoryRefused,
    DirectoryStale,
    EnvelopeInvalid,
)

KIND = "lienthong-directory"
FORMAT = 1


@dataclass(frozen=True)
class SignedDirectory:
    directory: Directory
    version: int
    signer: str
    issued_at: str
    wire: bytes  # exactly as signed: what is kept and sent on

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.wire).hexdigest()


def sign_directory(
    content: Mapping[str, Any], key: NodeKey, *, when: datetime | None = None
) -> bytes:
    """Sign a directory (as read from directory.toml); a broken one is refused first."""
    directory_from_mapping(content, source="the directory to sign")
    issued = (when or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    try:
        record = {
            "kind": KIND,
            "v": FORMAT,
            "version": content["version"],
            "issued_at": issued,
            "content": json.loads(json.dumps(dict(content))),
        }
    except TypeError as exc:  # a TOML date or time has no JSON form
        raise ConfigurationError(f"the directory to sign holds a value JSON cannot: {exc}") from exc
    return canonical(key.sign(record))


def open_directory(wire: bytes, keys: Mapping[str, PeerKey], signer: str) -> SignedDirectory:
    """The directory in ``wire``, if ``signer``'s key signed it and it holds a directory."""
    try:
        record = json.loads(wire)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DirectoryRefused(f"the directory document is not JSON: {exc}") from exc
    if not isinstance(record, dict) or record.get("kind") != KIND:
        raise DirectoryRefused("the document is not a lienthong directory")
    if record.get("v") != FORMAT:
        raise DirectoryRefused(f"directory format {record.get('v')!r} is not understood")
    try:
        node = verify_record(record, keys, "the directory")
    except EnvelopeInvalid as exc:
        raise DirectoryRefused(exc.message) from exc
    if node != signer:
        raise DirectoryRefused(
            f"the directory is signed by node {node}, but only {signer} signs directories"
        )
    content = record.get("content")
    if not isinstance(content, dict) or content.get("version") != record.get("version"):
        raise DirectoryRefused("the signed version and the directory's own version differ")
    try:
        directory = directory_from_mapping(content, source=f"directory v{record['version']}")
    except ConfigurationError as exc:
        raise DirectoryRefused(exc.message) from exc
    return SignedDirectory(directory, int(record["version"]), node, str(record["issued_at"]), wire)


def newer(kept: SignedDirectory | None, offered: SignedDirectory) -> bool:
    """Whether ``offered`` replaces ``kept``; False when it is the same document again.
    Raises DirectoryStale for an older version, or the same version with other content."""
    if kept is None or offered.version > kept.version:
        return True
    if offered.version == kept.version and offered.sha256 == kept.sha256:
        return False
    raise DirectoryStale(
        f"directory v{offered.version} (issued {offered.issued_at}) is not newer than "
        f"v{kept.version} (issued {kept.issued_at}), which this node keeps"
    )
