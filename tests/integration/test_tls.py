"""Links over AMQPS with client certificates, and the HTTP faces over HTTPS (docs/tls.md).

A second RabbitMQ, TLS only, on ports of its own (the machine's broker is never touched):
it asks every client for a certificate from a throwaway CA and logs it in by its CN
(EXTERNAL). The parent node ``central`` runs on it; two children open their links to it:
``province`` with its own certificate, ``rogue`` with a certificate whose CN is another
login (``impostor``), which the broker lets in, since that login exists, but under which the
parent refuses its packages (``[link] verify_login``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from adapters.client import NodeClient
from adapters.pki_files import init_tls
from adapters.provision import link_permissions
from adapters.store_sqlite import SqliteStore
from adapters.tls import client_context
from adapters.transport_amqp import AmqpTransport
from exchange.config_tls import TlsClient
from exchange.devpki import Issued, issue_tls
from exchange.errors import TransientFault
from tests.chaos.rabbit_cluster import BrokerTls, SingleBroker, available
from tests.integration.broker import AMQP_URL, wait_for_count
from tests.integration.doors import free_port
from tests.integration.tree import TreeProcesses

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),  # the module's broker starts within the first test's time
    pytest.mark.skipif(not available(), reason="RabbitMQ is not installed here"),
]

PARENTS = {"central": None, "province": "central", "rogue": "central"}
CENTRAL, PROVINCE, ROGUE = "000.00.00.G22", "000.00.00.H53", "000.00.00.H41"
HOMES = {CENTRAL: "central", PROVINCE: "province", ROGUE: "rogue"}


class Stand:
    def __init__(self, folder: Path) -> None:
        self.tls = folder / "tls"
        self.broker = SingleBroker(
            tls=BrokerTls(self.tls / "ca.pem", self.tls / "broker.pem", self.tls / "broker.key")
        )
        self.token = secrets.token_urlsafe(16)
        self.port = free_port()
        url = self.broker.url()

        def tls(cert: str, table: str) -> str:
            return (
                f'\n[{table}]\nca = "{self.tls}/ca.pem"\n'
                f'cert = "{self.tls}/{cert}.pem"\nkey = "{self.tls}/{cert}.key"\n'
            )

        ids = {name: f"{name}-{secrets.token_hex(3)}" for name in PARENTS}
        self.tree = TreeProcesses(
            folder,
            PARENTS,
            HOMES,
            ids=ids,
            broker_urls={"central": url},
            link_urls={"province": url, "rogue": url},
            link_lines={"central": ["verify_login = true"]},
            extra={
                "central": tls(ids["central"], "rabbitmq.tls")
                + f'\n[http]\nlisten = "127.0.0.1:{self.port}"\n'
                + tls(ids["central"], "http.tls").replace("ca = ", "client_ca = ")
                + "\n[http.clients.qlvb]\n"
                + f'token_sha256 = "{hashlib.sha256(self.token.encode()).hexdigest()}"\n'
                + f'organs = ["{CENTRAL}"]\n',
                "province": tls(ids["province"], "link.tls"),
                "rogue": tls("impostor", "link.tls"),
            },
        )
        # the broker's certificate names the node it serves: the children check that
        init_tls(
            self.tls, ["broker"], names=(ids["central"], "localhost"), addresses=("127.0.0.1",)
        )
        init_tls(self.tls, [*ids.values(), "impostor", "qlvb"], addresses=("127.0.0.1",))

    def start(self) -> None:
        self.broker.start_all()
        ids = self.tree.ids
        logins = {
            ids["central"]: (".*", ".*", ".*"),
            ids["province"]: link_permissions(ids["central"], ids["province"]),
            "impostor": link_permissions(ids["central"], ids["rogue"]),
        }
        for login, rules in logins.items():
            self.broker.ctl(0, "add_user", login, secrets.token_hex(8))
            self.broker.ctl(0, "clear_password", login)  # a certificate, or nothing
            self.broker.ctl(0, "set_permissions", login, *rules)
        for name in PARENTS:
            self.tree.start(name)

    def https(self, *, certificate: bool = True) -> ssl.SSLContext:
        return client_context(
            TlsClient(
                self.tls / "ca.pem",
                self.tls / "qlvb.pem" if certificate else None,
                self.tls / "qlvb.key" if certificate else None,
            )
        )

    async def dead_letters(self) -> list[str]:
        store = SqliteStore(self.tree.folder / "central" / "store")
        try:
            await store.migrate()
            return [d.reason for d in await store.dead_letters()]
        finally:
            await store.close()


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    made = Stand(tmp_path_factory.mktemp("tls"))
    try:
        made.start()
        yield made
    finally:
        asyncio.run(made.tree.cleanup())
        made.broker.stop_all()


async def _post(stand: Stand, data: bytes, context: ssl.SSLContext) -> str:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http,
        http.post(
            f"https://127.0.0.1:{stand.port}/v1/packages",
            data=data,
            headers={"Authorization": f"Bearer {stand.token}"},
        ) as got,
    ):
        body = await got.json(content_type=None)
        assert got.status == 201, body
        return str(body["message_id"])


async def _https_up(stand: Stand) -> None:
    async with asyncio.timeout(60):
        while True:
            try:
                async with (
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=stand.https())) as s,
                    s.get(f"https://127.0.0.1:{stand.port}/healthz") as got,
                ):
                    if got.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)


@pytest.fixture
async def up(stand: Stand) -> Stand:
    await _https_up(stand)
    for child in ("province", "rogue"):  # their own broker is the machine's
        await stand.tree.ready_inbound(child)
    return stand


async def test_documents_cross_an_amqps_link_both_ways_exactly_once(up: Stand) -> None:
    tree = up.tree
    up_ids = [f"{n}" for n in range(5)]
    async with NodeClient(AMQP_URL, tree.ids["province"]) as province:
        answers = await province.submit(
            [tree.signed(PROVINCE, [CENTRAL], 700 + int(n)) for n in up_ids], as_organ=PROVINCE
        )
    assert [a.outcome for a in answers] == ["accepted"] * 5
    down = [
        await _post(up, tree.signed(CENTRAL, [PROVINCE], 800 + n), up.https()) for n in range(5)
    ]
    arrived = await tree.wait_for_mailbox(CENTRAL, 5, timeout=90)
    assert sorted(arrived) == sorted(a.message_id for a in answers)
    assert sorted(await tree.wait_for_mailbox(PROVINCE, 5, timeout=90)) == sorted(down)


async def test_a_child_whose_certificate_names_another_login_is_refused_at_the_parent(
    up: Stand,
) -> None:
    tree = up.tree
    async with NodeClient(AMQP_URL, tree.ids["rogue"]) as rogue:
        (answer,) = await rogue.submit([tree.signed(ROGUE, [CENTRAL], 900)], as_organ=ROGUE)
    assert answer.outcome == "accepted"  # its own node takes it; the parent will not
    reasons = await wait_for_count(up.dead_letters, 1, timeout=90)
    assert reasons[0].startswith("link.login_mismatch: ")
    assert f"last hop is node {tree.ids['rogue']} was published by login impostor" in reasons[0]
    assert answer.message_id not in await tree.mailbox(CENTRAL)


async def test_https_asks_every_caller_for_a_certificate(up: Stand) -> None:
    with pytest.raises(aiohttp.ClientError):
        await _post(up, up.tree.signed(CENTRAL, [PROVINCE], 950), up.https(certificate=False))
    async with aiohttp.ClientSession() as plain:  # plain HTTP on the HTTPS port: no answer
        with pytest.raises(aiohttp.ClientError):
            async with plain.get(f"http://127.0.0.1:{up.port}/healthz") as got:
                await got.read()


async def test_a_childs_tls_certificate_is_replaced_while_packages_flow(up: Stand) -> None:
    """The child's new certificate (same CN, another key, another validity) is written over
    the old one; the node takes it up without a restart, and its next connection presents
    it. Packages sent meanwhile, across the broker closing every connection, all arrive."""
    tree, province = up.tree, up.tree.ids["province"]
    ca = Issued(
        serialization.load_pem_private_key((up.tls / "ca.key").read_bytes(), None),  # type: ignore[arg-type]
        x509.load_pem_x509_certificate((up.tls / "ca.pem").read_bytes()),
    )
    already = len(await tree.mailbox(CENTRAL))
    sent: list[str] = []
    stop = asyncio.Event()

    async def flow() -> None:
        async with NodeClient(AMQP_URL, province, timeout_s=60) as client:
            n = 0
            while not stop.is_set():
                n += 1
                (answer,) = await client.submit(
                    [tree.signed(PROVINCE, [CENTRAL], 2000 + n)], as_organ=PROVINCE
                )
                assert answer.outcome == "accepted", answer
                sent.append(str(answer.message_id))
                await asyncio.sleep(0.2)

    running = asyncio.create_task(flow())
    await asyncio.sleep(2)
    renewed = issue_tls(ca, province, addresses=("127.0.0.1",), days=400)
    log = tree.folder / "province" / "node.log"
    before = log.read_text(errors="replace").count("trust.reloaded")
    for name, data in (("key", renewed.key_pem), ("pem", renewed.cert_pem)):
        (up.tls / f"{province}.{name}.new").write_bytes(data)
        os.replace(up.tls / f"{province}.{name}.new", up.tls / f"{province}.{name}")
    async with asyncio.timeout(30):
        while log.read_text(errors="replace").count("trust.reloaded") <= before:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    up.broker.ctl(0, "close_all_connections", "certificate rotation")  # each reconnects
    await asyncio.sleep(4)
    stop.set()
    await running
    expiry = f"{province}\t{renewed.cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} - "
    deadline = time.monotonic() + 60
    while expiry not in (
        listed := up.broker.ctl(0, "list_connections", "user", "peer_cert_validity")
    ):
        assert time.monotonic() < deadline, f"no connection presents the new certificate:\n{listed}"
        await asyncio.sleep(0.5)
    arrived = await tree.wait_for_mailbox(CENTRAL, already + len(sent), timeout=90)
    assert len(sent) > 10
    assert sorted(set(arrived) & set(sent)) == sorted(sent)
    assert len(arrived) == len(set(arrived)), "a package arrived twice"
    assert len(tree.processes["province"]) == 1, "the node was not restarted"


@pytest.mark.parametrize(
    ("peer", "cert", "refusal"),
    [
        ("someone-else", "qlvb", "certificate is not valid for 'someone-else'"),
        # no client certificate: the broker hangs up (TLS 1.3: after the handshake, with an alert)
        (None, None, "Connection reset|CERTIFICATE_REQUIRED|EOF"),
        (None, "qlvb", "ACCESS_REFUSED"),  # a good certificate, but no such login
    ],
)
async def test_the_tls_broker_refuses_what_it_must(
    stand: Stand, peer: str | None, cert: str | None, refusal: str
) -> None:
    tls = TlsClient(
        stand.tls / "ca.pem",
        stand.tls / f"{cert}.pem" if cert else None,
        stand.tls / f"{cert}.key" if cert else None,
        peer or stand.tree.ids["central"],
    )
    transport = AmqpTransport(stand.broker.url(), ssl_context=client_context(tls))
    try:
        with pytest.raises(TransientFault, match=refusal):
            await transport.connect()
    finally:
        await transport.close()
    plain = AmqpTransport(stand.broker.url().replace("amqps://", "amqp://"), connect_timeout=5)
    try:
        with pytest.raises(TransientFault):  # AMQP without TLS: nothing listens for it
            await plain.connect()
    finally:
        await plain.close()
