"""The node commands: ``serve``, ``send``, ``fetch``, ``ops track`` and ``ops dlq``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from adapters import cli_http, cli_ops, cli_quarantine, cli_status, logs
from adapters.client import NodeClient
from adapters.config_files import load_node_config
from adapters.service import open_store, serve
from adapters.tls import broker_login, client_context
from adapters.transport_amqp import AmqpTransport
from exchange.node import Queues, operator_event, replay_dead_letter

EXIT_OK, EXIT_REFUSED = 0, 1


def cmd_serve(args: argparse.Namespace) -> int:
    configs = [load_node_config(path) for path in args.config]
    if args.instance:  # one of several instances of the node: its own evidence chain
        configs = [replace(c, store=replace(c.store, instance=args.instance)) for c in configs]
    logs.configure(args.log_level)
    asyncio.run(serve(*configs))
    return EXIT_OK


def cmd_send(args: argparse.Namespace) -> int:
    cli_http.one_way(args)
    if args.url:
        return cli_http.send(args)
    config = load_node_config(args.config)
    packages = [Path(f).read_bytes() for f in args.files]

    async def go() -> int:
        async with NodeClient(config.broker_urls, config.node_id, timeout_s=args.timeout) as client:
            answers = await client.submit(packages, as_organ=args.as_organ, source=args.source)
        failed = 0
        for path, answer in zip(args.files, answers, strict=True):
            if answer.outcome in ("accepted", "duplicate"):
                print(f"{path}: {answer.outcome}: message {answer.message_id} ({answer.level})")
            else:
                failed += 1
                print(f"{path}: {answer.outcome} [{answer.code}] {answer.reason}")
        return EXIT_REFUSED if failed else EXIT_OK

    return asyncio.run(go())


def cmd_fetch(args: argparse.Namespace) -> int:
    cli_http.one_way(args)
    if args.url:
        return cli_http.fetch(args)
    config = load_node_config(args.config)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    async def go() -> int:
        async with NodeClient(config.broker_urls, config.node_id, timeout_s=args.timeout) as client:
            fetched = await client.fetch(args.as_organ, limit=args.limit)
            for item in fetched:
                target = out / f"{item.message_id}.edxml"
                target.write_bytes(item.data)
                print(f"{target}: {item.kind} from {item.sender}, DocumentId {item.document_id}")
            if fetched and not args.keep:
                await client.mark_fetched(args.as_organ, [f.message_id for f in fetched])
        print(f"{len(fetched)} package(s) fetched for {args.as_organ}")
        return EXIT_OK

    return asyncio.run(go())


def cmd_dlq_list(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)

    async def go() -> int:
        store = open_store(config)
        try:
            await store.migrate()
            letters = await store.dead_letters(include_replayed=args.all)
        finally:
            await store.close()
        for d in letters:
            replayed = f", replayed {d.replayed_at:%Y-%m-%d %H:%M}" if d.replayed_at else ""
            print(
                f"{d.id}: {d.dead_at:%Y-%m-%d %H:%M:%S} from {d.source}, sha256 {d.digest[:16]}…, "
                f"{d.attempts} attempt(s): {d.reason}{replayed}"
            )
        print(f"{len(letters)} dead letter(s)")
        return EXIT_OK

    return asyncio.run(go())


def cmd_track(args: argparse.Namespace) -> int:
    """Where each copy of a package stands at this node, read from its store."""
    config = load_node_config(args.config)

    async def go() -> int:
        store = open_store(config)
        try:
            await store.migrate()
            trail = await store.trail(args.message_id)
        finally:
            await store.close()
        if trail is None:
            print(f"{args.message_id}: not at node {config.node_id}")
            return EXIT_REFUSED
        print(
            f"{trail.message_id}: {trail.kind} from {trail.sender}, DocumentId "
            f"{trail.document_id}, {trail.level}, received {trail.received_at:%Y-%m-%d %H:%M:%S} "
            f"from {trail.source} at node {config.node_id}"
        )
        for step in trail.steps:
            reason = f": {step.reason}" if step.reason else ""
            print(
                f"  {step.destination.value:<7} {step.target:<32} {step.state:<9} "
                f"{step.at:%Y-%m-%d %H:%M:%S}{reason}"
            )
        return EXIT_OK

    return asyncio.run(go())


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)

    async def go() -> int:
        store = open_store(config)
        transport = AmqpTransport(
            config.broker_urls,
            ssl_context=client_context(config.amqp_tls) if config.amqp_tls else None,
        )
        try:
            await store.migrate()
            await transport.connect()
            queues = Queues(config.node_id)
            letters = {d.id: d for d in await store.dead_letters()}
            for dead_id in args.ids:
                if dead_id not in letters:
                    print(f"{dead_id}: no open dead letter with this id (replayed or purged?)")
                    return EXIT_REFUSED
                try:
                    target = await replay_dead_letter(
                        store,
                        transport,
                        queues,
                        dead_id,
                        timeout=config.publish_timeout_s,
                        # a trusted credential keeps the letter's own source (docs/wire.md)
                        user_id=broker_login(config.broker_urls, config.amqp_tls),
                    )
                except KeyError:
                    print(f"{dead_id}: no such dead letter")
                    return EXIT_REFUSED
                await store.record_events(
                    [
                        operator_event(
                            config.node_id,
                            "replay",
                            args.by,
                            f"dead-letter:{dead_id}",
                            args.note,
                            letters[dead_id],
                            datetime.now(UTC),
                        )
                    ]
                )
                print(f"{dead_id}: sent to {target} again")
        finally:
            await transport.close()
            await store.close()
        return EXIT_OK

    return asyncio.run(go())


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run a node (or several, in one process)")
    p.add_argument(
        "--config",
        required=True,
        action="append",
        help="the node file (TOML); repeat it to run several nodes in this process",
    )
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument(
        "--instance",
        metavar="NAME",
        help="this service instance's name, its evidence chain (instead of [store] instance): "
        "one per instance when several serve one node (docs/operations.md)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("send", help="submit packages to a node, as an agency")
    p.add_argument("--config", help="the node file: submit over AMQP")
    cli_http.add_options(p)
    p.add_argument("--as", dest="as_organ", required=True, metavar="ORGANID")
    p.add_argument("--source", default="amqp", help="the source name whose policy applies")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("fetch", help="read an agency's mailbox on a node")
    p.add_argument("--config", help="the node file: read over AMQP")
    cli_http.add_options(p)
    p.add_argument("--wait", type=float, default=0.0, help="REST: wait this long for mail")
    p.add_argument("--as", dest="as_organ", required=True, metavar="ORGANID")
    p.add_argument("-o", "--output", default=".", help="where to write <message id>.edxml")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--keep", action="store_true", help="do not mark them fetched")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=cmd_fetch)
    cli_http.add_ack(sub)

    ops = sub.add_parser("ops", help="operator tools").add_subparsers(
        dest="ops_command", required=True
    )
    p = ops.add_parser("track", help="where each copy of a package stands at this node")
    p.add_argument("--config", required=True)
    p.add_argument("message_id", help="the message id the node answered with")
    p.set_defaults(func=cmd_track)
    dlq = ops.add_parser("dlq", help="dead letters").add_subparsers(
        dest="dlq_command", required=True
    )
    p = dlq.add_parser("list", help="list dead letters with their reasons")
    p.add_argument("--config", required=True)
    p.add_argument("--all", action="store_true", help="include those already replayed")
    p.set_defaults(func=cmd_dlq_list)
    p = dlq.add_parser("replay", help="send dead letters through intake again")
    p.add_argument("--config", required=True)
    p.add_argument("--by", default=getpass.getuser(), help="who replays (evidence log)")
    p.add_argument("--note", help="why (evidence log)")
    p.add_argument("ids", nargs="+", type=int, metavar="ID")
    p.set_defaults(func=cmd_dlq_replay)
    cli_status.add_commands(sub, ops)
    cli_quarantine.add_commands(ops)
    cli_ops.add_commands(ops, dlq)
