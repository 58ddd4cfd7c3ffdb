"""The operator console's static files, served by each node at ``/ops/`` (docs/console.md).

The console is a page of vanilla JavaScript modules with no build step: every file it
needs sits in ``adapters/console/`` and ships in the wheel. The files are read once, when
the routes are added, and served from memory: only those files, each with its own content
type, a Content-Security-Policy that allows nothing but this origin, and ``no-cache`` so an
upgraded node is never shown with a stale script. The files need no token; the data the
page asks for (``/status``, ``/v1/ops/...``) does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",  # modules are refused under any other type
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


def load_assets(folder: Path = CONSOLE_DIR) -> dict[str, Asset]:
    """Every servable file of the console folder by name; fails loudly without index.html."""
    assets = {
        path.name: Asset(path.read_bytes(), CONTENT_TYPES[path.suffix])
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix in CONTENT_TYPES
    }
    if "index.html" not in assets:
        raise RuntimeError(f"the operator console is missing from {folder} (no index.html)")
    return assets


def _serve(asset: Asset) -> web.Response:
    return web.Response(body=asset.body, headers={**HEADERS, "Content-Type": asset.content_type})


def add_console_routes(app: web.Application) -> None:
    """``/ops`` -> ``/ops/``; ``/ops/`` the page; ``/ops/{asset}`` one of its files or 404."""
    assets = load_assets()

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect("/ops/")

    async def index(request: web.Request) -> web.StreamResponse:
        return _serve(assets["index.html"])

    async def asset(request: web.Request) -> web.StreamResponse:
        found = assets.get(request.match_info["asset"])
        if found is None:
            raise web.HTTPNotFound(text="no such file in the operator console")
        return _serve(found)

    app.router.add_get("/ops", redirect)
    app.router.add_get("/ops/", index)
    app.router.add_get("/ops/{asset}", asset)
