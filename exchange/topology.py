"""The node tree and where each recipient's package goes next (DESIGN §3, issue 4).

Pure decisions. For each recipient the next hop is this node (its mailbox), the child
whose subtree hosts the recipient, or the parent; recipients are grouped by next hop, so
ONE copy crosses each link. A node receiving a package from a link serves only part of
the recipient list: from its parent, the recipients in its own subtree; from a child, the
recipients outside that child's subtree (the child has served its own). Agencies renamed
in a merger are followed through their ``oldCode`` redirects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exchange.errors import ConfigurationError


@dataclass(frozen=True)
class RoutePlan:
    mailboxes: tuple[str, ...] = ()  # recipients hosted here
    links: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # next node -> recipients
    unknown: tuple[str, ...] = ()  # no node hosts them, and there is nowhere up to ask
    redirected: Mapping[str, str] = field(default_factory=dict)  # old code -> current code


@dataclass(frozen=True)
class Topology:
    parents: Mapping[str, str | None]  # node -> its parent (None at the root)
    homes: Mapping[str, str]  # OrganId -> the node hosting its mailbox
    redirects: Mapping[str, str] = field(default_factory=dict)  # oldCode -> current OrganId

    def __post_init__(self) -> None:
        for node, parent in self.parents.items():
            if parent is not None and parent not in self.parents:
                raise ConfigurationError(
                    f"node {node}: its parent {parent!r} is not in the node tree"
                )
            self.ancestry(node)  # refuses cycles
        for organ, home in self.homes.items():
            if home not in self.parents:
                raise ConfigurationError(
                    f"agency {organ}: its home node {home!r} is not in the node tree"
                )

    def ancestry(self, node: str) -> tuple[str, ...]:
        """The node, its parent, … up to the root."""
        chain = [node]
        while (parent := self.parents.get(chain[-1])) is not None:
            if parent in chain:
                raise ConfigurationError(f"the node tree has a cycle through {parent}")
            chain.append(parent)
        return tuple(chain)

    def in_subtree(self, node: str, root: str) -> bool:
        return root in self.ancestry(node)

    def current_code(self, organ: str) -> str:
        seen = {organ}
        while organ in self.redirects:
            organ = self.redirects[organ]
            if organ in seen:
                raise ConfigurationError(f"oldCode redirects loop through {organ}")
            seen.add(organ)
        return organ

    def next_hop(self, here: str, organ: str) -> str | None:
        """This node, a child, the parent; None when nobody hosts it and there is no parent."""
        home = self.homes.get(organ)
        if home is None:
            return self.parents.get(here)
        if home == here:
            return here
        path = self.ancestry(home)
        if here in path:
            return path[path.index(here) - 1]  # the child on the way down
        return self.parents.get(here)

    def toward(self, here: str, node: str) -> str | None:
        """The neighbour of ``here`` on the way to ``node`` (None: it is ``here``, or not in
        the tree): a child when ``node`` lies below, the parent otherwise."""
        if node == here or node not in self.parents:
            return None
        path = self.ancestry(node)
        if here in path:
            return path[path.index(here) - 1]
        return self.parents.get(here)

    def path(self, a: str, b: str) -> frozenset[str]:
        """The nodes on the way between nodes ``a`` and ``b``, both included."""
        up_a, up_b = self.ancestry(a), self.ancestry(b)
        common = next((n for n in up_a if n in up_b), None)
        if common is None:
            return frozenset(up_a) | frozenset(up_b)
        return frozenset(up_a[: up_a.index(common) + 1]) | frozenset(up_b[: up_b.index(common)])

    def serves(self, here: str, organ: str, arrived_from: str | None) -> bool:
        """Is ``organ`` this node's business, given the link the package came by?"""
        if arrived_from is None:  # from an agency: every recipient
            return True
        home = self.homes.get(organ)
        if arrived_from == self.parents.get(here):  # from above: only our subtree
            return home is not None and self.in_subtree(home, here)
        # from a child: only what lies outside that child's subtree
        return home is None or not self.in_subtree(home, arrived_from)

    def plan(
        self, here: str, recipients: Iterable[str], arrived_from: str | None = None
    ) -> RoutePlan:
        mailboxes: list[str] = []
        links: dict[str, list[str]] = {}
        unknown: list[str] = []
        redirected: dict[str, str] = {}
        for named in dict.fromkeys(recipients):
            organ = self.current_code(named)
            if organ != named:
                redirected[named] = organ
            if not self.serves(here, organ, arrived_from):
                continue
            hop = self.next_hop(here, organ)
            if hop == here:
                mailboxes.append(organ)
            elif hop is None or (hop == arrived_from and organ not in self.homes):
                unknown.append(named)
            else:
                links.setdefault(hop, []).append(organ)
        return RoutePlan(
            tuple(dict.fromkeys(mailboxes)),
            {node: tuple(dict.fromkeys(organs)) for node, organs in links.items()},
            tuple(unknown),
            redirected,
        )
