"""The ``[http]`` table of a node file: where the REST API and the national-axis SDK facade
listen, and who may call them.

```toml
[http]
listen = "127.0.0.1:8480"          # host:port; no [http] table, no HTTP faces
header_timeout_s = 15              # a connection sends its request's headers within this
body_timeout_s = 60                # and a body within this, plus a second per 64 KiB
refusal_hold_s = 1                 # a caller refused again and again waits this for its answer

[http.tls]                         # HTTPS (exchange/config_tls.py): cert, key, client_ca
cert = "tls/http.pem"
key = "tls/http.key"

[http.clients.qlvb-tayninh]        # one table per calling system
token_sha256 = "9f86d0…"           # REST: the SHA-256 (hex) of its bearer token, never the token
systemid = "000.00.00.H53"         # SDK facade: its XroadVnpt-systemid …
hmac_secret_file = "secrets/qlvb-tayninh"  # … and the file holding the shared HMAC secret
organs = ["000.00.00.H53", "000.00.11.H53"]  # may send as and read for these (absent: none)
source = "amqp"                    # the source, so the verification policy, of what it sends
rate_per_s = 20                    # requests a second, on average (bursts of twice that)

[http.operators.ops-tayninh]       # operator credentials: never an agency's
token_sha256 = "…"
role = "operator"                  # or "viewer": sees everything, acts on nothing

[http.links.commune-21-31-h53]     # a child node, by its node id: large-package transfers
token_sha256 = "…"                 # only /v1/links/ (docs/large-packages.md, "Transfers")
```

Unknown keys are refused before this module reads the table (exchange/config_keys.py).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange.config import Credential
from exchange.config_tls import TlsServer, tls_server
from exchange.errors import ConfigurationError

_HEX64 = re.compile(r"[0-9a-f]{64}")
_LISTEN = re.compile(r"(?P<host>[^:\s]+):(?P<port>\d{1,5})")


@dataclass(frozen=True)
class HttpClient:
    """One system that calls the node over HTTP, and what it may do."""

    name: str
    credential: Credential  # source and OrganIds: the same rules as an AMQP login
    token_sha256: str | None = None
    systemid: str | None = None
    hmac_secret: bytes | None = field(default=None, repr=False)  # never logged
    rate_per_s: float = 20.0


ROLES = ("viewer", "operator")


@dataclass(frozen=True)
class HttpOperator:
    name: str
    token_sha256: str
    role: str = "operator"  # "viewer": GET only

    @property
    def may_act(self) -> bool:
        return self.role == "operator"


@dataclass(frozen=True)
class HttpLink:
    """A child node that pulls large packages from this node and pushes them to it. Its
    token opens ``/v1/links/`` and nothing else; no agency's or operator's token opens that."""

    child: str  # the child's node id
    token_sha256: str


@dataclass(frozen=True)
class HttpSettings:
    host: str
    port: int
    clients: Mapping[str, HttpClient] = field(default_factory=dict)
    operators: Mapping[str, HttpOperator] = field(default_factory=dict)
    links: Mapping[str, HttpLink] = field(default_factory=dict)
    # slowloris: headers dribbled, a body that never ends. A connection that has not sent a
    # whole request head within header_timeout_s (also: idle between requests) is closed; a
    # body must arrive within body_timeout_s plus a second per 64 KiB it brings (a floor
    # rate), else 408 (http.request_timeout)
    header_timeout_s: float = 15.0
    body_timeout_s: float = 60.0
    # past 10 unauthenticated answers to one address (5 a second), each further one is held
    # this long; a 429 is held until the caller may call again, at most this (http_brake.py)
    refusal_hold_s: float = 1.0
    tls: TlsServer | None = None  # HTTPS, client certificates optional ([http.tls])


def http_settings(
    table: Mapping[str, Any] | None, source: str, base: Path, sources: Collection[str]
) -> HttpSettings | None:
    if table is None:
        return None
    where = f"{source}: key 'http"
    listen = table.get("listen")
    found = _LISTEN.fullmatch(listen) if isinstance(listen, str) else None
    if found is None or not 0 < int(found["port"]) < 65536:
        raise ConfigurationError(f"{where}.listen': expected host:port, found {listen!r}")
    clients = {
        name: _client(name, entry, f"{where}.clients.{name}", base, sources)
        for name, entry in _tables(table.get("clients", {}), f"{where}.clients").items()
    }
    operators = {
        name: _operator(name, entry, f"{where}.operators.{name}")
        for name, entry in _tables(table.get("operators", {}), f"{where}.operators").items()
    }
    links = {
        child: _link(child, entry, f"{where}.links.{child}")
        for child, entry in _tables(table.get("links", {}), f"{where}.links").items()
    }
    tokens = [c.token_sha256 for c in clients.values() if c.token_sha256]
    tokens += [o.token_sha256 for o in operators.values()]
    tokens += [link.token_sha256 for link in links.values()]
    if len(tokens) != len(set(tokens)):
        raise ConfigurationError(f"{where}': two credentials share one token")
    timeouts = {}
    for key in ("header_timeout_s", "body_timeout_s"):
        value = table.get(key, getattr(HttpSettings, key))
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ConfigurationError(f"{where}.{key}': expected a positive number of seconds")
        timeouts[key] = float(value)
    hold = table.get("refusal_hold_s", HttpSettings.refusal_hold_s)
    if not isinstance(hold, int | float) or isinstance(hold, bool) or not 0 <= hold <= 60:
        raise ConfigurationError(f"{where}.refusal_hold_s': expected seconds from 0 to 60")
    timeouts["refusal_hold_s"] = float(hold)
    return HttpSettings(
        found["host"],
        int(found["port"]),
        clients,
        operators,
        links,
        **timeouts,
        tls=tls_server(table.get("tls"), f"{where}.tls", base),
    )


def _tables(value: object, where: str) -> Mapping[str, Mapping[str, Any]]:
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise ConfigurationError(f"{where}': expected a table of tables")
    return value


def _token(entry: Mapping[str, Any], where: str, *, required: bool) -> str | None:
    token = entry.get("token_sha256")
    if token is None and not required:
        return None
    if not isinstance(token, str) or not _HEX64.fullmatch(token):
        raise ConfigurationError(
            f"{where}.token_sha256': expected the SHA-256 of the token, 64 lowercase hex "
            "digits (`printf %s TOKEN | sha256sum`)"
        )
    return token


def _operator(name: str, entry: Mapping[str, Any], where: str) -> HttpOperator:
    role = entry.get("role", "operator")
    if role not in ROLES:
        raise ConfigurationError(
            f"{where}.role': expected one of {', '.join(ROLES)}, found {role!r}"
        )
    return HttpOperator(name, _token(entry, where, required=True) or "", role)


def _link(child: str, entry: Mapping[str, Any], where: str) -> HttpLink:
    return HttpLink(child, _token(entry, where, required=True) or "")


def _client(
    name: str, entry: Mapping[str, Any], where: str, base: Path, sources: Collection[str]
) -> HttpClient:
    organs = entry.get("organs", [])
    if not isinstance(organs, list) or not all(isinstance(o, str) for o in organs):
        raise ConfigurationError(f"{where}.organs': expected a list of OrganIds")
    cred_source = entry.get("source", "amqp")
    if not isinstance(cred_source, str) or (cred_source != "amqp" and cred_source not in sources):
        raise ConfigurationError(
            f"{where}.source': expected 'amqp' or a name from [sources], found {cred_source!r}"
        )
    rate = entry.get("rate_per_s", 20.0)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or rate <= 0:
        raise ConfigurationError(f"{where}.rate_per_s': expected a positive number")
    systemid, secret_file = entry.get("systemid"), entry.get("hmac_secret_file")
    if (systemid is None) != (secret_file is None):
        raise ConfigurationError(
            f"{where}': the SDK facade needs both systemid and hmac_secret_file"
        )
    secret = None
    if secret_file is not None:
        path = (base / str(secret_file)).resolve()
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigurationError(
                f"{where}.hmac_secret_file': cannot read {path}: {exc.strerror}"
            ) from exc
        if len(secret) < 16:
            raise ConfigurationError(
                f"{where}.hmac_secret_file': the secret is shorter than 16 bytes"
            )
    token = _token(entry, where, required=False)
    if token is None and systemid is None:
        raise ConfigurationError(f"{where}': give token_sha256 (REST), systemid (SDK), or both")
    return HttpClient(
        name=name,
        credential=Credential(source=cred_source, organs=frozenset(organs)),
        token_sha256=token,
        systemid=str(systemid) if systemid is not None else None,
        hmac_secret=secret,
        rate_per_s=float(rate),
    )
