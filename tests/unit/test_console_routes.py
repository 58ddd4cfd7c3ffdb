"""The console's static files as a browser fetches them: no token, only the known files,
each with its type, a Content-Security-Policy of this origin only, and no caching."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.agency_gate import AgencyGate
from adapters.console import CONSOLE_DIR, add_console_routes, load_assets
from adapters.http_api import build_app
from exchange.config_http import HttpSettings


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = web.Application()
    add_console_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_the_page_is_served_without_a_token(client: TestClient) -> None:
    answer = await client.get("/ops/")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.headers["Cache-Control"] == "no-cache"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert '<script type="module" src="console.js">' in await answer.text()


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("console.js", "text/javascript; charset=utf-8"),
        ("topology.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
        ("index.html", "text/html; charset=utf-8"),
    ],
)
async def test_each_file_has_its_type(client: TestClient, name: str, content_type: str) -> None:
    answer = await client.get(f"/ops/{name}")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == content_type
    assert await answer.read() == (CONSOLE_DIR / name).read_bytes()


@pytest.mark.parametrize(
    "path", ["/ops/nothing.js", "/ops/..%2Fconsole.py", "/ops/%2E%2E/http_api.py", "/ops/a/b"]
)
async def test_nothing_else_is_served(client: TestClient, path: str) -> None:
    answer = await client.get(path, allow_redirects=False)
    assert answer.status == 404


async def test_ops_without_its_slash_is_sent_to_the_page(client: TestClient) -> None:
    answer = await client.get("/ops", allow_redirects=False)
    assert answer.status == 308
    assert answer.headers["Location"] == "/ops/"


def test_every_file_the_page_names_is_served() -> None:
    """index.html and the modules name only files of the folder (a missing module would be a
    blank page, not an error a test of the server could see)."""
    assets = load_assets()
    named = set(re.findall(r'(?:src|href)="([\w.-]+)"', assets["index.html"].body.decode()))
    for name, asset in assets.items():
        if name.endswith(".js"):
            named |= set(re.findall(r'from "\./([\w.-]+)"', asset.body.decode()))
    assert named <= set(assets), named - set(assets)


def test_a_missing_console_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"no index\.html"):
        load_assets(tmp_path)


async def test_the_nodes_rest_face_serves_the_console() -> None:
    face = build_app(cast(AgencyGate, None), HttpSettings("127.0.0.1", 0), max_bytes=1024)
    async with TestClient(TestServer(face)) as client:
        answer = await client.get("/ops/")
        assert answer.status == 200
        assert "Content-Security-Policy" in answer.headers
        refused = await client.get("/v1/directory")  # the data needs a token
        assert refused.status == 401
