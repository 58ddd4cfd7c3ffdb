"""``lienthong status`` (a sender asks its node where a document stands) and ``lienthong
ops search`` (an operator or auditor searches this node's evidence log)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters import cli_http
from adapters.client import NodeClient
from adapters.config_files import load_node_config
from adapters.service import open_store
from exchange.errors import NotTracked
from exchange.reporting import VIETNAM

EXIT_OK, EXIT_REFUSED = 0, 1


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone(VIETNAM).strftime("%Y-%m-%d %H:%M:%S")


def status_lines(view: dict[str, Any]) -> list[str]:
    scope = "end to end" if view["origin"] else "this node's view only"
    lines = [
        f"{view['kind']} {view['message_id']} from {view['sender']} ({view['level']}), "
        f"DocumentId {view['document_id']}",
        f"accepted {_when(view['received_at'])} at node {view['here']} ({scope}); "
        "times are Vietnam time (UTC+7)",
        "",
        f"  {'RECIPIENT':<16} {'TRANSPORT':<10} {'SINCE':<19} {'AT NODE':<18} "
        f"{'STATUS':<22} {'ANSWER DUE':<19} RECEIPT",
    ]
    for row in view["recipients"]:
        status = f"{row['status']} {row['status_meaning']}" if row["status"] else "-"
        if row["recall"]:
            status += f", recall {row['recall']}"
        due = _when(row["due"]) + (" OVERDUE" if row["overdue"] else "")
        lines.append(
            f"  {row['recipient']:<16} {row['transport']:<10} {_when(row['at']):<19} "
            f"{row['node'] or '-':<18} {status:<22} {due:<19} "
            f"{'signed' if row['receipt'] else '-'}"
        )
        if row["reason"]:
            lines.append(f"  {'':<16} reason: {row['reason']}")
        if row["note"]:
            lines.append(f"  {'':<16} {row['note']}")
    if view.get("receipts_left_out"):
        lines.append(
            f"{view['receipts_left_out']} more receipt(s) than one answer carries: "
            "export the evidence bundle (lienthong evidence) for all of them"
        )
    if view.get("replaced_by"):
        lines.append(f"replaced by {', '.join(view['replaced_by'])}")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    cli_http.one_way(args)
    if args.url:
        return _show(args, cli_http.status(args))
    config = load_node_config(args.config)

    async def go() -> dict[str, Any] | None:
        async with NodeClient(config.broker_urls, config.node_id, timeout_s=args.timeout) as client:
            try:
                return await client.status(args.as_organ, args.ident)
            except NotTracked as exc:
                print(f"{args.ident}: [{exc.code}] {exc.message}")
                return None

    return _show(args, asyncio.run(go()))


def _show(args: argparse.Namespace, view: dict[str, Any] | None) -> int:
    if view is None:
        return EXIT_REFUSED
    if args.json:
        print(json.dumps(view, ensure_ascii=False, indent=2))
    else:
        print("\n".join(status_lines(view)))
    if args.receipts:
        folder = Path(args.receipts)
        folder.mkdir(parents=True, exist_ok=True)
        for index, receipt in enumerate(view["receipts"], start=1):
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{view['message_id']}.{receipt['node']}")
            path = folder / f"{name}.{index}.receipt.xml"
            path.write_bytes(base64.b64decode(receipt["document"]))
            names = ", ".join(receipt["recipients"])
            print(f"receipt of {receipt['node']} for {names}: {path}")
    return EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    since = datetime.fromisoformat(args.since).replace(tzinfo=VIETNAM) if args.since else None
    until = datetime.fromisoformat(args.until).replace(tzinfo=VIETNAM) if args.until else None

    async def go() -> int:
        store = open_store(config)
        try:
            await store.migrate()
            entries = await store.log_entries(
                party=args.party, since=since, until=until, limit=args.limit
            )
        finally:
            await store.close()
        for entry in entries:
            event = entry.event
            detail = ", ".join(
                f"{k}={v}" for k, v in event.detail.items() if k not in ("receipt",) and v
            )
            print(
                f"{_when(event.at.isoformat())}  {event.kind.value:<9} {event.node:<18} "
                f"msg {event.message_id or '-'}  doc {event.document_id or '-'}  "
                f"from {event.sender or '-'}  party {event.party or '-'}  {detail}"
                f"  [{entry.chain}#{entry.seq}]"
            )
        print(f"{len(entries)} record(s) at node {config.node_id}")
        return EXIT_OK

    return asyncio.run(go())


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    ops: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    p = sub.add_parser("status", help="where a document you sent stands, recipient by recipient")
    p.add_argument("--config", help="the node file: ask over AMQP")
    cli_http.add_options(p)
    p.add_argument("--as", dest="as_organ", required=True, metavar="ORGANID")
    p.add_argument("ident", metavar="DOCUMENT_ID|MESSAGE_ID")
    p.add_argument("--receipts", metavar="DIR", help="write the signed delivery receipts here")
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=cmd_status)
    p = ops.add_parser("search", help="this node's evidence records by party and date")
    p.add_argument("--config", required=True)
    p.add_argument("--party", metavar="ORGANID", help="as sender or recipient")
    p.add_argument("--since", metavar="YYYY-MM-DD[THH:MM]", help="Vietnam time, inclusive")
    p.add_argument("--until", metavar="YYYY-MM-DD[THH:MM]", help="Vietnam time, exclusive")
    p.add_argument("--limit", type=int, default=1000)
    p.set_defaults(func=cmd_search)
