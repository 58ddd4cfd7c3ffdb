"""The slower parts of ``GET /status``: overdue acknowledgements, read from the evidence,
and the certificates that will expire, read from files and from the agencies' last
packages (each package's certificate read once)."""

from __future__ import annotations

import asyncio
import base64
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from exchange.config import TrustSettings
from exchange.errors import LienthongError
from exchange.evidence import EventKind
from exchange.node import Node
from exchange.tracking import acknowledged_at

CERT_WARN_DAYS = 30
OVERDUE_WINDOW = timedelta(days=30)  # deliveries older than this are not looked at
HEAD_BYTES = 1024 * 1024
_X509 = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?X509Certificate>\s*([A-Za-z0-9+/=\s]+?)\s*</")


async def overdue(node: Node, now: datetime) -> list[dict[str, Any]]:
    """Recipients that had a document delivered and have not answered it (status 01
    or 03) by its deadline, newest delivery first (a node without a working calendar
    tracks no deadlines)."""
    deadlines = node.settings.deadlines
    if deadlines is None:
        return []
    store = node.store
    delivered = await store.events_of_kind(EventKind.DELIVERED.value, now - OVERDUE_WINDOW)
    statuses: dict[str, list[Any]] = {}
    seen: set[tuple[str, str]] = set()
    rows = []
    for event in delivered:
        due = deadlines.end_of_working_day(event.at)
        if now <= due:
            continue
        for organ in (str(o) for o in event.detail.get("recipients", ())):
            key = (event.message_id or "", organ)
            if key in seen:
                continue
            seen.add(key)
            about = event.document_id or ""
            if about not in statuses:
                found = await store.events_about(document_id=about) if about else ()
                statuses[about] = [e for e in found if e.kind is EventKind.STATUS]
            if acknowledged_at(organ, statuses[about]) is not None:
                continue
            rows.append(
                {
                    "message_id": event.message_id,
                    "document_id": event.document_id,
                    "sender": event.sender,
                    "recipient": organ,
                    "delivered_at": event.at.isoformat(),
                    "due": due.isoformat(),
                    "node": event.node,
                }
            )
    return rows


class Certificates:
    def __init__(self, node: Node, trust: TrustSettings | None) -> None:
        self.node = node
        self.trust = trust
        self._certs: dict[str, tuple[str, datetime] | None] = {}  # digest -> (subject, end)

    async def rows(self, now: datetime) -> list[dict[str, Any]]:
        found: list[tuple[str, str, datetime]] = []
        trust = self.trust
        files = []
        if trust is not None:
            mine = trust.node_certs / f"{self.node.settings.node_id}.pem"
            files = [(mine, "node"), (trust.ca, "ca")]
        for path, kind in files:
            for cert in _pem_certificates(path):
                label = f"node {self.node.settings.node_id}" if kind == "node" else _subject(cert)
                found.append((label, kind, cert.not_valid_after_utc))
        try:
            latest = await self.node.store.latest_from(self.node.settings.hosted)
        except LienthongError:
            latest = {}
        for organ, digest in sorted(latest.items()):
            if digest not in self._certs:
                self._certs[digest] = await self._signing_cert(digest)
            known = self._certs[digest]
            if known is not None:
                found.append((organ, "agency", known[1]))
        rows = []
        for subject, kind, end in found:
            days = (end - now).total_seconds() / 86400
            rows.append(
                {
                    "subject": subject,
                    "kind": kind,
                    "not_after": end.isoformat(),
                    "days_left": int(days // 1),
                    "warn": days < CERT_WARN_DAYS,
                }
            )
        return sorted(rows, key=lambda r: (r["days_left"], r["subject"]))

    async def _signing_cert(self, digest: str) -> tuple[str, datetime] | None:
        """The certificate the agency's last package was signed with: the first
        X509Certificate of its KeyInfo, in the header, read from at most the first MiB
        (a package may be hundreds of MiB)."""
        try:
            path = await self.node.store.package_file(digest)
            if path is not None:
                head = await asyncio.to_thread(_head, path)
            else:
                head = (await self.node.store.package_bytes(digest))[:HEAD_BYTES]
        except (KeyError, OSError, LienthongError):
            return None
        for found in _X509.finditer(head):
            try:
                cert = x509.load_der_x509_certificate(base64.b64decode(found.group(1)))
            except ValueError:
                continue
            return _subject(cert), cert.not_valid_after_utc
        return None


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(HEAD_BYTES)


def _pem_certificates(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return []


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()
