"""The bridges of a node, built from its ``[upstreams]`` (docs/bridge.md): one client per
credential, speaking the upstream's protocol."""

from __future__ import annotations

from pathlib import Path

from adapters.bridge import Bridge
from adapters.upstream_bkav import BkavClient
from adapters.upstream_langson import LangsonClient
from adapters.upstream_vdxp import VdxpClient
from exchange.config import NodeConfig
from exchange.node import Node
from exchange.upstream import UpstreamClient, UpstreamCredential, UpstreamSettings


def client_for(settings: UpstreamSettings, credential: UpstreamCredential) -> UpstreamClient:
    if settings.protocol == "vdxp":
        return VdxpClient(settings, credential)
    if settings.protocol == "bkav":
        return BkavClient(settings, credential)
    return LangsonClient(settings, credential)


def bridges_for(config: NodeConfig, node: Node, state_dir: Path | None) -> list[Bridge]:
    """A bridge per upstream; each keeps its agency list in ``state_dir`` for a restart."""
    return [
        Bridge(
            node,
            upstream,
            {c.name: client_for(upstream, c) for c in upstream.credentials},
            cache=state_dir / f"upstream-{upstream.name}-agencies.json" if state_dir else None,
        )
        for upstream in config.upstreams
    ]
