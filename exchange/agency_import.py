"""Importing the national axis's agency list into directory entries (reference/edxml.md §6).

``getAgenciesList`` (and ``getAgenciesListQD20``) return ``data[]`` items with ``id``,
``code``, ``pid``, ``name`` and ``oldCode``. Each agency's home node is the deepest node
whose hosted subtree contains the agency's code, read right to left (exchange/organ.py):
a node that hosts ``000.00.31.H53`` receives every commune under district 31 of H53
unless a node of its own hosts that commune.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exchange.directory import AgencyEntry
from exchange.errors import ConfigurationError
from exchange.organ import OrganCode, parse_organ_id


@dataclass(frozen=True)
class Imported:
    entries: tuple[AgencyEntry, ...]
    redirects: Mapping[str, str]  # oldCode -> code
    skipped: tuple[str, ...]  # why items were left out, one line each


def home_for(code: OrganCode, hosts: Mapping[str, Sequence[OrganCode]]) -> str | None:
    """The node hosting the deepest subtree that contains ``code``."""
    best: tuple[int, str] | None = None
    for node, roots in hosts.items():
        for root in roots:
            if code.is_within(root) and (best is None or root.depth > best[0]):
                best = (root.depth, node)
    return best[1] if best else None


def import_agencies(
    items: Sequence[Mapping[str, Any]], hosts: Mapping[str, Sequence[str]]
) -> Imported:
    try:
        parsed_hosts = {
            node: [parse_organ_id(root) for root in roots] for node, roots in hosts.items()
        }
    except ValueError as exc:
        raise ConfigurationError(f"hosts: {exc}") from exc
    entries: dict[str, AgencyEntry] = {}
    redirects: dict[str, str] = {}
    skipped: list[str] = []
    for index, item in enumerate(items):
        raw = item.get("code")
        if not isinstance(raw, str) or not raw.strip():
            skipped.append(f"item {index} (id {item.get('id')!r}): no code")
            continue
        try:
            code = parse_organ_id(raw)
        except ValueError as exc:
            skipped.append(f"item {index}: {exc}")
            continue
        home = home_for(code, parsed_hosts)
        if home is None:
            skipped.append(f"{code.raw}: no node hosts its subtree")
            continue
        if code.raw in entries:
            skipped.append(f"{code.raw}: listed twice; the first is kept")
            continue
        entries[code.raw] = AgencyEntry(code.raw, name=item.get("name"), home_node=home)
        old = item.get("oldCode")
        if isinstance(old, str) and old.strip() and old.strip() != code.raw:
            redirects[old.strip()] = code.raw
    return Imported(tuple(entries.values()), redirects, tuple(skipped))
