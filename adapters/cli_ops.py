"""``lienthong ops links | overdue | drain`` and ``ops dlq purge``: what a running node
says on its operator endpoints (docs/operations.md), for an operator at a shell.

They ask the node over HTTP: ``--url``, or ``--config`` (the node file's ``[http] listen``),
with an operator token from ``--token-file`` or LIENTHONG_TOKEN, never on the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime
from typing import Any

import aiohttp

from adapters import cli_http
from adapters.config_files import load_node_config
from exchange.errors import ConfigurationError
from exchange.reporting import VIETNAM

EXIT_OK, EXIT_REFUSED, EXIT_DOWN = 0, 1, 2


def _url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    if not args.config:
        raise ConfigurationError("give --url URL or --config FILE (its [http] listen)")
    config = load_node_config(args.config)
    if config.http is None:
        raise ConfigurationError(f"{args.config}: no [http] table: the node has no operator face")
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::") else config.http.host  # noqa: S104
    return f"http://{host}:{config.http.port}"


async def _call(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {cli_http.token(args)}"}
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.request(method, _url(args) + path, json=body, headers=headers) as answer,
    ):
        return answer.status, await answer.json(content_type=None)


def _ask(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    try:
        status, found = asyncio.run(_call(args, method, path, body))
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigurationError(f"{_url(args)}: the node does not answer: {exc}") from exc
    if status >= 400:
        code = found.get("code", status) if isinstance(found, dict) else status
        detail = found.get("detail", "") if isinstance(found, dict) else found
        raise ConfigurationError(f"{method} {path}: [{code}] {detail}")
    return found


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(VIETNAM).strftime("%Y-%m-%d %H:%M:%S")


def _lanes(counts: dict[str, int]) -> str:
    return "/".join(str(counts.get(lane, 0)) for lane in ("urgent", "normal", "large"))


def links_lines(view: dict[str, Any]) -> list[str]:
    node = view["node"]
    drain = view.get("drain")
    lines = [
        f"node {node['id']} ({node['level']}), version {node['version']}, "
        f"up {node['uptime_s'] / 3600:.1f} h; "
        + (f"DRAINING since {_when(drain['since'])} by {drain['by']}" if drain else "serving"),
        "times are Vietnam time (UTC+7); backlog per lane: urgent/normal/large",
        "",
        f"  {'LINK':<24} {'ROLE':<8} {'STATE':<8} {'SINCE':<19} {'OUT':<10} {'IN':<10} "
        f"{'TOTAL':>6}  LAST ERROR",
    ]
    for link in view["links"]:
        lines.append(
            f"  {link['neighbour']:<24} {link['role']:<8} {link['state'].upper():<8} "
            f"{_when(link['since']):<19} {_lanes(link['backlog']['out']):<10} "
            f"{_lanes(link['backlog']['in']):<10} {link['backlog_total']:>6}  "
            f"{link['last_error'] or ''}"
        )
    for up in view["upstreams"]:
        lines.append(
            f"  {'upstream ' + up['name']:<24} {up['protocol']:<8} {up['state'].upper():<8} "
            f"{_when(up['since']):<19} {'':<10} {'':<10} {up['backlog_total']:>6}  "
            f"{up['last_error'] or ''}"
        )
    if not view["links"] and not view["upstreams"]:
        lines.append("  (no links: a node without a tree)")
    for alert in view.get("alerts", []):
        lines.append(f"ALERT {alert['severity']}: {alert['name']}: {alert['summary']}")
    return lines


def cmd_links(args: argparse.Namespace) -> int:
    view = _ask(args, "GET", "/status")
    if args.json:
        print(json.dumps({k: view[k] for k in ("node", "links", "upstreams")}, indent=2))
    else:
        print("\n".join(links_lines(view)))
    down = [x for x in [*view["links"], *view["upstreams"]] if x["state"] == "down"]
    return EXIT_DOWN if down else EXIT_OK


def cmd_overdue(args: argparse.Namespace) -> int:
    items = _ask(args, "GET", "/v1/ops/overdue")["items"]
    if args.json:
        print(json.dumps(items, indent=2, ensure_ascii=False))
        return EXIT_OK
    for row in items:
        print(
            f"{row['recipient']:<16} DocumentId {row['document_id'] or '-'} from {row['sender']}, "
            f"delivered {_when(row['delivered_at'])}, due {_when(row['due'])} "
            f"(message {row['message_id']})"
        )
    print(f"{len(items)} overdue acknowledgement(s) (no 01 or 03 by the end of the working day)")
    return EXIT_OK


def cmd_drain(args: argparse.Namespace) -> int:
    if args.state == "status":
        drain = _ask(args, "GET", "/status")["drain"]
    else:
        _ask(args, "POST", "/v1/ops/drain", {"on": args.state == "on", "note": args.note})
        drain = _ask(args, "GET", "/status")["drain"]
    if drain is None:
        print("serving: taking new packages")
        return EXIT_OK
    print(
        f"draining since {_when(drain['since'])} by {drain['by']}"
        + (f" ({drain['note']})" if drain["note"] else "")
        + f": {drain['in_flight']} in flight, {drain['waiting_to_send']} waiting to be sent; "
        + ("done: safe to stop" if drain["done"] else "not done yet")
    )
    return EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    for dead_id in args.ids:
        done = _ask(args, "POST", f"/v1/ops/dead-letters/{dead_id}/purge", {"note": args.note})
        print(f"{dead_id}: purged; {done['failed_receipts']} failed receipt(s) for the sender")
    return EXIT_OK


def _http_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="the node file: its [http] listen is asked")
    cli_http.add_options(p)
    p.add_argument("--timeout", type=float, default=30.0)


def add_commands(
    ops: argparse._SubParsersAction[argparse.ArgumentParser],
    dlq: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    p = ops.add_parser("links", help="each link and upstream: state, since, backlog, last error")
    _http_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_links)
    p = ops.add_parser("overdue", help="delivered documents nobody acknowledged in time")
    _http_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_overdue)
    p = ops.add_parser("drain", help="maintenance: stop taking packages, finish those in flight")
    _http_options(p)
    p.add_argument("state", choices=("on", "off", "status"))
    p.add_argument("--note", help="why (kept in the evidence log)")
    p.set_defaults(func=cmd_drain)
    p = dlq.add_parser("purge", help="give dead letters up: failed receipts for their senders")
    _http_options(p)
    p.add_argument("--note", help="why (kept in the evidence log and the failed receipts)")
    p.add_argument("ids", nargs="+", type=int, metavar="ID")
    p.set_defaults(func=cmd_purge)
