"""``lienthong ops quarantine``: packages held because their signature could not be
verified (an upstream under the ``quarantine`` policy, docs/bridge.md), and an operator's
decision on each: ``release`` routes it as if just accepted, ``reject`` fails it for every
recipient with the operator's word. Each decision names who took it and is kept, with the
time, in the evidence log; the running node's relay sends what a release routed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json

from adapters.admission_pool import InlineAdmission
from adapters.bridge import Bridge
from adapters.config_files import load_node_config
from adapters.service import build_node, open_store, state_dir
from adapters.tls import client_context
from adapters.transport_amqp import AmqpTransport
from exchange.config import NodeConfig
from exchange.envelope import envelope_record
from exchange.errors import Quarantined
from exchange.node import Node
from exchange.store import HeldPackage

EXIT_OK, EXIT_REFUSED = 0, 1


def _line(held: HeldPackage) -> str:
    decided = (
        f"; {held.decision} by {held.decided_by} at {held.decided_at:%Y-%m-%d %H:%M}"
        + (f": {held.note}" if held.note else "")
        if held.decided_at
        else ""
    )
    return (
        f"{held.message_id}: {held.kind} from {held.sender}, DocumentId {held.document_id}, "
        f"via {held.source}, held {held.held_at:%Y-%m-%d %H:%M:%S}: {held.reason}{decided}"
    )


async def _node(config: NodeConfig, stack: contextlib.AsyncExitStack) -> Node:
    """The node as the decision needs it: its store, its routing (with the upstreams'
    agency lists kept by the running node); no broker connection is opened."""
    store = open_store(config)
    stack.push_async_callback(store.close)
    await store.migrate()
    assert config.source_file is not None
    admission = InlineAdmission(config.source_file)
    stack.callback(admission.shutdown)
    node = build_node(
        config,
        AmqpTransport(
            config.broker_urls,
            ssl_context=client_context(config.amqp_tls) if config.amqp_tls else None,
        ),
        store,
        admission,
    )
    for upstream in config.upstreams:
        cache = state_dir(config)
        Bridge(
            node,
            upstream,
            {},
            cache=cache / f"upstream-{upstream.name}-agencies.json" if cache else None,
        ).load_agencies()
    return node


def cmd_list(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)

    async def go() -> int:
        store = open_store(config)
        try:
            await store.migrate()
            held = await store.quarantined(decided=args.all)
        finally:
            await store.close()
        for item in held:
            print(_line(item))
        print(f"{len(held)} package(s)" + (" held or decided" if args.all else " held"))
        return EXIT_OK

    return asyncio.run(go())


def cmd_show(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)

    async def go() -> int:
        store = open_store(config)
        try:
            await store.migrate()
            held = await store.held_package(args.message_id)
            if held is None:
                print(f"{args.message_id}: not held at node {config.node_id}")
                return EXIT_REFUSED
            record = envelope_record(await store.envelope(args.message_id))
            links = await store.upstream_links(args.message_id)
        finally:
            await store.close()
        print(_line(held))
        print(f"  recipients: {', '.join(record.get('recipients', []))}")
        for link in links:
            print(f"  {link.direction} {link.upstream}: docId {link.doc_id}")
        for sig in record.get("pdf_signatures", []):
            print(f"  PDF signature: {json.dumps(sig, ensure_ascii=False)}")
        return EXIT_OK

    return asyncio.run(go())


def _decide(decision: str) -> object:
    def command(args: argparse.Namespace) -> int:
        config = load_node_config(args.config)

        async def go() -> int:
            async with contextlib.AsyncExitStack() as stack:
                node = await _node(config, stack)
                failed = False
                for message_id in args.message_ids:
                    try:
                        held = await node.decide_quarantined(
                            message_id, decision, by=args.by, note=args.note
                        )
                    except Quarantined as refused:
                        print(f"{message_id}: [{refused.code}] {refused.message}")
                        failed = True
                        continue
                    print(_line(held))
            return EXIT_REFUSED if failed else EXIT_OK

        return asyncio.run(go())

    return command


def add_commands(ops: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    quarantine = ops.add_parser(
        "quarantine", help="packages held until an operator decides"
    ).add_subparsers(dest="quarantine_command", required=True)
    p = quarantine.add_parser("list", help="the packages held, oldest first")
    p.add_argument("--config", required=True)
    p.add_argument("--all", action="store_true", help="include those decided")
    p.set_defaults(func=cmd_list)
    p = quarantine.add_parser("show", help="one held package: why, recipients, ids, PDFs")
    p.add_argument("--config", required=True)
    p.add_argument("message_id")
    p.set_defaults(func=cmd_show)
    for decision, word in (("released", "release"), ("rejected", "reject")):
        p = quarantine.add_parser(
            word,
            help="route them now"
            if word == "release"
            else "fail them for every recipient, with the note",
        )
        p.add_argument("--config", required=True)
        p.add_argument("--by", required=True, help="who decides (kept in the evidence log)")
        p.add_argument("--note", help="why, in a few words (kept with the decision)")
        p.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID")
        p.set_defaults(func=_decide(decision))
