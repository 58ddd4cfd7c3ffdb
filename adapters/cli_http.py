"""``lienthong send | fetch | ack | status`` over the REST API (``--url``), through the
Python client (adapters/http_client.py). The token is read from ``--token-file`` or the
LIENTHONG_TOKEN environment variable, never from the command line (it would show in the
process list and the shell history)."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

from adapters.http_client import ApiClient, ApiError
from exchange.errors import ConfigurationError

EXIT_OK, EXIT_REFUSED = 0, 1
PROGRESS_FROM = 1024 * 1024  # show progress for packages at least this large, on a terminal


def token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"{args.token_file}: cannot read: {exc.strerror}") from exc
    found = os.environ.get("LIENTHONG_TOKEN", "").strip()
    if not found:
        raise ConfigurationError("--url needs a token: --token-file FILE or LIENTHONG_TOKEN")
    return found


def one_way(args: argparse.Namespace) -> None:
    if bool(args.config) == bool(args.url):
        raise ConfigurationError("give --config FILE (AMQP) or --url URL (REST API), not both")


def _progress(name: str, size: int) -> Any:
    if size < PROGRESS_FROM or not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\r{name}: {done // 1024:,} of {total // 1024:,} KiB sent", end=end, file=sys.stderr)

    return show


def send(args: argparse.Namespace) -> int:
    packages = [(name, Path(name).read_bytes()) for name in args.files]

    async def go() -> int:
        failed = 0
        async with ApiClient(args.url, token(args), timeout_s=args.timeout) as api:
            for name, data in packages:
                try:
                    answer = await api.send(
                        data, as_organ=args.as_organ, progress=_progress(name, len(data))
                    )
                except ApiError as error:
                    failed += 1
                    print(f"{name}: refused {error}")
                    for problem in error.problems:
                        print(
                            f"  line {problem.get('line')}: {problem.get('path')}: "
                            f"{problem.get('message')}"
                        )
                    continue
                print(
                    f"{name}: {answer['outcome']}: message {answer['message_id']} "
                    f"({answer.get('level')})"
                )
        return EXIT_REFUSED if failed else EXIT_OK

    return asyncio.run(go())


def fetch(args: argparse.Namespace) -> int:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    async def go() -> int:
        async with ApiClient(args.url, token(args), timeout_s=args.timeout) as api:
            items = await api.mailbox(args.as_organ, limit=args.limit, wait=args.wait)
            for item in items:
                target = out / f"{_safe(item['message_id'])}.edxml"
                target.write_bytes(await api.fetch(args.as_organ, item["message_id"]))
                print(
                    f"{target}: {item['kind']} from {item['sender']}, "
                    f"DocumentId {item['document_id']}"
                )
                if not args.keep:
                    await api.ack(args.as_organ, item["message_id"])
        print(f"{len(items)} package(s) fetched for {args.as_organ}")
        return EXIT_OK

    return asyncio.run(go())


def ack(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with ApiClient(args.url, token(args), timeout_s=args.timeout) as api:
            for message_id in args.ids:
                await api.ack(args.as_organ, message_id)
                print(f"{message_id}: acknowledged for {args.as_organ}")
        return EXIT_OK

    try:
        return asyncio.run(go())
    except ApiError as error:
        print(f"refused {error}")
        return EXIT_REFUSED


def status(args: argparse.Namespace) -> dict[str, Any] | None:
    async def go() -> dict[str, Any] | None:
        async with ApiClient(args.url, token(args), timeout_s=args.timeout) as api:
            try:
                return await api.status(args.as_organ, args.ident)
            except ApiError as error:
                print(f"{args.ident}: {error}")
                return None

    return asyncio.run(go())


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="the node's REST API (instead of --config and AMQP)")
    p.add_argument("--token-file", help="the bearer token (else LIENTHONG_TOKEN)")


def add_ack(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ack", help="acknowledge packages of an agency's mailbox (REST API)")
    p.add_argument("--url", required=True, help="the node's REST API")
    p.add_argument("--token-file", help="the bearer token (else LIENTHONG_TOKEN)")
    p.add_argument("--as", dest="as_organ", required=True, metavar="ORGANID")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("ids", nargs="+", metavar="MESSAGE_ID")
    p.set_defaults(func=ack)
