"""Turning core values into what a person or a machine reads at the terminal."""

from __future__ import annotations

import dataclasses
import enum
import json
from datetime import date, datetime
from typing import Any

from exchange.errors import Problem
from exchange.inspection import Inspection
from exchange.model import BusinessType, Kind, Package, Priority
from exchange.pades import PdfSignature

_PRIORITY = {
    Priority.NORMAL: "normal (thường)",
    Priority.URGENT: "urgent (khẩn)",
    Priority.VERY_URGENT: "very urgent (thượng khẩn)",
    Priority.FLASH: "flash (hỏa tốc)",
    Priority.FLASH_SCHEDULED: "scheduled flash (hỏa tốc hẹn giờ)",
}
_BUSINESS = {
    BusinessType.NEW: "new document",
    BusinessType.REVOKE: "revocation (thu hồi)",
    BusinessType.UPDATE: "update (cập nhật)",
    BusinessType.REPLACE: "replacement (thay thế)",
}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def to_json(value: Any) -> str:
    return json.dumps(_plain(value), ensure_ascii=False, indent=2)


def problem_line(source: str, problem: Problem) -> str:
    tag = "" if problem.severity == "error" else f"{problem.severity}: "
    return f"{tag}{problem.render(source)} [{problem.code}]"


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def package_lines(package: Package) -> list[str]:
    lines = []
    sender = package.sender
    lines.append(f"from:        {sender.organ_id}  {sender.name or ''}".rstrip())
    if package.kind is Kind.STATUS and package.status is not None:
        status = package.status
        lines.append(
            f"status:      {status.code} {status.meaning}: {status.description or ''}".rstrip()
        )
        lines.append(f"about:       DocumentId {status.response_for_document_id}")
        if status.response_for_code:
            lines.append(
                f"             number {status.response_for_code}, to {status.response_for_organ_id}"
            )
        if status.timestamp:
            lines.append(f"at:          {status.timestamp:%Y/%m/%d %H:%M:%S}")
        return lines
    for index, organ in enumerate(package.recipients):
        label = "to:" if index == 0 else ""
        lines.append(f"{label:<13}{organ.organ_id}  {organ.name or ''}".rstrip())
    when = f" of {package.promulgation_date:%Y/%m/%d}" if package.promulgation_date else ""
    lines.append(f"document:    {package.number or '(no number)'}{when}")
    lines.append(f"DocumentId:  {package.document_id}")
    lines.append(f"subject:     {package.subject or ''}")
    lines.append(f"priority:    {package.priority.value} {_PRIORITY[package.priority]}")
    if package.business is not None:
        business = package.business
        about = f", about {business.document_id}" if business.document_id else ""
        lines.append(f"business:    {_BUSINESS[business.type]}{about}")
        for change in business.receivers_changed:
            lines.append(
                f"{'':13}recipient {'added' if change.added else 'removed'}: {change.organ_id}"
            )
        for repl in business.replaces:
            lines.append(
                f"             replaces {repl.document_id} for {', '.join(repl.organ_ids)}"
            )
    lines.append(f"attachments: {len(package.attachments)}")
    for a in package.attachments:
        packed = f", in a one-entry ZIP as {a.inner_name}" if a.packing == "zip" else ""
        lines.append(f"  - {a.name} ({a.content_type}), {_size(a.size)}{packed}")
        lines.append(f"    sha256 {a.sha256}")
    return lines


def inspection_text(source: str, report: Inspection) -> str:
    lines = [f"file:        {source} ({_size(report.size)}, sha256 {report.sha256})"]
    kind = (
        {Kind.EDOC: "document (edoc)", Kind.STATUS: "status"}.get(report.kind, "unknown")
        if report.kind
        else "unknown"
    )
    lines.append(f"kind:        {kind}")
    if report.package is not None:
        lines.extend(package_lines(report.package))
    sig = report.signature
    if not sig.present:
        lines.append("signature:   none")
    else:
        lines.append(f"signature:   {sig.kind}")
        if sig.method:
            lines.append(f"             {sig.method} / {sig.digest}, c14n {sig.c14n}")
        if sig.certificate_subject:
            lines.append(f"             certificate {sig.certificate_subject}")
            lines.append(
                f"{'':13}issued by {sig.certificate_issuer}, "
                f"until {sig.certificate_not_after:%Y-%m-%d}"
            )
        lines.append(f"             {sig.cryptographically}")
    lines.append(f"verification: {report.verification}")
    errors = [p for p in report.problems if p.severity == "error"]
    lines.append(f"contract:    {'valid' if not errors else f'{len(errors)} problem(s)'}")
    for problem in report.problems:
        lines.append("  " + problem_line(source, problem))
    for note in report.reading_notes:
        lines.append(f"note:        {note}")
    if report.package is not None:
        for note in report.package.notes:
            lines.append(f"note:        {note}")
    return "\n".join(lines)


def pdf_signature_line(sig: PdfSignature) -> str:
    """One PAdES signature of an attached PDF, as an operator reads it."""
    when = sig.signed_at.isoformat() if sig.signed_at else "no signing time"
    verdict = "valid" if sig.valid else "NOT valid"
    trust = "trusted signer" if sig.trusted else "signer not trusted here"
    why = f" ({sig.reason})" if sig.reason else ""
    signer = sig.signer or "unknown signer"
    return f"PDF signature in {sig.attachment}: {signer}, {when}: {verdict}, {trust}{why}"
