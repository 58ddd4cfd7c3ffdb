"""Links between nodes: lane names, queue names, and what a link delivery becomes.

A link always lives on the parent's broker and is opened by the child (communes sit
behind NAT). Upward, every child publishes to its parent's ``up`` lanes; downward, the
parent publishes to one ``down`` lane set per child, which that child consumes:

    lienthong.link.<parent>.up.<lane>             child  -> parent
    lienthong.link.<parent>.down.<child>.<lane>   parent -> child

Which child sent an upward package is not taken from a header: it is the node that
signed the last hop record of the transport envelope (exchange/envelope.py).

A link message carries the envelope and the package together in its body (``frame``):
``LTL1 <envelope length>\n<envelope JSON><package bytes>``. Not in a header: an envelope
lists every recipient, and a package to 10,000 agencies has an envelope larger than the
biggest AMQP frame (RabbitMQ's frame_max, 128 KiB), which a header must fit in.
"""

from __future__ import annotations

from exchange.envelope import Envelope
from exchange.errors import EnvelopeInvalid
from exchange.model import (
    Business,
    BusinessType,
    Kind,
    Level,
    Organ,
    Package,
    Priority,
    ReceiverChange,
)
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


FRAME_MAGIC = b"LTL1"


def frame(envelope: bytes, data: bytes) -> bytes:
    """A link message body: the transport envelope, then the package's exact bytes."""
    return b"%s %d\n" % (FRAME_MAGIC, len(envelope)) + envelope + data


def unframe(body: bytes) -> tuple[bytes, bytes]:
    """The envelope and the package bytes of a link message body."""
    end = body.find(b"\n", 0, 32)
    if not body.startswith(FRAME_MAGIC + b" ") or end < 0:
        raise EnvelopeInvalid("a link message must start with 'LTL1 <envelope length>'")
    size = body[len(FRAME_MAGIC) + 1 : end]
    if not size.isdigit() or end + 1 + int(size) > len(body):
        raise EnvelopeInvalid(f"a link message names an envelope of {size[:16]!r} bytes")
    start = end + 1
    return body[start : start + int(size)], body[start + int(size) :]


def up_queue(parent: str, lane: str) -> str:
    return f"lienthong.link.{parent}.up.{lane}"


def up_gate(parent: str) -> str:
    """The direct exchange to a node's up lanes: a child's link login may write there and
    to no other queue of the parent's broker (adapters/provision.py)."""
    return f"lienthong.link.{parent}.gate"


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
        business=Business(
            BusinessType(envelope.business),
            document_id=envelope.about,
            receivers_changed=tuple(ReceiverChange(r, added=False) for r in envelope.removed),
        )
        if envelope.kind == Kind.EDOC.value
        else None,
    )
