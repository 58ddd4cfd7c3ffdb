"""The delivery receipt as a value and as an XML document (schemas/receipt.xsd).

No cryptography here: building the unsigned tree, checking a received one against the
XSD, and reading the values back. exchange/receipt.py signs and verifies.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from exchange.contract import compile_schema, schema_dir
from exchange.edxml import DSIG_NS
from exchange.errors import (
    DoctypeForbidden,
    EmptyPackage,
    MalformedXml,
    PackageTooLarge,
    ReceiptInvalid,
)
from exchange.model import Level
from exchange.pades import PdfSignature
from exchange.xmlsafe import ParseLimits, parse

NS = "urn:lienthong:receipt:1"
SCHEMA_FILE = "receipt.xsd"
LEVELS = (Level.STRICT, Level.LEGACY, Level.UNSIGNED, Level.QUARANTINED)


def r(name: str) -> str:
    """The Clark name of a receipt element."""
    return f"{{{NS}}}{name}"


@dataclass(frozen=True)
class ReceiptRecipient:
    organ_id: str
    delivered_at: datetime  # with its offset

    def __post_init__(self) -> None:
        if self.delivered_at.utcoffset() is None:
            raise ValueError(f"{self.organ_id}: DeliveredAt needs a time zone offset")


@dataclass(frozen=True)
class DeliveryReceipt:
    """What one node says it delivered: one message, to one or more of its agencies."""

    message_id: str  # the transport message id (a UUID)
    document_id: str | None
    sender: str  # the package's From/OrganId
    node: str  # the node that delivered, and signs
    level: Level  # the verification level the package entered with
    package_sha256: str  # lowercase hex SHA-256 of the exact bytes delivered
    issued_at: datetime  # with its offset
    recipients: tuple[ReceiptRecipient, ...]
    pdf_signatures: tuple[PdfSignature, ...] = ()  # below strict: the attached PDFs' signatures

    def __post_init__(self) -> None:
        if not self.recipients:
            raise ValueError("a receipt covers at least one recipient")
        if self.level not in LEVELS:
            raise ValueError(f"a package delivered at level {self.level.value!r} has no receipt")
        if self.issued_at.utcoffset() is None:
            raise ValueError("IssuedAt needs a time zone offset")

    @property
    def organ_ids(self) -> tuple[str, ...]:
        return tuple(item.organ_id for item in self.recipients)


# --- writing --------------------------------------------------------------------------


def _add(parent: etree._Element, name: str, text: str) -> etree._Element:
    el = etree.SubElement(parent, r(name))
    el.text = text
    return el


def receipt_tree(receipt: DeliveryReceipt) -> etree._Element:
    """The unsigned receipt, in the order of schemas/receipt.xsd."""
    root = etree.Element(r("DeliveryReceipt"), nsmap={None: NS})  # type: ignore[dict-item]
    _add(root, "MessageId", receipt.message_id)
    if receipt.document_id is not None:
        _add(root, "DocumentId", receipt.document_id)
    _add(root, "Sender", receipt.sender)
    _add(root, "Node", receipt.node)
    _add(root, "Level", receipt.level.value)
    _add(root, "PackageSha256", receipt.package_sha256)
    _add(root, "IssuedAt", receipt.issued_at.isoformat())
    recipients = etree.SubElement(root, r("Recipients"))
    for item in receipt.recipients:
        recipient = etree.SubElement(recipients, r("Recipient"))
        _add(recipient, "OrganId", item.organ_id)
        _add(recipient, "DeliveredAt", item.delivered_at.isoformat())
    last = recipients
    if receipt.pdf_signatures:
        last = etree.SubElement(root, r("PdfSignatures"))
        for sig in receipt.pdf_signatures:
            found = _add(last, "PdfSignature", sig.reason)
            found.set("attachment", sig.attachment)
            found.set("signer", sig.signer)
            if sig.signed_at is not None:
                found.set("signedAt", sig.signed_at.isoformat())
            found.set("valid", "true" if sig.valid else "false")
            found.set("trusted", "true" if sig.trusted else "false")
    etree.indent(root)  # for people who open it; the signature covers the whitespace too
    last.tail = "\n  "  # where the signature goes
    return root


# --- the schema -----------------------------------------------------------------------

_compiled = threading.local()  # one compiled schema per thread: validation keeps state
_CLARK = re.compile(r"\{[^}]*\}")


def _schema() -> etree.XMLSchema:
    schema: etree.XMLSchema | None = getattr(_compiled, "schema", None)
    if schema is None:
        schema = compile_schema(schema_dir() / SCHEMA_FILE)
        _compiled.schema = schema
    return schema


def schema_problem(root: etree._Element) -> str | None:
    """The first way ``root`` breaks schemas/receipt.xsd ("line N: ..."), or None."""
    schema = _schema()
    if schema.validate(root):
        return None
    entry = schema.error_log[0]  # type: ignore[index]
    message = _CLARK.sub("", entry.message)
    return f"line {entry.line}: {message}" if entry.line else message


# --- reading --------------------------------------------------------------------------


def parse_receipt(data: bytes, limits: ParseLimits | None = None) -> etree._Element:
    """The received document's root: well-formed, no DOCTYPE, a DeliveryReceipt."""
    limits = limits or ParseLimits()
    try:
        root = parse(data, limits).getroot()
    except DoctypeForbidden as exc:
        raise ReceiptInvalid(
            "the receipt declares a DOCTYPE; DTDs and entities are refused"
        ) from exc
    except EmptyPackage as exc:
        raise ReceiptInvalid("the receipt is empty (0 bytes)") from exc
    except PackageTooLarge as exc:
        raise ReceiptInvalid(
            f"the receipt is {len(data)} bytes; at most {limits.max_bytes} are read"
        ) from exc
    except MalformedXml as exc:
        where = f" (line {exc.line})" if exc.line else ""
        reason = exc.message.removeprefix("not well-formed XML: ")
        raise ReceiptInvalid(f"the receipt is not well-formed XML{where}: {reason}") from exc
    if root.tag != r("DeliveryReceipt"):
        raise ReceiptInvalid(
            f"the root element must be DeliveryReceipt in namespace {NS}, found {root.tag}"
        )
    return root


