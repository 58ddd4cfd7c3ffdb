"""What the nodes log: one ``package`` line per package per node, with the fields an
operator searches by, and never a token, a key or a package body."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient

import exchange.node
from adapters import logs
from tests.pki import DevPki
from tests.unit.memory_tree import COMMUNE, G14, H41, Tree, document
from tests.unit.test_http_api import TOKENS, bearer, serve

FIELDS = {"message_id", "document_id", "sender", "recipients", "outcome", "code", "ms", "node"}


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Everything logged meanwhile, rendered as in production off a terminal."""
    out = io.StringIO()
    before = structlog.get_config()
    structlog.configure(
        processors=logs.processors(structlog.processors.JSONRenderer()),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,  # this buffer is for this test only
    )
    # a logger cached by an earlier configuration would write elsewhere: a fresh one
    monkeypatch.setattr(exchange.node, "log", structlog.get_logger("lienthong.node"))
    yield out
    structlog.configure(**before)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


async def test_a_package_sent_over_http_is_logged_once_per_node_and_without_token_or_body(
    tree: Tree, pki: DevPki, captured: io.StringIO
) -> None:
    data = document(pki, COMMUNE, G14, H41)
    signature = re.search(rb"SignatureValue>([^<]{40})", data)
    assert signature is not None
    async with TestClient(serve(tree.nodes["commune-21-31-h53"])) as commune:
        sent = await commune.post("/v1/packages", data=data, headers=bearer("commune"))
        assert sent.status == 201, await sent.text()
        message_id = (await sent.json())["message_id"]
        refused = await commune.post(
            "/v1/packages", data=data.replace(b"125/UBND", b"126/UBND"), headers=bearer("commune")
        )
        assert refused.status >= 400
    await tree.wait(G14)
    await tree.wait(H41)

    text = captured.getvalue()
    assert TOKENS["commune"] not in text
    assert signature.group(1).decode() not in text
    assert "triển khai" not in text
    assert "tri\\u1ec3n khai" not in text  # nor JSON-escaped

    packages = [e for e in lines(captured) if e["event"] == "package"]
    ours = [e for e in packages if e["message_id"] == message_id]
    path = ["commune-21-31-h53", "district-31-h53", "province-h53", "central", "province-h41"]
    assert sorted(e["node"] for e in ours) == sorted(path)  # once on each node
    for line in ours:
        assert line.keys() >= FIELDS, line
        assert "source" in line
        assert (line["sender"], line["document_id"]) == (COMMUNE, line["document_id"])
        assert isinstance(line["ms"], float | int)
        assert line["code"] is None
    (entry,) = [e for e in ours if e["node"] == "commune-21-31-h53"]
    assert (entry["outcome"], entry["recipients"]) == ("accepted", 2)
    assert {e["verification"] for e in ours} == {"strict"}  # "level" is the log level
    assert entry["document_id"]
    assert {e["outcome"] for e in ours if e is not entry} == {"received"}
    assert {e["source"] for e in ours if e["node"] == "central"} == {"link:province-h53"}

    (refusal,) = [e for e in packages if e["outcome"] == "refused"]
    assert refusal["node"] == "commune-21-31-h53"
    assert refusal["code"]
    assert refusal["message_id"] is None
    assert refusal.keys() >= FIELDS


def test_secrets_and_bodies_never_reach_a_line(captured: io.StringIO) -> None:
    log = structlog.get_logger("lienthong.test")
    log.warning(
        "package",
        message_id="m-1",
        document_id="125/UBND-VP",
        key_id="node-central-2026",
        token="t-secret-0001",
        authorization="Bearer t-secret-0002",
        apiKey="t-secret-0003",
        hmac_key="t-secret-0004",
        private_key=b"-----BEGIN PRIVATE KEY-----",
        body=b"<edXMLEnvelope>secret body</edXMLEnvelope>",
        sent={"password": "t-secret-0005", "parts": [b"\x00" * 10, "kept"]},
        error="AMQP connect to amqp://link-h53:t-secret-0006@broker:5671/ failed; "
        "header was Bearer t-secret-0007",
    )
    text = captured.getvalue()
    assert "t-secret" not in text
    assert "secret body" not in text
    (line,) = lines(captured)
    assert (line["message_id"], line["document_id"], line["key_id"]) == (
        "m-1",
        "125/UBND-VP",
        "node-central-2026",
    )
    assert line["token"] == line["authorization"] == line["apiKey"] == logs.REDACTED
    assert line["body"] == "<42 bytes>"
    assert line["sent"] == {"password": logs.REDACTED, "parts": ["<10 bytes>", "kept"]}
    assert "amqp://link-h53:***@broker:5671/" in line["error"]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("token", True),
        ("access_token", True),
        ("token_sha256", True),
        ("Authorization", True),
        ("client_secret", True),
        ("password", True),
        ("hmac", True),
        ("key", True),
        ("api_key", True),
        ("privateKey", True),
        ("message_id", False),
        ("key_id", False),
        ("keys", False),
        ("monkey", False),
        ("document_id", False),
        ("digest", False),
        ("credential", False),  # a login's name, not its password
    ],
)
def test_a_field_is_secret_by_the_words_of_its_name(name: str, secret: bool) -> None:
    assert logs.secret_field(name) is secret


def test_off_a_terminal_the_lines_are_json_and_redacted() -> None:
    before = structlog.get_config()
    try:
        logs.configure("info", stream=io.StringIO())
        chain = structlog.get_config()["processors"]
        assert isinstance(chain[-1], structlog.processors.JSONRenderer)
        assert logs.redact in chain
    finally:
        structlog.configure(**before)
