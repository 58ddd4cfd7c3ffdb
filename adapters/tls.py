"""SSL contexts from the TLS tables of a node file (exchange/config_tls.py; docs/tls.md).

- AMQPS, client side: only the configured CA bundle is trusted (never the system store),
  TLS 1.2 at least, the node's certificate presented when it has one. The server's
  certificate must carry ``peer`` (a DNS name in its subjectAltName): for a link, the
  parent's node id, so a child only ever talks to the node it means to, whatever address
  the URL names.
- HTTPS, server side: the node's certificate; with ``client_ca``, every caller must
  present a certificate issued under it.

A file that is missing or does not parse is a ConfigurationError naming it, at start.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from exchange.config_tls import TlsClient, TlsServer
from exchange.errors import ConfigurationError


class _PeerContext(ssl.SSLContext):
    """A client context that checks the server's certificate against ``peer`` instead of
    the host it dialled. asyncio hands every TLS connection to ``wrap_bio``; aio-pika gives
    no other way to set the name a broker's certificate is checked against."""

    peer: str

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        kwargs["server_hostname"] = self.peer
        if len(args) > 3:  # (incoming, outgoing, server_side, server_hostname, session)
            args = args[:3] + args[4:]
        return super().wrap_bio(*args, **kwargs)


def _load(what: str, action: Any) -> None:
    try:
        action()
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigurationError(f"TLS: cannot load {what}: {exc}") from exc


def client_context(tls: TlsClient) -> ssl.SSLContext:
    """The context an AMQPS connection is opened with."""
    context: ssl.SSLContext = (
        _PeerContext(ssl.PROTOCOL_TLS_CLIENT)
        if tls.peer
        else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    )
    if isinstance(context, _PeerContext) and tls.peer:
        context.peer = tls.peer
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    _load(f"the CA bundle {tls.ca}", lambda: context.load_verify_locations(cafile=str(tls.ca)))
    if tls.cert is not None and tls.key is not None:
        cert, key = tls.cert, tls.key
        _load(
            f"the certificate {cert} with its key {key}",
            lambda: context.load_cert_chain(str(cert), str(key)),
        )
    return context


def server_context(tls: TlsServer) -> ssl.SSLContext:
    """The context the HTTP faces serve HTTPS with."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(
        f"the certificate {tls.cert} with its key {tls.key}",
        lambda: context.load_cert_chain(str(tls.cert), str(tls.key)),
    )
    if tls.client_ca is not None:
        client_ca = tls.client_ca
        context.verify_mode = ssl.CERT_REQUIRED
        _load(
            f"the client CA bundle {client_ca}",
            lambda: context.load_verify_locations(cafile=str(client_ca)),
        )
    return context


def certificate_name(path: Path) -> str:
    """The CN of a certificate's subject: with auth=external, the broker login it gives."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"TLS: cannot read the certificate {path}: {exc}") from exc
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ConfigurationError(f"TLS: the certificate {path} has no CN")
    return str(names[0].value)


def broker_login(urls: tuple[str, ...], tls: TlsClient | None) -> str | None:
    """The login RabbitMQ will know this connection by: with ``auth=external``, the CN of
    the certificate presented (the broker set to ``ssl_cert_login_from = common_name``);
    otherwise the URL's user. None when the URL names nobody (aio-pika then says guest)."""
    url = urlsplit(urls[0])
    if "external" in (v.lower() for k, v in parse_qsl(url.query) if k == "auth"):
        if tls is None or tls.cert is None:
            raise ConfigurationError(
                f"{_safe(urls[0])}: auth=external needs a client certificate (tls.cert)"
            )
        return certificate_name(tls.cert)
    return unquote(url.username) if url.username else None


def _safe(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.hostname or "").geturl() if parts.password else url
