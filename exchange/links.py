"""Links between nodes: lane names, queue names, and what a link delivery becomes.

A link always lives on the parent's broker and is opened by the child (communes sit
behind NAT). Upward, every child publishes to its parent's ``up`` lanes; downward, the
parent publishes to one ``down`` lane set per child, which that child consumes:

    lienthong.link.<parent>.up.<lane>             child  -> parent
    lienthong.link.<parent>.down.<child>.<lane>   parent -> child

Which child sent an upward package is not taken from a header: it is the node that
signed the last hop record of the transport envelope (exchange/envelope.py).
"""

from __future__ import annotations

from exchange.envelope import Envelope
from exchange.model import Business, BusinessType, Kind, Level, Organ, Package, Priority
from exchange.store import Destination, OutboxItem
from exchange.topology import RoutePlan

# urgent: Priority 2-4, never behind the rest; normal; large: claim-check descriptors of
# packages above the inline cap (DESIGN §7), so a scanned 200 MB file never sits in front of
# a letter. Each lane is its own queue with its own consumer, bounded in bytes.
LANES = ("urgent", "normal", "large")
DIRECTORY_LANE = "directory"  # down each link only: the signed directory (directory_sync)
DOWN_LANES = (*LANES, DIRECTORY_LANE)


def lane_of(priority: Priority) -> str:
    """Thượng khẩn, hỏa tốc and hỏa tốc hẹn giờ (Priority 2–4) never wait behind the rest."""
    return "urgent" if priority >= Priority.VERY_URGENT else "normal"


def up_queue(parent: str, lane: str) -> str:
    return f"lienthong.link.{parent}.up.{lane}"


def down_queue(parent: str, child: str, lane: str) -> str:
    return f"lienthong.link.{parent}.down.{child}.{lane}"


def link_target(node: str, lane: str) -> str:
    return f"{node}/{lane}"


def split_target(target: str) -> tuple[str, str]:
    node, _, lane = target.partition("/")
    return node, lane or "normal"


def outbox_for(plan: RoutePlan, lane: str, here: str | None = None) -> tuple[OutboxItem, ...]:
    """A mailbox row per hosted recipient, one link row per next node; with ``here``, also
    a row given up for each recipient nobody hosts, so the failure and its reason are kept
    where it was judged (a failed receipt for the sender, once receipts travel back)."""
    items = [OutboxItem(Destination.MAILBOX, organ) for organ in plan.mailboxes]
    items += [OutboxItem(Destination.LINK, link_target(node, lane)) for node in plan.links]
    if here is not None:
        items += [
            OutboxItem(
                Destination.MAILBOX,
                organ,
                failure=f"unknown recipient: no node of this axis hosts {organ} (judged at {here})",
            )
            for organ in plan.unknown
        ]
    return tuple(items)


def package_from_envelope(envelope: Envelope) -> Package:
    """What a node after the entry node knows of a package: what the envelope vouches for.
    It does not parse or re-judge the package (DESIGN §3.4)."""
    return Package(
        kind=Kind(envelope.kind),
        digest=envelope.sha256,
        size=envelope.size,
        sender=Organ(envelope.sender),
        level=Level(envelope.level),
        document_id=envelope.document_id,
        recipients=tuple(Organ(r) for r in envelope.recipients),
        business=Business(BusinessType.NEW) if envelope.kind == Kind.EDOC.value else None,
    )
