"""Where an admitted package goes: pure decisions, no I/O (DESIGN §3).

A document goes to each recipient: into the mailbox when the agency is hosted here,
otherwise onto the parent link (child nodes and lanes come with the links). A status
routes through the DocumentId index, not through ``ResponseFor/OrganId``, which real
producers fill both ways: 01–06, 15 and 16 go to the document's sender and only a
recipient may send them; 13 goes to the document's recipients and only the sender may.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from exchange.errors import RecipientUnreachable, StatusNotAllowed, StatusUnroutable
from exchange.links import lane_of
from exchange.model import BusinessType, Kind, Package
from exchange.store import Destination, KnownDocument, OutboxItem

RECALL_REQUEST = "13"


def status_targets(package: Package, document: KnownDocument) -> tuple[str, ...]:
    assert package.status is not None
    sender = package.sender.organ_id
    if package.status.code == RECALL_REQUEST:
        if sender != document.sender:
            raise StatusNotAllowed(
                f"only the document's sender ({document.sender}) may ask to recall it; "
                f"{sender} is not"
            )
        return document.recipients
    if sender not in document.recipients:
        raise StatusNotAllowed(
            f"status {package.status.code} about {package.document_id} must come from one of "
            f"its recipients ({', '.join(document.recipients)}); {sender} is not"
        )
    return (document.sender,)


def entry_targets(package: Package) -> tuple[str, ...]:
    """Where a document goes from its entry node: its recipients (To); for an update, also
    the recipients its ReceiverList adds, and those it removes, whose nodes withdraw it."""
    targets = [organ.organ_id for organ in package.recipients]
    if package.business is not None and package.business.type is BusinessType.UPDATE:
        targets += [change.organ_id for change in package.business.receivers_changed]
    return tuple(dict.fromkeys(targets))


def business_record(package: Package) -> dict[str, Any] | None:
    """What the envelope says of a revoke, update or replace (docs/wire.md)."""
    business = package.business
    if business is None or business.type is BusinessType.NEW:
        return None
    record: dict[str, Any] = {
        "type": int(business.type),
        "about": business.document_id or package.document_id,
    }
    removed = [c.organ_id for c in business.receivers_changed if not c.added]
    if business.type is BusinessType.UPDATE and removed:
        record["removed"] = removed
    return record


def route(
    package: Package,
    *,
    hosted: Collection[str],
    parent: str | None,
    document: KnownDocument | None = None,
) -> tuple[tuple[OutboxItem, ...], tuple[str, ...]]:
    """One outbox item per destination (a mailbox, or one copy per link lane), and the
    recipients nothing leads to; refused when nothing leads to any."""
    if package.kind is Kind.STATUS:
        if document is None:
            if parent is None:
                raise StatusUnroutable(
                    f"no document {package.document_id!r} has passed through this node"
                )
            return (OutboxItem(Destination.LINK, f"{parent}/{lane_of(package.priority)}"),), ()
        targets: Sequence[str] = status_targets(package, document)
    else:
        targets = entry_targets(package)
    items: list[OutboxItem] = []
    remote = []
    for organ_id in dict.fromkeys(targets):  # each recipient once, in order
        if organ_id in hosted:
            items.append(OutboxItem(Destination.MAILBOX, organ_id))
        else:
            remote.append(organ_id)
    if remote and parent is not None:
        lane = lane_of(package.priority)
        items.append(OutboxItem(Destination.LINK, f"{parent}/{lane}"))  # one copy for them all
        return tuple(items), ()
    if remote and not items:
        raise RecipientUnreachable(
            f"{', '.join(remote)} {'is' if len(remote) == 1 else 'are'} not hosted on this "
            "node, and it has no link that leads there; nothing was sent"
        )
    return tuple(items), tuple(remote)
