"""The national-axis SDK's wire conventions, without I/O (docs/sdk-facade.md).

The SDK (``SDKVXP-2.0.1``) sends every field of a call as an ``XroadVnpt-<name>`` header
and signs them: ``XroadVnpt-sign-header`` is a JSON object of those headers, and
``XroadVnpt-hash-header`` the lowercase hex HMAC-SHA256 of that exact string under the
system's secret. The server verifies the HMAC over the string as sent (so key order and
Gson's escaping do not matter), then acts only on the values inside it: a header outside
the signature may not say otherwise. This module reads and checks such a request, and
builds the SDK's JSON answers (``status``, ``ErrorCode``, ``ErrorDesc``) with our stable
error codes mapped to the SDK's numeric ones.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exchange import errors
from exchange.errors import (
    LienthongError,
    PermanentFault,
    SdkFileHashMismatch,
    SdkHeaderMismatch,
    SdkRequestInvalid,
    SdkSignatureInvalid,
    SdkSystemUnknown,
    SdkTimestampInvalid,
    SenderFault,
    TransientFault,
)
from exchange.node import Answer
from exchange.status_view import DocumentStatus
from exchange.store import MailboxEntry

PREFIX = "xroadvnpt-"  # header names compare case-insensitively
# headers that carry the signature itself, or that the SDK adds after signing
UNSIGNED = frozenset({"sign-header", "sign-header-key", "hash-header", "version"})
MESSAGE_TYPES = frozenset({"edoc", "status"})
UPDATE_STATUSES = frozenset({"done", "fail", "processing"})
SERVICE_TYPE = "eDoc"
SUCCESS_DESC = "Thanh cong"  # the SDK's own word for success

# The SDK's ErrorCode for each of our codes (docs/sdk-facade.md). "0" is success; "100" is
# the SDK's own "could not parse the answer", never sent by us. Codes not listed here take
# the number of their branch: a sender's fault "422", transient "503", permanent "500".
SDK_OK = "0"
SDK_UNPARSEABLE = "100"
_SDK_CODES = {
    errors.SdkRequestInvalid.code: "400",
    errors.SdkSystemUnknown.code: "401",
    errors.SdkSignatureInvalid.code: "401",
    errors.SdkHeaderMismatch.code: "401",
    errors.SdkTimestampInvalid.code: "401",
    errors.SdkFileHashMismatch.code: "401",
    errors.NotYours.code: "403",
    errors.SubmitterNotSender.code: "403",
    errors.NotInMailbox.code: "404",
    errors.NotTracked.code: "404",
    errors.StatusUnroutable.code: "404",
    "dedup.conflict": "409",
    errors.DocumentIdTaken.code: "409",
    errors.PackageTooLarge.code: "413",
    errors.RateLimited.code: "429",
    errors.RequestTimeout.code: "408",
    "intake.poison": "500",
}
_TIMESTAMP = re.compile(r"(\d{2})(\d{2})(\d{4})T(\d{2})(\d{2})(\d{2})\+(\d{3,4})")


def sdk_hex(digest: bytes) -> str:
    """The SDK's hex of a digest: each byte without its leading zero (Java's
    ``Integer.toHexString(0xFF & b)``), so ``0x0a`` is ``a``."""
    return "".join(format(b, "x") for b in digest)


def file_hash(data: bytes) -> str:
    """``hash-file`` as the SDK computes it for the file it sends."""
    return sdk_hex(hashlib.sha256(data).digest())


def sign_header_mac(secret: bytes, sign_header: bytes) -> str:
    """``XroadVnpt-hash-header``: lowercase hex HMAC-SHA256 of the sign-header string."""
    return hmac.new(secret, sign_header, hashlib.sha256).hexdigest()


def parse_timestamp(value: str) -> datetime:
    """The SDK's ``ddMMyyyy'T'HHmmss+SSSS`` (milliseconds, zero-padded to four digits)."""
    found = _TIMESTAMP.fullmatch(value)
    if found is None:
        raise SdkTimestampInvalid(f"timestamp {value!r} is not ddMMyyyy'T'HHmmss+SSSS")
    day, month, year, hour, minute, second, millis = (int(g) for g in found.groups())
    try:
        return datetime(year, month, day, hour, minute, second, min(millis, 999) * 1000)
    except ValueError as exc:
        raise SdkTimestampInvalid(f"timestamp {value!r} is not a date: {exc}") from exc


