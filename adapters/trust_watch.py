"""What a node trusts and signs with, taken up again when its files change: no restart.

Every few seconds (and at once on SIGHUP) the node looks at the files it trusts and signs
with. When one changed:

- the CA bundle, a CRL, the directory file: admission starts new workers, which read them
  (an agency certificate added by a directory update, one revoked by a CRL);
- the node certificates (``trust.node_certs``): the pinned keys of the other nodes (a
  neighbour that rotated its key);
- the node key, or its own certificate: the key this node signs with from now on;
- a TLS certificate, key or CA: loaded into the live SSL contexts, which new
  connections and handshakes use (the connections already open keep theirs).

A file that does not load is logged and the node keeps what it had, until the next change
(docs/operations.md, "Rotating keys and certificates").
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import structlog

from adapters.config_files import load_node_key, load_peer_keys, load_receipt_signer
from exchange.config import NodeConfig
from exchange.config_tls import TlsClient, TlsServer
from exchange.errors import ConfigurationError
from exchange.node import Node
from exchange.receipt import receipt_issuer

log = structlog.get_logger("lienthong.trust")

Stamp = dict[Path, tuple[int, int] | None]


def _stamp(paths: Iterable[Path]) -> Stamp:
    stamps: Stamp = {}
    for path in paths:
        try:
            st = path.stat()
            stamps[path] = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamps[path] = None
    return stamps


class TrustWatch:
    def __init__(
        self,
        config: NodeConfig,
        node: Node,
        reload_admission: Callable[[], Awaitable[None]],
        contexts: Iterable[tuple[TlsClient | TlsServer, ssl.SSLContext]] = (),
        every_s: float = 5.0,
    ) -> None:
        self.config = config
        self.node = node
        self.reload_admission = reload_admission
        self.contexts = list(contexts)
        self.every_s = every_s
        self.poke = asyncio.Event()  # set by SIGHUP: look now
        self._seen = self._look()

    def _admission_files(self) -> list[Path]:
        trust = self.config.trust
        return [trust.ca, trust.directory, *trust.crls]

    def _node_cert_files(self) -> list[Path]:
        return sorted(self.config.trust.node_certs.glob("*.pem"))

    def _tls_files(self) -> list[Path]:
        found: list[Path] = []
        for tls, _ in self.contexts:
            if isinstance(tls, TlsClient):
                found += [tls.ca, *(p for p in (tls.cert, tls.key) if p is not None)]
            else:
                found += [tls.cert, tls.key, *([tls.client_ca] if tls.client_ca else [])]
        return found

    def _look(self) -> dict[str, Stamp]:
        return {
            "admission": _stamp(self._admission_files()),
            "node_certs": _stamp(self._node_cert_files()),
            "node_key": _stamp([self.config.trust.node_key]),
            "tls": _stamp(self._tls_files()),
        }

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.every_s):
                    await self.poke.wait()
            except TimeoutError:
                pass
            self.poke.clear()
            await self.check()

    async def check(self) -> list[str]:
        """Take up whatever changed since the last look; what was taken up, by name."""
        now = self._look()
        changed = [part for part, stamp in now.items() if stamp != self._seen.get(part)]
        done: list[str] = []
        for part in changed:
            try:
                await self._take_up(part)
            except (ConfigurationError, OSError, ssl.SSLError, ValueError) as exc:
                log.warning(  # the node keeps what it had; the operator must look
                    "trust.reload_failed", node=self.config.node_id, part=part, error=str(exc)
                )
                now[part] = self._seen.get(part, {})  # tried again at the next change
                continue
            done.append(part)
        self._seen = now
        if done:
            log.info("trust.reloaded", node=self.config.node_id, parts=done)
        return done

    async def _take_up(self, part: str) -> None:
        config = self.config
        if part == "admission":
            await self.reload_admission()
        elif part == "node_certs":
            self.node.use_peer_keys(await asyncio.to_thread(load_peer_keys, config))
            await self._take_up("node_key")  # its own certificate may be among them
        elif part == "node_key":
            key = await asyncio.to_thread(load_node_key, config)
            signer = await asyncio.to_thread(load_receipt_signer, config)
            self.node.use_key(key, receipt_issuer(signer))
        elif part == "tls":
            for tls, context in self.contexts:
                if isinstance(tls, TlsClient):
                    context.load_verify_locations(cafile=str(tls.ca))
                    if tls.cert is not None and tls.key is not None:
                        context.load_cert_chain(str(tls.cert), str(tls.key))
                else:
                    context.load_cert_chain(str(tls.cert), str(tls.key))
                    if tls.client_ca is not None:
                        context.load_verify_locations(cafile=str(tls.client_ca))
