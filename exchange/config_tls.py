"""The TLS tables of a node file: AMQPS to the node's broker and to its parent's, HTTPS for
its HTTP faces (docs/tls.md).

```toml
[rabbitmq.tls]                     # with url = "amqps://…": the node's own broker
ca = "tls/ca.pem"                  # the CA bundle the broker's certificate must chain to
cert = "tls/province-h53.pem"      # this node's client certificate (its CN: the node id)
key = "tls/province-h53.key"
# peer = "mq1.tayninh.gov.vn"      # the name the broker's certificate must carry
                                   # (default: the host of the URL)

[link.tls]                         # with parent_url = "amqps://…?auth=external"
ca = "tls/ca.pem"
cert = "tls/province-h53.pem"
key = "tls/province-h53.key"
# peer = "central"                 # default: node.parent; the parent's broker must
                                   # present a certificate that names its node

[link]
verify_login = true                # a parent: a child's packages must be published under
                                   # the login of the node whose hop record they carry

[http.tls]                         # the HTTP faces over HTTPS
cert = "tls/province-h53-http.pem"
key = "tls/province-h53-http.key"
# client_ca = "tls/ca.pem"         # set: every caller presents a certificate from it
```

Only the paths are judged here; the files are read by adapters/tls.py when the node starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.errors import ConfigurationError


@dataclass(frozen=True)
class TlsClient:
    """How a node opens an AMQPS connection: whom it trusts, what it presents, and the
    name the server's certificate must carry (None: the URL's host)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    peer: str | None = None


@dataclass(frozen=True)
class TlsServer:
    """How the HTTP faces serve HTTPS; ``client_ca`` set: callers present a certificate."""

    cert: Path
    key: Path
    client_ca: Path | None = None


def _path(entry: Mapping[str, Any], key: str, where: str, base: Path) -> Path | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where}.{key}': expected a file path, found {value!r}")
    path = Path(value)
    return path if path.is_absolute() else base / path


def _table(value: object, where: str, known: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where}': expected a table")
    unknown = set(value) - known
    if unknown:
        raise ConfigurationError(
            f"{where}': unknown key(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(sorted(known))}"
        )
    return value


def tls_client(
    value: object, where: str, base: Path, *, default_peer: str | None = None
) -> TlsClient | None:
    """``[rabbitmq.tls]`` or ``[link.tls]``; ``where`` is "file: key 'rabbitmq.tls"."""
    if value is None:
        return None
    entry = _table(value, where, {"ca", "cert", "key", "peer"})
    ca = _path(entry, "ca", where, base)
    if ca is None:
        raise ConfigurationError(f"{where}.ca': expected the CA bundle to trust, found nothing")
    cert, key = _path(entry, "cert", where, base), _path(entry, "key", where, base)
    if (cert is None) != (key is None):
        raise ConfigurationError(f"{where}': a client certificate needs both cert and key")
    peer = entry.get("peer", default_peer)
    if peer is not None and (not isinstance(peer, str) or not peer):
        raise ConfigurationError(f"{where}.peer': expected a name, found {peer!r}")
    return TlsClient(ca, cert, key, peer)


def tls_server(value: object, where: str, base: Path) -> TlsServer | None:
    """``[http.tls]``."""
    if value is None:
        return None
    entry = _table(value, where, {"cert", "key", "client_ca"})
    cert, key = _path(entry, "cert", where, base), _path(entry, "key", where, base)
    if cert is None or key is None:
        raise ConfigurationError(f"{where}': HTTPS needs both cert and key")
    return TlsServer(cert, key, _path(entry, "client_ca", where, base))


def check_tls_urls(urls: tuple[str, ...], tls: TlsClient | None, source: str, table: str) -> None:
    """An amqps:// URL needs its TLS table, and a TLS table needs amqps:// URLs: a node
    that was meant to encrypt never falls back to plain AMQP without a word."""
    schemes = {u.split("://", 1)[0] for u in urls}
    if tls is not None and "amqp" in schemes:
        raise ConfigurationError(
            f"{source}: key '{table}.tls': set, but a URL of [{table}] is amqp://, not amqps://"
        )
    if tls is None and "amqps" in schemes:
        raise ConfigurationError(
            f"{source}: key '{table}.tls': an amqps:// URL needs it (the CA to trust, and "
            "this node's certificate)"
        )