def check_document(root: etree._Element) -> etree._Element:
    """The receipt's one signature, once the document follows the XSD."""
    signatures = list(root.iter(f"{{{DSIG_NS}}}Signature"))
    if not signatures:
        raise ReceiptInvalid("the receipt is not signed (it carries no ds:Signature)")
    if len(signatures) > 1:
        raise ReceiptInvalid(
            f"the receipt carries {len(signatures)} ds:Signature elements; exactly one is allowed"
        )
    problem = schema_problem(root)
    if problem is not None:
        raise ReceiptInvalid(f"the receipt does not follow schemas/receipt.xsd: {problem}")
    signature = signatures[0]
    if signature.getparent() is not root:  # the XSD places it last
        raise ReceiptInvalid("the ds:Signature must be the last child of DeliveryReceipt")
    return signature


def instant(text: str, what: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ReceiptInvalid(f"{what} {text!r} is not a date and time this node can read") from exc
    if when.utcoffset() is None:
        raise ReceiptInvalid(f"{what} {text!r} has no time zone offset")
    return when


def text_of(root: etree._Element, path: str) -> str:
    """The text of a simple element, whole: a comment or PI inside does not cut it short."""
    el = root.find(path, {"r": NS})
    text = "".join([el.text or "", *(kid.tail or "" for kid in el)]) if el is not None else ""
    if not text:
        raise ReceiptInvalid(f"the receipt has no {path.replace('r:', '')}")
    return text


def receipt_from(root: etree._Element) -> DeliveryReceipt:
    """The values of a receipt, read from ``root`` (the verified element, by the caller)."""
    if root.tag != r("DeliveryReceipt"):
        raise ReceiptInvalid(f"the signed element is {root.tag}, not a DeliveryReceipt")
    has_document = root.find("r:DocumentId", {"r": NS}) is not None
    recipients = tuple(
        ReceiptRecipient(
            organ_id=text_of(item, "r:OrganId"),
            delivered_at=instant(text_of(item, "r:DeliveredAt"), "DeliveredAt"),
        )
        for item in root.iterfind("r:Recipients/r:Recipient", {"r": NS})
    )
    try:
        return DeliveryReceipt(
            message_id=text_of(root, "r:MessageId"),
            document_id=text_of(root, "r:DocumentId") if has_document else None,
            sender=text_of(root, "r:Sender"),
            node=text_of(root, "r:Node"),
            level=Level(text_of(root, "r:Level")),
            package_sha256=text_of(root, "r:PackageSha256"),
            issued_at=instant(text_of(root, "r:IssuedAt"), "IssuedAt"),
            recipients=recipients,
            pdf_signatures=tuple(
                PdfSignature(
                    attachment=item.get("attachment", ""),
                    signer=item.get("signer", ""),
                    signed_at=instant(item.get("signedAt", ""), "signedAt")
                    if item.get("signedAt")
                    else None,
                    valid=item.get("valid") in ("true", "1"),
                    trusted=item.get("trusted") in ("true", "1"),
                    reason=item.text or "",
                )
                for item in root.iterfind("r:PdfSignatures/r:PdfSignature", {"r": NS})
            ),
        )
    except ValueError as exc:
        raise ReceiptInvalid(f"the signed receipt does not hold a receipt: {exc}") from exc
