"""The values that cross boundaries: frozen, built only from a verified document."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exchange.pades import PdfSignature


class Kind(enum.StrEnum):
    EDOC = "edoc"
    STATUS = "status"


class Level(enum.StrEnum):
    """How a package's origin was established at entry (DESIGN §2)."""

    STRICT = "strict"  # valid under our policy and bound to the sender
    LEGACY = "legacy"  # valid, but only under a relaxed algorithm policy (SHA-1)
    UNSIGNED = "unsigned"  # accepted unsigned from a source allowed to send unsigned
    QUARANTINED = "quarantined"  # held for an operator
    UNVERIFIED = "unverified"  # read by ``inspect`` without judging trust; never admitted


class BusinessType(enum.IntEnum):
    NEW = 0
    REVOKE = 1
    UPDATE = 2
    REPLACE = 3


class Priority(enum.IntEnum):
    NORMAL = 0  # thường
    URGENT = 1  # khẩn
    VERY_URGENT = 2  # thượng khẩn
    FLASH = 3  # hỏa tốc
    FLASH_SCHEDULED = 4  # hỏa tốc hẹn giờ


STATUS_CODES: dict[str, str] = {
    "01": "arrived",
    "02": "refused",
    "03": "accepted",
    "04": "assigned",
    "05": "processing",
    "06": "done",
    "13": "recall requested",
    "15": "recall or update agreed",
    "16": "recall or update refused",
}


@dataclass(frozen=True)
class Organ:
    organ_id: str
    name: str | None = None


@dataclass(frozen=True)
class ReceiverChange:
    organ_id: str
    added: bool  # ReceiverType 1 = added, 0 = removed


@dataclass(frozen=True)
class Replacement:
    document_id: str
    organ_ids: tuple[str, ...]


@dataclass(frozen=True)
class Business:
    type: BusinessType
    reason: str | None = None
    document_id: str | None = None  # the earlier document this operation is about
    metadata_changed: bool = False  # update: DocumentInfo = 1
    receivers_changed: tuple[ReceiverChange, ...] = ()  # update: ReceiverList
    replaces: tuple[Replacement, ...] = ()  # replace: ReplacementInfoList


@dataclass(frozen=True)
class StatusInfo:
    code: str
    response_for_document_id: str
    response_for_organ_id: str | None
    response_for_code: str | None
    description: str | None
    timestamp: datetime | None

    @property
    def meaning(self) -> str:
        return STATUS_CODES.get(self.code, "unknown")


@dataclass(frozen=True)
class Attachment:
    content_id: str  # without the "cid:" prefix
    name: str | None
    content_type: str | None
    description: str | None
    size: int  # decoded (and unzipped) bytes
    sha256: str  # hex, of the decoded (and unzipped) bytes
    packing: str  # "zip" (one-entry ZIP, as the official library sends) or "raw"
    inner_name: str | None = None  # the ZIP entry's name, when packed


@dataclass(frozen=True)
class Signer:
    subject: str
    issuer: str
    serial: int
    fingerprint_sha256: str
    not_before: datetime
    not_after: datetime
    algorithm: str  # the XML-DSig SignatureMethod URI
    digest: str  # the Reference DigestMethod URI
    c14n: str  # the SignedInfo CanonicalizationMethod URI
    bound_by: str  # how the signer was bound to From/OrganId


@dataclass(frozen=True)
class Package:
    """One admitted edXML package. Read only from the verified document."""

    kind: Kind
    digest: str  # SHA-256 hex of the raw bytes, as received
    size: int
    sender: Organ
    level: Level
    document_id: str | None
    recipients: tuple[Organ, ...] = ()
    code_number: str | None = None
    code_notation: str | None = None
    subject: str | None = None
    promulgation_date: date | None = None
    priority: Priority = Priority.NORMAL
    business: Business | None = None
    status: StatusInfo | None = None
    attachments: tuple[Attachment, ...] = ()
    signer: Signer | None = None
    notes: tuple[str, ...] = field(default=())  # plain words on what we could not establish
    # PAdES signatures in attached PDFs, looked at for packages admitted below strict: the
    # signatures that carry the legal weight when the envelope's cannot (docs/bridge.md)
    pdf_signatures: tuple[PdfSignature, ...] = field(default=())

    @property
    def number(self) -> str | None:
        """The number and symbol (số/ký hiệu) as printed, e.g. 7816/VPCP-TTĐT."""
        if self.code_number and self.code_notation:
            return f"{self.code_number}/{self.code_notation}"
        return self.code_number or self.code_notation
