"""Upstream axes: the national axis (VDXP) and provincial axes (LGSPs) a node reaches as a
client, besides its RabbitMQ parent (docs/bridge.md). Pure parts only: what an upstream
is, what a client of one does, and when to poll next. adapters/upstream_*.py speak each
protocol; adapters/bridge.py moves packages across.

Routing treats an upstream like a link to a child: it is a leaf of the node tree named
``upstream:<name>`` under the node that bridges it, and the agencies its agency list names
are homed there (exchange/topology.py).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from exchange.topology import Topology

UPSTREAM_PREFIX = "upstream:"
PROTOCOLS = ("vdxp", "bkav", "langson")
POLICIES = ("strict", "legacy", "quarantine")
KINDS = ("edoc", "status")


def upstream_node(name: str) -> str:
    """The node-tree name of an upstream: a leaf under the node that bridges it."""
    return f"{UPSTREAM_PREFIX}{name}"


def is_upstream(node: str) -> bool:
    return node.startswith(UPSTREAM_PREFIX)


def upstream_name(node: str) -> str:
    return node[len(UPSTREAM_PREFIX) :]


@dataclass(frozen=True)
class UpstreamCredential:
    """One system's credentials at an upstream, and the agencies it polls for. Each is
    polled on its own schedule. Which fields a protocol needs: vdxp ``systemid`` and
    ``secret`` (the HMAC key); bkav ``systemid`` (its ``organid``) and ``secret`` (its
    token); langson ``username``, ``password``, ``application_code``, ``systemid`` and
    ``secret`` (X-SystemId, X-SecretKey)."""

    name: str
    systemid: str
    secret: bytes = field(repr=False)
    organs: frozenset[str] = frozenset()  # our agencies this system sends and fetches for
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    application_code: str | None = None


@dataclass(frozen=True)
class UpstreamSettings:
    name: str
    protocol: str  # one of PROTOCOLS
    endpoint: str  # the base address the protocol's paths are relative to
    credentials: tuple[UpstreamCredential, ...]
    policy: str = "quarantine"  # one of POLICIES: what packages fetched from it are judged by
    poll_every_s: float = 60.0  # per credential, when the last poll found nothing
    agencies_every_s: float = 3600.0  # the agency list is fetched this often
    deadline_s: float = 30.0  # one call to the upstream, connect to last byte
    backoff_ceiling_s: float = 600.0  # polls of an upstream that fails wait at most this
    max_bytes: int = 64 * 1024 * 1024  # a package fetched from it is refused past this
    trace_organ: str | None = None  # the OrganId our TraceHeader carries toward it (None: none)

    @property
    def node(self) -> str:
        return upstream_node(self.name)

    @property
    def source(self) -> str:
        """The source (so the verification policy) its packages are admitted under."""
        return upstream_node(self.name)

    def credential_for(self, sender: str) -> UpstreamCredential | None:
        """The system that sends for ``sender`` (the first that lists it, else the first)."""
        for credential in self.credentials:
            if sender in credential.organs:
                return credential
        return self.credentials[0] if self.credentials else None


@dataclass(frozen=True)
class PendingItem:
    """One item an upstream holds for us: its transport id, never the edXML DocumentId."""

    doc_id: str
    kind: str  # "edoc" | "status"
    sender: str | None = None
    recipient: str | None = None


@dataclass(frozen=True)
class UpstreamAgency:
    organ_id: str
    name: str = ""
    old_codes: tuple[str, ...] = ()  # former codes that now lead to it (``oldCode``)
    parent: str | None = None
    mail: str = ""


class UpstreamClient(Protocol):
    """One credential's session with one upstream. Every call raises
    ``UpstreamUnavailable`` (down, slow past the deadline, 5xx), ``UpstreamGarbled``
    (answered, but not in the protocol's shape), ``UpstreamUnauthorised`` (credentials
    refused) or ``UpstreamRefused`` (a definite no, with the upstream's reason)."""

    async def send(self, data: bytes, *, kind: str, sender: str, recipients: Sequence[str]) -> str:
        """Hand over one package; the upstream's transport id for it."""
        ...

    async def pending(self, kind: str) -> list[PendingItem]:
        """What waits for this credential's agencies, of one kind."""
        ...

    async def fetch(self, doc_id: str) -> bytes:
        """The edXML bytes of one pending item (attachments inside, as the upstream keeps
        them)."""
        ...

    async def confirm(self, doc_id: str, *, ok: bool, reason: str | None = None) -> None:
        """Tell the upstream the item is taken (``done``) or refused (``fail``, with why)."""
        ...

    async def agencies(self) -> list[UpstreamAgency]:
        """The agencies reachable through the upstream."""
        ...

    async def close(self) -> None: ...


@dataclass
class PollSchedule:
    """When one credential polls next: ``every_s`` while it answers, doubling from there
    on failures up to ``ceiling_s``, each wait jittered by ±``jitter`` so that nodes
    restarted together do not poll together; straight away again while it had work."""

    every_s: float
    ceiling_s: float
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def after_success(self, found: int) -> float:
        self.failures = 0
        return 0.0 if found else self._jittered(self.every_s)

    def after_failure(self) -> float:
        self.failures += 1
        wait = min(self.ceiling_s, self.every_s * 2 ** min(self.failures, 30))
        return self._jittered(wait)

    def _jittered(self, wait: float) -> float:
        return max(0.0, wait * (1 + self.rng.uniform(-self.jitter, self.jitter)))


def merge_agencies(
    homes: Mapping[str, str],
    redirects: Mapping[str, str],
    upstream: str,
    agencies: Sequence[UpstreamAgency],
) -> tuple[dict[str, str], dict[str, str]]:
    """The node tree's homes and redirects with an upstream's agencies added: an agency a
    node of ours already hosts stays ours (and so does one another upstream brought, first
    come), and each ``oldCode`` leads to its agency unless it is itself a current code."""
    node = upstream_node(upstream)
    merged_homes = dict(homes)
    merged_redirects = dict(redirects)
    for agency in agencies:
        if agency.organ_id and agency.organ_id not in merged_homes:
            merged_homes[agency.organ_id] = node
    for agency in agencies:
        if merged_homes.get(agency.organ_id) != node:
            continue
        for old in agency.old_codes:
            if old and old != agency.organ_id and old not in merged_homes:
                merged_redirects.setdefault(old, agency.organ_id)
    return merged_homes, merged_redirects


def with_upstreams(
    topology: Topology | None,
    here: str,
    parent: str | None,
    hosted: frozenset[str],
    agencies: Mapping[str, Sequence[UpstreamAgency]],
) -> Topology | None:
    """The node tree as routing sees it at ``here``: each upstream a leaf under this node,
    homing the agencies of its list that no node of ours hosts (first upstream first)."""
    if not agencies:
        return topology
    if topology is None:  # no tree: this node, its parent, what it hosts
        parents: dict[str, str | None] = {here: parent}
        if parent is not None:
            parents[parent] = None
        base = Topology(parents, dict.fromkeys(hosted, here))
    else:
        base = topology
    parents = {**base.parents, **{upstream_node(name): here for name in agencies}}
    homes, redirects = dict(base.homes), dict(base.redirects)
    for name, listed in agencies.items():
        homes, redirects = merge_agencies(homes, redirects, name, listed)
    return Topology(parents, homes, redirects)
