"""Attachment decoding (reference/edxml.md §2.4): base64, then a one-entry ZIP or raw.

The official library wraps every attachment in a one-entry ZIP, whatever the manifest's
content type says. We unpack such a ZIP to describe the file inside (name, size,
SHA-256), or to hand that file to a reader (``unpack``); anything else is taken as it is.
To describe, the bytes are streamed through the digest, so memory does not grow with the
attachment; either way a ZIP bomb is stopped by the bytes actually inflated, not by the
sizes the archive claims.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from exchange.errors import AttachmentBomb, AttachmentInvalid

ZIP_MAGIC = b"PK\x03\x04"
_WHITESPACE = b" \t\r\n\x0b\x0c"
_CHUNK = 1024 * 1024
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ZIP_HEAD = 30 + 0xFFFF  # a local file header and the longest name it can carry


@dataclass(frozen=True)
class AttachmentLimits:
    max_inflated_bytes: int = 256 * 1024 * 1024
    """The most one attachment may inflate to."""
    max_ratio: int = 200
    """The most an entry may inflate relative to its compressed size, past 1 MiB."""


@dataclass(frozen=True)
class Decoded:
    size: int
    sha256: str
    packing: str  # "zip" or "raw"
    inner_name: str | None


def decode_base64(encoded: str | bytes, label: str) -> bytes:
    raw = encoded.encode("ascii", "replace") if isinstance(encoded, str) else encoded
    try:
        # Line breaks are allowed (MIME-style base64); anything else outside the alphabet is not.
        return base64.b64decode(raw.translate(None, _WHITESPACE), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AttachmentInvalid(
            f"attachment {label}: ContentTransferEncoded is not base64"
        ) from exc


def _describe_raw(data: bytes) -> Decoded:
    return Decoded(len(data), hashlib.sha256(data).hexdigest(), "raw", None)


def _inflate(
    archive: zipfile.ZipFile,
    entry: zipfile.ZipInfo,
    label: str,
    limits: AttachmentLimits,
    sink: Callable[[bytes], object] | None,
) -> Decoded:
    if entry.flag_bits & 0x1:
        raise AttachmentInvalid(f"attachment {label}: the ZIP entry is encrypted")
    if entry.file_size > limits.max_inflated_bytes:
        raise AttachmentBomb(
            f"attachment {label}: the ZIP entry claims {entry.file_size} bytes; "
            f"the limit is {limits.max_inflated_bytes}"
        )
    ceiling = min(
        limits.max_inflated_bytes,
        max(1024 * 1024, max(entry.compress_size, 1) * limits.max_ratio),
    )
    if entry.file_size > ceiling:  # says so itself: refused without inflating a byte
        raise AttachmentBomb(
            f"attachment {label}: the ZIP entry claims {entry.file_size} bytes from "
            f"{entry.compress_size} compressed bytes, past {ceiling}; refused as a ZIP bomb"
        )
    digest = hashlib.sha256()
    total = 0
    with archive.open(entry) as stream:
        while chunk := stream.read(_CHUNK):
            total += len(chunk)
            if total > ceiling:
                raise AttachmentBomb(
                    f"attachment {label}: the ZIP entry inflates past {ceiling} bytes "
                    f"from {entry.compress_size} compressed bytes; refused as a ZIP bomb"
                )
            digest.update(chunk)
            if sink is not None:
                sink(chunk)
    return Decoded(total, digest.hexdigest(), "zip", entry.filename)


def _require_one_plain_entry(
    data: bytes, archive: zipfile.ZipFile, entry: zipfile.ZipInfo, label: str
) -> None:
    """The one entry must start the archive and the central directory must follow it.

    A ZIP can hide a second local entry that the central directory does not list:
    readers that use the directory (as we do) and readers that stream local headers (as
    Java's ZipInputStream does) would then see different files. Such a wrapper is refused.
    """
    names_length = int.from_bytes(data[26:28], "little")
    extra_length = int.from_bytes(data[28:30], "little")
    local_name = data[30 : 30 + names_length]
    encoding = "utf-8" if entry.flag_bits & 0x800 else "cp437"
    end = 30 + names_length + extra_length + entry.compress_size
    ends = {end, end + 12, end + 16, end + 20, end + 24} if entry.flag_bits & 0x08 else {end}
    start_dir: int = archive.start_dir
    if (
        entry.header_offset != 0
        or local_name != entry.filename.encode(encoding, "replace")
        or start_dir not in ends
    ):
        raise AttachmentInvalid(
            f"attachment {label}: the ZIP wrapper's local and central records disagree "
            "(hidden or extra entries); refused"
        )


def _describe_raw_file(file: BinaryIO, sink: Callable[[bytes], object] | None) -> Decoded:
    file.seek(0)
    digest = hashlib.sha256()
    total = 0
    while chunk := file.read(_CHUNK):
        total += len(chunk)
        digest.update(chunk)
        if sink is not None:
            sink(chunk)
    return Decoded(total, digest.hexdigest(), "raw", None)


def _read(
    data: bytes, label: str, limits: AttachmentLimits, sink: Callable[[bytes], object] | None
) -> Decoded:
    if not data.startswith(ZIP_MAGIC):
        if sink is not None:
            sink(data)
        return _describe_raw(data)
    return _read_file(io.BytesIO(data), label, limits, sink)


def _read_file(
    file: BinaryIO, label: str, limits: AttachmentLimits, sink: Callable[[bytes], object] | None
) -> Decoded:
    file.seek(0)
    head = file.read(_ZIP_HEAD)
    if not head.startswith(ZIP_MAGIC):
        return _describe_raw_file(file, sink)
    try:
        with zipfile.ZipFile(file) as archive:
            files = [e for e in archive.infolist() if not e.is_dir()]
            if len(files) != 1:
                # a real ZIP file sent as such, not a wrapper
                return _describe_raw_file(file, sink)
            _require_one_plain_entry(head, archive, files[0], label)
            return _inflate(archive, files[0], label, limits, sink)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise AttachmentInvalid(f"attachment {label}: the ZIP wrapper is damaged ({exc})") from exc
    except (OSError, ValueError, RuntimeError) as exc:  # zlib errors surface as these
        raise AttachmentInvalid(f"attachment {label}: the ZIP wrapper is damaged ({exc})") from exc


def describe(data: bytes, label: str, limits: AttachmentLimits | None = None) -> Decoded:
    """Size and digest of an attachment's decoded bytes, unpacking a one-entry ZIP."""
    return _read(data, label, limits or AttachmentLimits(), None)


def describe_file(file: BinaryIO, label: str, limits: AttachmentLimits | None = None) -> Decoded:
    """``describe`` for decoded bytes kept in a (temporary) file rather than in memory."""
    return _read_file(file, label, limits or AttachmentLimits(), None)


def unpack(
    data: bytes, label: str, limits: AttachmentLimits | None = None
) -> tuple[Decoded, bytes]:
    """The file an attachment carries (its decoded bytes, out of a one-entry ZIP wrapper),
    with its description. Refused for the same reasons and within the same limits as
    ``describe``; the file is held in memory, so call it for files that are read whole."""
    parts: list[bytes] = []
    decoded = _read(data, label, limits or AttachmentLimits(), parts.append)
    return decoded, b"".join(parts)


def pack_zip(name: str, content: bytes) -> bytes:
    """Wrap content the way the official library does: a one-entry deflated ZIP."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


class Base64Decoder:
    """Decodes base64 text as it arrives, to the verdict ``decode_base64`` gives for the
    whole: line breaks and blanks allowed, anything else outside the alphabet refused,
    padding only at the very end. The decoded bytes go to ``sink`` in pieces; the last
    few characters are held back until ``close`` (they may carry the padding).
    ``valid`` says whether everything so far was base64; after ``close``, whether it all was.
    """

    _HOLD = 8

    def __init__(self, sink: Callable[[bytes], object] | None = None) -> None:
        self._sink = sink
        self._pending = b""
        self.valid = True
        self.content = False
        """Whether any character other than a blank was seen."""

    def feed(self, text: str) -> None:
        if not self.valid:
            return
        raw = text.encode("ascii", "replace").translate(None, _WHITESPACE)
        if not raw:
            return
        self.content = True
        pending = self._pending + raw if self._pending else raw
        cut = (len(pending) - self._HOLD) // 4 * 4
        if cut <= 0:
            self._pending = pending
            return
        head, self._pending = pending[:cut], pending[cut:]
        if head.translate(None, _ALPHABET):
            self.valid = False
            return
        if self._sink is not None:
            self._sink(binascii.a2b_base64(head))

    def close(self) -> bool:
        if self.valid:
            try:
                tail = base64.b64decode(self._pending, validate=True)
            except (binascii.Error, ValueError):
                self.valid = False
            else:
                if self._sink is not None and tail:
                    self._sink(tail)
        self._pending = b""
        return self.valid
