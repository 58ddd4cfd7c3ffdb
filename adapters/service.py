"""``lienthong serve``: one node, composed from its configuration.

Startup builds, in order: trust, directory, store, transport, the admission pool and
the node; shutdown (SIGTERM or SIGINT) undoes it in reverse. Two test failpoints
(docs/operations.md, "Failpoints"): ``LIENTHONG_CRASH_AT=<step>`` kills the process with
SIGKILL when the node reaches that step (``after-commit``, ``before-ack``, ``mid-relay``,
``admit:<sha256>``): it is how the crash tests place a kill -9 exactly;
``LIENTHONG_FAULTS=<folder>`` makes the store's disk full while ``<folder>/enospc``
exists (adapters/faults.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
from datetime import timedelta
from pathlib import Path

import structlog
from aiohttp import web

from adapters.admission_pool import AdmissionPool, InlineAdmission, admission_for
from adapters.agency_gate import AgencyGate
from adapters.config_files import (
    directory_key,
    hosted_agencies,
    load_directories,
    load_directory_for,
    load_node_key,
    load_peer_keys,
    load_receipt_signer,
    load_signed_directory,
    load_trust,
)
from adapters.directory_file import DirectoryFile
from adapters.durable import PLAIN, Disk
from adapters.faults import disk_from
from adapters.http_api import build_app
from adapters.metrics import NodeMetrics
from adapters.notify import notifier_for
from adapters.ops_http import add_ops_routes
from adapters.ops_status import OpsView
from adapters.store_postgres import PostgresStore
from adapters.store_sqlite import SqliteStore
from adapters.tls import broker_login, client_context, server_context
from adapters.transfer_node import HttpBlobs
from adapters.transport_amqp import AmqpTransport
from adapters.trust_watch import TrustWatch
from adapters.upstreams import bridges_for
from exchange.config import NodeConfig
from exchange.config_tls import TlsClient, TlsServer
from exchange.directory import Directory
from exchange.directory_doc import SignedDirectory
from exchange.errors import ConfigurationError
from exchange.node import HTTP_CALLER, DirectoryKeeping, Node, NodeSettings
from exchange.receipt import receipt_issuer

log = structlog.get_logger("lienthong.serve")


def open_store(config: NodeConfig, disk: Disk = PLAIN) -> SqliteStore | PostgresStore:
    settings = config.store
    if settings.kind == "sqlite":
        assert settings.path is not None
        return SqliteStore(settings.path, chain=settings.instance, disk=disk)
    if settings.dsn is None:
        raise ConfigurationError(
            f"{config.source_file}: key 'store.dsn': expected a connection string"
        )
    return PostgresStore(
        settings.dsn,
        schema=settings.schema,
        pool_size=settings.pool_size,
        chain=settings.instance,
        lease_s=settings.lease_s,
    )


def crash_hook() -> object:
    target = os.environ.get("LIENTHONG_CRASH_AT")

    def crash(step: str) -> None:
        if target and step == target:
            os.kill(os.getpid(), signal.SIGKILL)

    return crash


def build_node(
    config: NodeConfig,
    transport: AmqpTransport,
    store: SqliteStore | PostgresStore,
    admission: AdmissionPool | InlineAdmission,
    parent_transport: AmqpTransport | None = None,
    directory: Directory | None = None,
    signed: SignedDirectory | None = None,
    blobs: HttpBlobs | None = None,
) -> Node:
    """The node of ``config``; ``directory`` (and ``signed``, the document it came in) is
    its directory file already read, if it was."""
    if directory is None:
        signed = load_signed_directory(config)
        directory = signed.directory if signed is not None else load_directory_for(config)
    load_trust(config)  # a broken CA bundle or CRL stops the node here, not in a worker
    if directory.nodes and directory.nodes.get(config.node_id, "?") != config.parent:
        raise ConfigurationError(
            f"{config.source_file}: node {config.node_id} has parent {config.parent!r} here, "
            f"but the directory (version {directory.version}) says "
            f"{directory.nodes.get(config.node_id, 'it is not a node of the tree')!r}"
        )
    keeping = None
    if signed is not None and config.trust.directory_signer is not None:
        keeping = DirectoryKeeping(
            home=DirectoryFile(config.trust.directory),
            kept=signed,
            signer=config.trust.directory_signer,
            reload_admission=admission.reload,
            check_every_s=config.directory_check_s,
        )

    settings = NodeSettings(
        node_id=config.node_id,
        hosted=hosted_agencies(config, directory),
        parent=config.parent,
        max_attempts=config.max_attempts,
        prefetch=config.prefetch,
        publish_timeout_s=config.publish_timeout_s,
        quorum=config.quorum,
        dedup_retention=timedelta(days=config.store.dedup_retention_days),
        sources=config.sources,
        credentials=config.credentials,
        intake_concurrency=min(config.prefetch, config.intake_concurrency),
        link_concurrency=min(config.prefetch, config.link_concurrency),
        topology=directory.topology() if directory.nodes else None,
        link_max_bytes=config.link.max_bytes,
        link_expiry=config.deadlines.ttl,
        http_credentials={
            f"{HTTP_CALLER}{name}": client.credential
            for name, client in (config.http.clients if config.http else {}).items()
        },
        deadlines=config.deadlines.calendar,
        checkpoint_every_s=config.store.checkpoint_every_s,
        push=config.push,
        inline_max_bytes=config.inline_max_bytes,
        link_login=broker_login(config.parent_broker_urls, config.link.tls)
        if config.parent
        else None,
        own_login=broker_login(config.broker_urls, config.amqp_tls),
        verify_login=config.link.verify_login,
    )
    return Node(
        settings,
        store=store,
        transport=transport,
        admit=admission,
        node_key=load_node_key(config),
        crash=crash_hook(),  # type: ignore[arg-type]
        parent_transport=parent_transport,
        peer_keys=load_peer_keys(config),
        directory=keeping,
        receipts=receipt_issuer(load_receipt_signer(config)),
        admit_file=admission.file,
        blobs=blobs,
        observer=NodeMetrics(config.node_id),  # what GET /metrics renders
    )


async def serve(*configs: NodeConfig) -> None:
    """Run one node, or several in this one process (the sandbox packs its tree so), until
    SIGTERM or SIGINT; each has its own store, broker connections and admission."""
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: main.cancel() if main else None)
    watches: list[TrustWatch] = []
    # SIGHUP: look at the trust files now (they are looked at every few seconds anyway)
    loop.add_signal_handler(signal.SIGHUP, lambda: _poke(watches))
    directories = load_directories(configs)  # each file once, however many nodes name it
    async with contextlib.AsyncExitStack() as stack:
        opened = [
            await _open_node(config, stack, directories[directory_key(config)])
            for config in configs
        ]
        nodes = [node for node, _, _ in opened]
        watches += [watch for _, _, watch in opened]
        bridges = []
        for config, (node, view, _) in zip(configs, opened, strict=True):
            mine = bridges_for(config, node, state_dir(config))
            view.bridges.extend(mine)
            bridges += mine
        for bridge in bridges:
            stack.push_async_callback(bridge.close)
        try:
            async with asyncio.TaskGroup() as group:
                for config, (node, view, watch) in zip(configs, opened, strict=True):
                    me = node.settings.node_id
                    group.create_task(node.run(), name=f"node-{me}")
                    group.create_task(watch.run(), name=f"trust-{me}")
                    group.create_task(view.watch(), name=f"ops-{me}")
                    notifier = notifier_for(config, me, view.status)
                    if notifier is not None:
                        group.create_task(notifier.run(), name=f"alerts-{me}")
                for bridge in bridges:
                    group.create_task(bridge.run(), name=f"bridge-{bridge.settings.name}")
        except ExceptionGroup as failed:  # one node stopped (the others with it): say why
            raise _first_cause(failed) from None
        except asyncio.CancelledError:
            for node in nodes:
                log.info("node.stop", node=node.settings.node_id)


def _poke(watches: list[TrustWatch]) -> None:
    for watch in watches:
        watch.poke.set()


def _faces(
    app: web.Application, config: NodeConfig, view: OpsView, blobs: HttpBlobs | None
) -> None:
    """The node's operator endpoints and, for its children, its side of their transfers."""
    add_ops_routes(app, view)
    if blobs is not None and config.http is not None and config.http.links:
        blobs.add_routes(app, config)


