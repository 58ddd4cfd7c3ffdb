"""The [http] table: who may call the node over HTTP, read once, with one clear message
for each mistake."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from exchange.config import node_config_from_mapping
from exchange.errors import ConfigurationError
from tests.unit.test_config import GOOD

HEX = "a" * 64


def load(extra: str, base: Path = Path("/etc/lienthong")):  # type: ignore[no-untyped-def]
    return node_config_from_mapping(tomllib.loads(GOOD + extra), "node.toml", base)


def test_without_http_there_is_no_http_face() -> None:
    assert load("").http is None


def test_clients_and_operators_are_read(tmp_path: Path) -> None:
    (tmp_path / "sdk.secret").write_text("a-shared-secret-of-32-bytes-long\n")
    config = load(
        f"""
[http]
listen = "0.0.0.0:8480"
[http.clients.hosted]
token_sha256 = "{HEX}"
systemid = "000.00.00.H53"
hmac_secret_file = "sdk.secret"
organs = ["000.00.00.H53", "000.00.11.H53"]
rate_per_s = 5
[http.operators.ops]
token_sha256 = "{"b" * 64}"
""",
        tmp_path,
    )
    http = config.http
    assert (http.host, http.port) == ("0.0.0.0", 8480)
    client = http.clients["hosted"]
    assert client.credential.organs == frozenset({"000.00.00.H53", "000.00.11.H53"})
    assert (client.systemid, client.hmac_secret, client.rate_per_s) == (
        "000.00.00.H53",
        b"a-shared-secret-of-32-bytes-long",
        5.0,
    )
    assert "secret" not in repr(client).replace("hmac_secret", "")  # never printed
    assert http.operators["ops"].token_sha256 == "b" * 64


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[http]\nlisten = "8480"', "key 'http.listen': expected host:port, found '8480'"),
        (
            f'[http]\nlisten = "h:1"\n[http.clients.x]\ntoken_sha256 = "{"A" * 64}"',
            "key 'http.clients.x.token_sha256': expected the SHA-256 of the token",
        ),
        (
            '[http]\nlisten = "h:1"\n[http.clients.x]\norgans = ["a"]',
            "key 'http.clients.x': give token_sha256 (REST), systemid (SDK), or both",
        ),
        (
            f'[http]\nlisten = "h:1"\n[http.clients.x]\ntoken_sha256 = "{HEX}"\nsystemid = "s"',
            "key 'http.clients.x': the SDK facade needs both systemid and hmac_secret_file",
        ),
        (
            f'[http]\nlisten = "h:1"\n[http.clients.x]\ntoken_sha256 = "{HEX}"\n'
            f'[http.operators.y]\ntoken_sha256 = "{HEX}"',
            "key 'http': two credentials share one token",
        ),
        (
            f'[http]\nlisten = "h:1"\n[http.clients.x]\ntoken_sha256 = "{HEX}"\nrate = 3',
            "unknown key 'http.clients.x.rate'; did you mean 'rate_per_s'?",
        ),
    ],
)
def test_each_mistake_names_its_key(extra: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load("\n" + extra + "\n")


def test_child_links_are_read_and_share_no_token() -> None:
    config = load(
        f"""
[http]
listen = "127.0.0.1:8480"
[http.links.commune-21-31-h53]
token_sha256 = "{HEX}"
"""
    )
    link = config.http.links["commune-21-31-h53"]
    assert (link.child, link.token_sha256) == ("commune-21-31-h53", HEX)
    assert load('[http]\nlisten = "h:1"').http.links == {}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[http]\nlisten = "h:1"\n[http.links.c]\nrole = "operator"',
            "unknown key 'http.links.c.role'; it is a key of [http.operators.<name>]",
        ),
        (
            '[http]\nlisten = "h:1"\n[http.links.c]\ntoken_sha256 = "abc"',
            "key 'http.links.c.token_sha256': expected the SHA-256 of the token",
        ),
        ('[http]\nlisten = "h:1"\nlinks = 3', "key 'http.links': expected a table of tables"),
        (
            f'[http]\nlisten = "h:1"\n[http.links.c]\ntoken_sha256 = "{HEX}"\n'
            f'[http.operators.y]\ntoken_sha256 = "{HEX}"',
            "key 'http': two credentials share one token",
        ),
    ],
)
def test_each_link_mistake_names_its_key(extra: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        load("\n" + extra + "\n")
