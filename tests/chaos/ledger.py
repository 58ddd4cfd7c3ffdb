"""The ledger check: what the senders were told against what the stores hold.

It reads, from every node's own store, each hosted agency's mailbox and, at each
sender's home node, the evidence log (its receipts: a ``delivered`` event names the
recipients it delivered to, a ``failed`` one the recipient and the reason). It proves:

- every package accepted is in exactly one mailbox per recipient, or has a failed
  receipt with a reason for that recipient;
- every sender holds a final receipt (delivered or failed) for every recipient;
- no mailbox holds a package twice (by message id, and by the digest of its bytes);
- nothing is in a mailbox that was not accepted.

Log entries are read incrementally, from where the last reading stopped, so the check can
be run again and again while the tree drains.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from exchange.evidence import Event, EventKind
from tests.chaos.load import Sent, Tree

PAGE = 5000


@dataclass
class Findings:
    accepted: int = 0  # packages the senders were told were accepted
    copies: int = 0  # (package, recipient) pairs owed
    in_mailbox: int = 0
    failed_with_reason: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)  # (message id, recipient)
    without_receipt: list[tuple[str, str]] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)  # "organ: message id / digest"
    not_accepted: list[str] = field(default_factory=list)  # "organ: message id"
    failures: Counter[str] = field(default_factory=Counter)  # reason → copies

    @property
    def settled(self) -> bool:
        return not (self.missing or self.without_receipt)

    @property
    def holds(self) -> bool:
        return self.settled and not (self.twice or self.not_accepted)

    def summary(self) -> str:
        lines = [
            f"ledger: {self.accepted} packages accepted, {self.copies} copies owed: "
            f"{self.in_mailbox} in their mailbox, {self.failed_with_reason} failed with a reason",
            f"  missing (neither delivered nor failed): {len(self.missing)}",
            f"  without a final receipt at the sender: {len(self.without_receipt)}",
            f"  held twice in a mailbox: {len(self.twice)}",
            f"  in a mailbox but never accepted: {len(self.not_accepted)}",
        ]
        lines += [f"  failed: {count} × {reason}" for reason, count in self.failures.items()]
        for name in ("missing", "without_receipt", "twice", "not_accepted"):
            items = getattr(self, name)
            if items:
                lines.append(f"  first {name}: {items[:5]}")
        return "\n".join(lines)


class Ledger:
    def __init__(self, stand: Tree) -> None:
        self.stand = stand
        self._cursor: dict[tuple[str, str], int] = {}  # (node, chain) → last seq read
        self._delivered: set[tuple[str, str]] = set()  # (message id, recipient)
        self._failed: dict[tuple[str, str], str] = {}  # (message id, recipient) → reason

    async def check(self, sent: Iterable[Sent]) -> Findings:
        packages = {s.message_id: s for s in sent}
        senders_homes = {self.stand.topology.node_of(s.sender) for s in packages.values()}
        mailboxes = await self._mailboxes()
        for node in senders_homes:
            await self._read_receipts(node)
        found = Findings(accepted=len(packages))
        for organ, entries in mailboxes.items():
            ids = Counter(e[0] for e in entries)
            digests = Counter(e[1] for e in entries)
            found.twice += [f"{organ}: {m}" for m, n in ids.items() if n > 1]
            found.twice += [f"{organ}: sha256 {d[:16]}" for d, n in digests.items() if n > 1]
            found.not_accepted += [f"{organ}: {m}" for m in ids if m not in packages]
        held = {(m, organ) for organ, entries in mailboxes.items() for m, _ in entries}
        for package in packages.values():
            for recipient in package.recipients:
                found.copies += 1
                pair = (package.message_id, recipient)
                reason = self._failed.get(pair)
                if pair in held:
                    found.in_mailbox += 1
                elif reason:
                    found.failed_with_reason += 1
                    found.failures[reason[:120]] += 1
                else:
                    found.missing.append(pair)
                if pair not in self._delivered and not reason:
                    found.without_receipt.append(pair)
        return found

    async def _mailboxes(self) -> dict[str, list[tuple[str, str]]]:
        boxes: dict[str, list[tuple[str, str]]] = {}
        for node in self.stand.nodes:
            hosted = [a.organ_id for a in self.stand.topology.agencies if a.home_node == node]
            store = self.stand.open_store(node)
            try:
                await store.migrate()
                for organ in hosted:
                    entries = await store.mailbox(organ, unfetched_only=False, limit=10**7)
                    boxes[organ] = [(e.message_id, e.digest) for e in entries]
            finally:
                await store.close()
        return boxes

    async def _read_receipts(self, node: str) -> None:
        store = self.stand.open_store(node)
        try:
            await store.migrate()
            for chain in await store.chain_heads():
                while True:
                    after = self._cursor.get((node, chain), 0)
                    entries = await store.log_entries(chain=chain, after=after, limit=PAGE)
                    for entry in entries:
                        self._take(entry.event)
                    if not entries:
                        break
                    self._cursor[(node, chain)] = entries[-1].seq
        finally:
            await store.close()

    def _take(self, event: Event) -> None:
        if event.message_id is None:
            return
        if event.kind is EventKind.DELIVERED:
            for recipient in event.detail.get("recipients", ()):
                self._delivered.add((event.message_id, recipient))
        elif event.kind is EventKind.FAILED and event.detail.get("reason") and event.party:
            self._failed[(event.message_id, event.party)] = str(event.detail["reason"])