def xroad_headers(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    """The ``XroadVnpt-`` headers of a request, by lowercase name without the prefix; each
    value decoded so that it encodes back to the bytes received."""
    found: dict[str, list[str]] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        if key.startswith(PREFIX):
            found.setdefault(key[len(PREFIX) :], []).append(
                value.decode("utf-8", "surrogateescape")
            )
    return found


def _one(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name, [])
    if len(values) > 1:
        raise SdkSignatureInvalid(f"XroadVnpt-{name} is sent {len(values)} times")
    return values[0] if values else None


def claimed_system(headers: Mapping[str, list[str]]) -> str:
    """The system a request says it comes from, not yet verified."""
    try:
        systemid = _one(headers, "systemid")
    except SdkSignatureInvalid as exc:
        raise SdkSystemUnknown(exc.message) from exc
    if not systemid:
        raise SdkSystemUnknown("no XroadVnpt-systemid header")
    return systemid


@dataclass(frozen=True)
class SignedRequest:
    """The fields of a request as its signature covers them: the only values to act on."""

    systemid: str
    fields: Mapping[str, str]  # lowercase name, without the prefix -> the signed value

    def get(self, name: str) -> str | None:
        return self.fields.get(name.lower())

    def require(self, name: str, allowed: frozenset[str] | None = None) -> str:
        value = self.get(name)
        if value is None or value == "":
            raise SdkRequestInvalid(f"no signed {name} (XroadVnpt-{name} in the sign-header)")
        if allowed is not None and value not in allowed:
            raise SdkRequestInvalid(
                f"{name} is {value!r}; expected one of {', '.join(sorted(allowed))}"
            )
        return value


def verify_request(headers: Mapping[str, list[str]], systemid: str, secret: bytes) -> SignedRequest:
    """Check a request's signature with the secret of the system it claims, and that no
    header outside the signature says otherwise than inside it."""
    given = _one(headers, "hash-header")
    sign_header = _one(headers, "sign-header")
    if not given or not sign_header:
        raise SdkSignatureInvalid("no XroadVnpt-sign-header or XroadVnpt-hash-header")
    expected = sign_header_mac(secret, sign_header.encode("utf-8", "surrogateescape"))
    if not hmac.compare_digest(
        expected.encode(), given.strip().lower().encode("utf-8", "surrogateescape")
    ):
        raise SdkSignatureInvalid("XroadVnpt-hash-header does not verify with the system's secret")
    fields = _signed_fields(sign_header)
    if fields.get("systemid") != systemid:
        raise SdkSignatureInvalid("the sign-header does not name the XroadVnpt-systemid sent")
    listed = _one(headers, "sign-header-key")
    if listed is None:
        raise SdkSignatureInvalid("no XroadVnpt-sign-header-key")
    for name in filter(None, (n.strip().lower() for n in listed.split(";"))):
        if name not in fields:
            raise SdkSignatureInvalid(f"sign-header-key names {name}, which is not signed")
        if name not in headers:
            raise SdkHeaderMismatch(f"XroadVnpt-{name} is signed but not sent")
    for name, values in headers.items():
        if name in fields and name not in UNSIGNED and any(v != fields[name] for v in values):
            raise SdkHeaderMismatch(f"XroadVnpt-{name} differs from its signed value")
    if "timestamp" in fields:
        parse_timestamp(fields["timestamp"])
    return SignedRequest(systemid, fields)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("a key appears twice")
    return found


def _signed_fields(sign_header: str) -> dict[str, str]:
    try:
        signed = json.loads(sign_header, object_pairs_hook=_unique)
    except (ValueError, RecursionError) as exc:
        raise SdkSignatureInvalid("XroadVnpt-sign-header is not JSON") from exc
    if not isinstance(signed, dict):
        raise SdkSignatureInvalid("XroadVnpt-sign-header is not a JSON object")
    fields: dict[str, str] = {}
    for key, value in signed.items():
        name = key.lower()
        if not name.startswith(PREFIX) or not isinstance(value, str):
            raise SdkSignatureInvalid(
                f"sign-header entry {key!r} is not an XroadVnpt- header with a string value"
            )
        name = name[len(PREFIX) :]
        if fields.get(name, value) != value:
            raise SdkSignatureInvalid(f"sign-header entry {key!r} is ambiguous")
        fields[name] = value
    return fields


def check_body(signed: SignedRequest, body: Mapping[str, Any]) -> None:
    """A JSON body may repeat signed fields (the SDK sends both), never contradict them."""
    for key, value in body.items():
        inside = signed.get(key)
        if inside is not None and _as_header(value) != inside:
            raise SdkHeaderMismatch(f"the body's {key} differs from its signed value")


def _as_header(value: Any) -> str:
    """A JSON body value as the SDK would write it into a header."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def check_file(signed: SignedRequest, data: bytes) -> None:
    """The file is the one the signed ``hash-file`` names (when the request signs one)."""
    claimed = signed.get("hash-file")
    if claimed is not None and not hmac.compare_digest(
        claimed.strip().lower().encode("utf-8", "surrogateescape"), file_hash(data).encode()
    ):
        raise SdkFileHashMismatch("the file_doc part is not the file whose hash-file is signed")


# --- the client's side (adapters/upstream_vdxp.py) ------------------------------------

USER_AGENT = "JAVASDKAgent/1.0.0 XRoad/VPCP"
SDK_VERSION = "3.0.201608"


def format_timestamp(at: datetime) -> str:
    """``ddMMyyyy'T'HHmmss+SSSS``: the SDK's timestamp (milliseconds, four digits)."""
    return at.strftime("%d%m%YT%H%M%S") + f"+{at.microsecond // 1000:04d}"


def signed_headers(secret: bytes, fields: Mapping[str, str]) -> dict[str, str]:
    """The headers of one call, signed the SDK's way: each field as ``XroadVnpt-<name>``,
    the names in ``sign-header-key``, their compact JSON in ``sign-header`` and its
    HMAC-SHA256 in ``hash-header``. ``fields`` holds ``systemid`` and ``timestamp`` first,
    then the call's own; a fresh mapping per call (the SDK's leaks stale keys)."""
    signed = {f"XroadVnpt-{name}": value for name, value in fields.items()}
    sign_header = json.dumps(signed, separators=(",", ":"), ensure_ascii=False)
    return {
        **signed,
        "XroadVnpt-sign-header-key": ";".join(fields),
        "XroadVnpt-sign-header": sign_header,
        "XroadVnpt-hash-header": sign_header_mac(secret, sign_header.encode("utf-8")),
        "XroadVnpt-version": SDK_VERSION,
        "User-Agent": USER_AGENT,
    }


# --- answers ---------------------------------------------------------------------------


def _class_codes() -> dict[str, type[LienthongError]]:
    found: dict[str, type[LienthongError]] = {}
    todo: list[type[LienthongError]] = [LienthongError]
    while todo:
        cls = todo.pop()
        found[cls.code] = cls
        todo.extend(cls.__subclasses__())
    return found


_CLASSES = _class_codes()


def sdk_error_code(code: str) -> str:
    """The SDK's numeric ErrorCode for one of our stable codes."""
    if code in _SDK_CODES:
        return _SDK_CODES[code]
    cls = _CLASSES.get(code)
    if cls is not None and issubclass(cls, SenderFault):
        return "422"
    if cls is not None and issubclass(cls, TransientFault):
        return "503"
    if cls is not None and issubclass(cls, PermanentFault):
        return "500"
    return "500"


def ok(**fields: Any) -> dict[str, Any]:
    return {"status": "OK", "ErrorCode": SDK_OK, "ErrorDesc": SUCCESS_DESC, **fields}


def fail(code: str, message: str, sdk_code: str | None = None) -> dict[str, Any]:
    """A failure the SDK reads: our code always leads the description."""
    return {
        "status": "FAIL",
        "ErrorCode": sdk_code or sdk_error_code(code),
        "ErrorDesc": f"[{code}] {message}",
    }


def refusal(error: LienthongError) -> dict[str, Any]:
    return fail(error.code, error.message)


def submitted(answer: Answer) -> dict[str, Any]:
    """sendEdoc's answer from the node's: a duplicate answers the original DocId."""
    if answer.outcome in ("accepted", "duplicate"):
        body = ok(DocId=answer.message_id)
        if answer.unreachable:
            body["ErrorDesc"] = (
                f"{SUCCESS_DESC}; [{errors.RecipientUnreachable.code}] nothing leads to "
                + ", ".join(answer.unreachable)
            )
        return body
    code = answer.code or "intake.refused"
    if answer.outcome == "retry":  # answered, not held: the system sends it again later
        return fail(code, f"not taken this time, send again later: {answer.reason}", "503")
    if answer.outcome == "dead-lettered":
        return fail(code, answer.reason or "held for an operator", "500")
    body = fail(code, answer.reason or answer.outcome)
    if answer.message_id is not None:  # a conflict names the package accepted before
        body["DocId"] = answer.message_id
    return body


def _when(at: datetime | None) -> str:
    return at.isoformat() if at is not None else ""


def received_item(entry: MailboxEntry) -> dict[str, str]:
    """One row of getReceivedEdocList: ``docId`` is the node's message id."""
    fetched = entry.fetched_at is not None
    return {
        "docId": entry.message_id,
        "serviceType": SERVICE_TYPE,
        "messageType": entry.kind,
        "created_time": _when(entry.delivered_at),
        "updated_time": _when(entry.fetched_at or entry.delivered_at),
        "from": entry.sender,
        "to": entry.organ_id,
        "status": "done" if fetched else "initial",
        "status_desc": "fetched" if fetched else "waiting to be fetched",
    }


_TRANSPORT = {
    "accepted": "accepted at the origin node",
    "forwarded": "on its way",
    "delivered": "in the recipient's mailbox",
    "fetched": "taken by the recipient's system",
    "failed": "not delivered",
}


def sent_items(view: DocumentStatus) -> list[dict[str, str]]:
    """getSentEdocList's rows for one package: one per recipient."""
    parts = (view.document_id or "").split(",", 2)
    notation = parts[2] if len(parts) == 3 else ""
    return [
        {
            "serviceType": SERVICE_TYPE,
            "senderDocId": view.message_id,
            "receiverDocId": view.message_id,
            "fromCode": view.sender,
            "toCode": row.recipient,
            "title": "",
            "notation": notation,
            "messageType": view.kind,
            "sentTime": _when(view.received_at),
            "receivedTime": _when(row.at) if row.transport in ("delivered", "fetched") else "",
            "sendStatus": row.transport,
            "sendStatusDesc": row.reason or _TRANSPORT.get(row.transport, ""),
            "receiveStatus": row.status or "",
            "receiveStatusDesc": row.status_meaning or "",
        }
        for row in view.recipients
    ]


def agency_rows(
    directory: Sequence[Mapping[str, str]], redirects: Mapping[str, str]
) -> list[dict[str, str]]:
    """getAgenciesList's rows: ``pid`` is the node hosting the agency, ``oldCode`` the
    codes that now lead to it; what the directory does not hold is an empty string."""
    old: dict[str, list[str]] = {}
    for former, current in redirects.items():
        old.setdefault(current, []).append(former)
    return [
        {
            "id": row["organ_id"],
            "code": row["organ_id"],
            "pid": row.get("node", ""),
            "name": row.get("name", ""),
            "mail": row.get("mail", ""),
            "oldCode": ",".join(sorted(old.get(row["organ_id"], []))),
        }
        for row in directory
    ]
