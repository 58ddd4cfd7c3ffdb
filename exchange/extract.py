"""Reading a Package value out of an edXML tree.

Admission calls this on the tree that signature verification returned, never on the
bytes as received, so that nothing unsigned reaches a decision (signature wrapping).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import TypeVar

from lxml import etree

from exchange import attachments as att
from exchange.edxml import header, kid, kids, message_block, text, walk
from exchange.errors import ContractViolation, Problem
from exchange.model import (
    Attachment,
    Business,
    BusinessType,
    Kind,
    Level,
    Organ,
    Package,
    Priority,
    ReceiverChange,
    Replacement,
    Signer,
    StatusInfo,
)


def _missing(what: str) -> ContractViolation:
    return ContractViolation(
        [Problem(None, "/edXML/edXMLEnvelope/edXMLHeader", f"element {what} is required")]
    )


def _organ(el: etree._Element | None) -> Organ:
    if el is None:
        return Organ("")
    return Organ(
        text(el, "OrganId") or "", text(el, "OrganName") or text(el, "OrganizationInCharge")
    )


def _date(value: str | None) -> date | None:
    for fmt in ("%Y/%m/%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(value or "", fmt).date()
        except ValueError:
            continue
    return None


def _timestamp(value: str | None) -> datetime | None:
    try:
        return datetime.strptime(value or "", "%Y/%m/%d %H:%M:%S")
    except ValueError:
        return None


E = TypeVar("E", bound=enum.IntEnum)


def _member(kind: type[E], value: str | None, default: E) -> E:
    """The enum member a code names; ``default`` for anything else (the contract has
    refused such values already on the admission path; inspection reads them leniently)."""
    if value is None or not (value.isascii() and value.isdigit()):
        return default
    try:
        return kind(int(value))
    except ValueError:
        return default


def business_of(root: etree._Element) -> Business:
    block = walk(root, "edXMLEnvelope", "edXMLHeader", "TraceHeaderList", "Bussiness")
    if block is None:
        return Business(BusinessType.NEW)
    doc_type = _member(BusinessType, text(block, "BussinessDocType"), BusinessType.NEW)
    info = kid(block, "BussinessDocumentInfo")
    changes = tuple(
        ReceiverChange(text(r, "OrganId") or "", text(r, "ReceiverType") == "1")
        for r in kids(kid(info, "ReceiverList"), "Receiver")
    )
    replaces = tuple(
        Replacement(
            text(item, "DocumentId") or "",
            tuple(text(o) or "" for o in kids(kid(item, "OrganIdList"), "OrganId")),
        )
        for item in kids(kid(block, "ReplacementInfoList"), "ReplacementInfo")
    )
    return Business(
        type=doc_type,
        reason=text(block, "BussinessDocReason"),
        document_id=text(block, "DocumentId"),
        metadata_changed=text(info, "DocumentInfo") == "1" if info is not None else False,
        receivers_changed=changes,
        replaces=replaces,
    )


Describe = Callable[[etree._Element | None, str], att.Decoded]
"""Describes an attachment's payload element (the element, its label): for a tree whose
payloads were decoded as they streamed (``stream_admission``)."""


def _describe_text(
    payload: etree._Element | None, label: str, limits: att.AttachmentLimits
) -> att.Decoded:
    encoded = payload.text if payload is not None and payload.text else ""
    return att.describe(att.decode_base64(encoded, label), label, limits)


def attachments_of(
    root: etree._Element, limits: att.AttachmentLimits, describe: Describe | None = None
) -> tuple[Attachment, ...]:
    manifest = walk(root, "edXMLEnvelope", "edXMLBody", "edXMLManifest")
    described: dict[str, etree._Element] = {
        (text(r, "ContentId") or "").removeprefix("cid:"): r for r in kids(manifest, "Reference")
    }
    result: list[Attachment] = []
    holder = kid(root, "AttachmentEncoded")
    for item in kids(holder, "Attachment"):
        cid = (text(item, "ContentId") or "").removeprefix("cid:")
        ref = described.get(cid)
        name = text(ref, "AttachmentName") if ref is not None else None
        label = name or text(item, "AttachmentName") or f"cid:{cid}"
        payload = kid(item, "ContentTransferEncoded")
        decoded = (
            describe(payload, label)
            if describe is not None
            else _describe_text(payload, label, limits)
        )
        result.append(
            Attachment(
                content_id=cid,
                name=name or text(item, "AttachmentName"),
                # the manifest keeps the real type; AttachmentEncoded may say application/zip
                content_type=(text(ref, "ContentType") if ref is not None else None)
                or text(item, "ContentType"),
                description=(text(ref, "Description") if ref is not None else None)
                or text(item, "Description"),
                size=decoded.size,
                sha256=decoded.sha256,
                packing=decoded.packing,
                inner_name=decoded.inner_name,
            )
        )
    return tuple(result)


def attachment_files(
    package: Package, root: etree._Element, limits: att.AttachmentLimits | None = None
) -> Iterator[tuple[str, bytes]]:
    """The files a package's attachments carry: (name, decoded bytes), one at a time.

    ``root`` is the tree ``package`` was read from (for bytes kept after admission:
    ``xmlsafe.parse(data).getroot()``). Only a file whose content ID and SHA-256 are those
    the package records is given, so a tree other than the verified one (a wrapped
    signature, the wrong package) cannot slip in a different file. A file is named by its
    AttachmentName, else the name inside its ZIP wrapper, else ``cid:<content id>``.
    Decoding fails as ``attachments_of`` would (it cannot, on the tree it accepted).
    """
    admitted = {(a.content_id, a.sha256): a for a in package.attachments}
    content_ids = {a.content_id for a in package.attachments}
    limits = limits or att.AttachmentLimits()
    for item in kids(kid(root, "AttachmentEncoded"), "Attachment"):
        cid = (text(item, "ContentId") or "").removeprefix("cid:")
        if cid not in content_ids:
            continue
        payload = kid(item, "ContentTransferEncoded")
        encoded = payload.text if payload is not None and payload.text else ""
        label = f"cid:{cid}"
        decoded, content = att.unpack(att.decode_base64(encoded, label), label, limits)
        attachment = admitted.get((cid, decoded.sha256))
        if attachment is not None:
            yield attachment.name or attachment.inner_name or label, content


def status_of(block: etree._Element) -> StatusInfo:
    rf = kid(block, "ResponseFor")
    return StatusInfo(
        code=text(block, "StatusCode") or "",
        response_for_document_id=text(rf, "DocumentId") or "",
        response_for_organ_id=text(rf, "OrganId"),
        response_for_code=text(rf, "Code"),
        description=text(block, "Description"),
        timestamp=_timestamp(text(block, "Timestamp")),
    )


def build_package(
    root: etree._Element,
    *,
    kind: Kind,
    digest: str,
    size: int,
    level: Level,
    signer: Signer | None,
    notes: tuple[str, ...] = (),
    limits: att.AttachmentLimits | None = None,
    describe: Describe | None = None,
) -> Package:
    head = header(root)
    if kind is Kind.STATUS:
        block = message_block(root)
        if block is None:
            raise _missing("MessageHeader or Status")
        status = status_of(block)
        return Package(
            kind=kind,
            digest=digest,
            size=size,
            sender=_organ(kid(block, "From")),
            level=level,
            document_id=status.response_for_document_id,
            status=status,
            signer=signer,
            notes=notes,
        )
    mh = kid(head, "MessageHeader")
    if mh is None:
        raise _missing("MessageHeader")
    return Package(
        kind=kind,
        digest=digest,
        size=size,
        sender=_organ(kid(mh, "From")),
        level=level,
        document_id=text(mh, "DocumentId"),
        recipients=tuple(_organ(to) for to in kids(mh, "To")),
        code_number=text(kid(mh, "Code"), "CodeNumber"),
        code_notation=text(kid(mh, "Code"), "CodeNotation"),
        subject=text(mh, "Subject"),
        promulgation_date=_date(text(kid(mh, "PromulgationInfo"), "PromulgationDate")),
        priority=_member(Priority, text(kid(mh, "OtherInfo"), "Priority"), Priority.NORMAL),
        business=business_of(root),
        attachments=attachments_of(root, limits or att.AttachmentLimits(), describe),
        signer=signer,
        notes=notes,
    )
