"""The ``[upstreams]`` table of a node file: the axes it bridges to as a client
(docs/bridge.md).

```toml
[upstreams.vdxp]
protocol = "vdxp"                  # vdxp (the national axis SDK) | bkav | langson
endpoint = "https://vdxp.example/vdxp"
policy = "quarantine"              # strict | legacy | quarantine: how its packages are judged
poll_every_s = 60                  # per credential, while nothing waits
agencies_every_s = 3600            # the agency list is fetched this often
deadline_s = 30                    # one call, connect to last byte
trace_organ = "000.00.00.H53"      # our TraceHeader toward it (absent: the bytes go as they are)

[[upstreams.vdxp.credentials]]     # one per system; each polled on its own schedule
name = "tayninh"
systemid = "000.00.00.H53"
secret_file = "secrets/vdxp-tayninh"   # the HMAC key (vdxp), token (bkav) or X-SecretKey
organs = ["000.00.00.H53", "000.20.31.H53"]  # our agencies it sends and fetches for
# langson only: username, password_file, application_code
```

Unknown keys are refused before this module reads the table (exchange/config_keys.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exchange.errors import ConfigurationError
from exchange.upstream import POLICIES, PROTOCOLS, UpstreamCredential, UpstreamSettings


def upstream_settings(
    table: object, source: str, base: Path, max_bytes: int
) -> tuple[UpstreamSettings, ...]:
    if table is None:
        return ()
    if not isinstance(table, Mapping) or not all(isinstance(v, Mapping) for v in table.values()):
        raise ConfigurationError(f"{source}: key 'upstreams': expected a table of tables")
    return tuple(
        _upstream(name, entry, f"{source}: key 'upstreams.{name}", base, max_bytes)
        for name, entry in table.items()
    )


def _text(entry: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where}.{key}': expected a non-empty string")
    return value


def _seconds(entry: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = entry.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(f"{where}.{key}': expected a positive number of seconds")
    return float(value)


def _upstream(
    name: str, entry: Mapping[str, Any], where: str, base: Path, max_bytes: int
) -> UpstreamSettings:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigurationError(f"{where}': an upstream's name is letters, digits, '-' and '_'")
    protocol = _text(entry, "protocol", where)
    if protocol not in PROTOCOLS:
        raise ConfigurationError(
            f"{where}.protocol': expected one of {', '.join(PROTOCOLS)}, found {protocol!r}"
        )
    policy = _text(entry, "policy", where, "quarantine")
    if policy not in POLICIES:
        raise ConfigurationError(
            f"{where}.policy': expected one of {', '.join(POLICIES)}, found {policy!r}"
        )
    endpoint = _text(entry, "endpoint", where)
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigurationError(f"{where}.endpoint': expected an http:// or https:// address")
    listed = entry.get("credentials")
    if (
        not isinstance(listed, list)
        or not listed
        or not all(isinstance(c, Mapping) for c in listed)
    ):
        raise ConfigurationError(f"{where}.credentials': expected one [[credentials]] or more")
    credentials = tuple(
        _credential(c, f"{where}.credentials[{i}]", base, protocol) for i, c in enumerate(listed)
    )
    if len({c.name for c in credentials}) != len(credentials):
        raise ConfigurationError(f"{where}.credentials': two credentials share a name")
    trace = entry.get("trace_organ")
    if trace is not None and not isinstance(trace, str):
        raise ConfigurationError(f"{where}.trace_organ': expected an OrganId")
    cap = entry.get("max_bytes", max_bytes)
    if not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0:
        raise ConfigurationError(f"{where}.max_bytes': expected a positive number of bytes")
    return UpstreamSettings(
        name=name,
        protocol=protocol,
        endpoint=endpoint.rstrip("/"),
        credentials=credentials,
        policy=policy,
        poll_every_s=_seconds(entry, "poll_every_s", where, 60.0),
        agencies_every_s=_seconds(entry, "agencies_every_s", where, 3600.0),
        deadline_s=_seconds(entry, "deadline_s", where, 30.0),
        backoff_ceiling_s=_seconds(entry, "backoff_ceiling_s", where, 600.0),
        max_bytes=cap,
        trace_organ=trace,
    )


def _read_secret(base: Path, value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}': expected a file path")
    path = (base / value).resolve()
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigurationError(f"{where}': cannot read {path}: {exc.strerror}") from exc
    if not secret:
        raise ConfigurationError(f"{where}': {path} is empty")
    return secret


def _credential(
    entry: Mapping[str, Any], where: str, base: Path, protocol: str
) -> UpstreamCredential:
    organs = entry.get("organs", [])
    if not isinstance(organs, list) or not all(isinstance(o, str) for o in organs):
        raise ConfigurationError(f"{where}.organs': expected a list of OrganIds")
    systemid = _text(entry, "systemid", where)
    username = password = application = None
    if protocol == "langson":
        username = _text(entry, "username", where)
        application = _text(entry, "application_code", where)
        password = _read_secret(base, entry.get("password_file"), f"{where}.password_file").decode()
    return UpstreamCredential(
        name=_text(entry, "name", where, systemid),
        systemid=systemid,
        secret=_read_secret(base, entry.get("secret_file"), f"{where}.secret_file"),
        organs=frozenset(organs),
        username=username,
        password=password,
        application_code=application,
    )