def state_dir(config: NodeConfig) -> Path | None:
    """Where a node keeps what it learns (an upstream's agency list): beside its SQLite
    store, or beside its configuration file."""
    if config.store.path is not None:
        return Path(config.store.path)
    return config.source_file.parent if config.source_file is not None else None


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error itself, out of the task groups of serve and of Node.run around it."""
    cause: BaseException = group
    while isinstance(cause, BaseExceptionGroup):
        cause = cause.exceptions[0]
    return cause


async def _open_node(
    config: NodeConfig,
    stack: contextlib.AsyncExitStack,
    directory: tuple[Directory, SignedDirectory | None],
) -> tuple[Node, OpsView, TrustWatch]:
    """Build one node, and its operator's view; what it opened is closed, in reverse,
    when ``stack`` unwinds."""
    disk = disk_from(os.environ)  # the plain disk, unless a test fills it
    store = open_store(config, disk)
    stack.push_async_callback(store.close)
    # a heartbeat here too: a broker node that froze or was cut off is noticed in under a
    # minute (aiormq's default is three), and the connection moves to the next node
    contexts: list[tuple[TlsClient | TlsServer, ssl.SSLContext]] = []  # reloaded in place
    own_tls = _context(config.amqp_tls, contexts)
    transport = AmqpTransport(
        config.broker_urls, heartbeat_s=config.link.heartbeat_s, ssl_context=own_tls
    )
    stack.push_async_callback(transport.close)
    # the link to the parent is opened by this node, to the parent's broker; a link that is
    # down is not an error, so this connection is made lazily and retried; its heartbeat
    # notices a link that died without a word
    parent_transport = (
        AmqpTransport(
            config.parent_broker_urls,
            heartbeat_s=config.link.heartbeat_s,
            ssl_context=_context(config.link.tls, contexts),
        )
        if config.parent
        else None
    )
    if parent_transport is not None:
        stack.push_async_callback(parent_transport.close)
    assert config.source_file is not None
    admission = admission_for(config.source_file, config.admission_workers, directory[0])
    stack.push_async_callback(admission.aclose)
    await admission.start()  # the workers are ready before the first package
    spool = store.spool_folder()  # none: the store takes no package above the inline cap
    blobs = HttpBlobs(config.node_id, spool, config, disk) if spool is not None else None
    node = build_node(config, transport, store, admission, parent_transport, *directory, blobs)
    view = OpsView(
        node,
        trust=config.trust,
        thresholds=config.alerts.thresholds if config.alerts else None,
    )
    await transport.connect()
    if config.http is not None:  # the REST API (and the SDK facade) of this node
        app = build_app(
            AgencyGate(node, dry_run=admission),
            config.http,
            max_bytes=config.max_package_bytes,
            inline_bytes=config.inline_max_bytes,
            extra=lambda app: _faces(app, config, view, blobs),
            disk=disk,
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        tls = config.http.tls
        await web.TCPSite(
            runner,
            config.http.host,
            config.http.port,
            ssl_context=_context(tls, contexts),
        ).start()
        log.info(
            "http.start",
            node=config.node_id,
            listen=f"{'https' if tls else 'http'}://{config.http.host}:{config.http.port}",
            client_certificates=tls is not None and tls.client_ca is not None,
        )
    log.info(
        "node.start",
        node=config.node_id,
        hosted=sorted(node.settings.hosted),
        store=config.store.kind,
        inbound=node.queues.inbound,
        admission=f"{config.admission_workers} process(es)"
        if config.admission_workers
        else "thread",
    )
    node.peer_keys_source = lambda: load_peer_keys(config)  # a neighbour rotated its key
    watch = TrustWatch(config, node, admission.reload, contexts)
    return node, view, watch


def _context(
    tls: TlsClient | TlsServer | None, contexts: list[tuple[TlsClient | TlsServer, ssl.SSLContext]]
) -> ssl.SSLContext | None:
    if tls is None:
        return None
    context = client_context(tls) if isinstance(tls, TlsClient) else server_context(tls)
    contexts.append((tls, context))
    return context
