"""``lienthong evidence`` on both stores: a node's log built by the store calls the node
makes, exported to a bundle, verified offline; then its operator rewrites the chain in the
database, and only the checkpoints its parent kept catch it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters import cli
from exchange.checkpoint import checkpoint_event, make_checkpoint
from exchange.devpki import make_crl
from exchange.envelope import NodeKey, canonical
from exchange.evidence import Event, EventKind
from exchange.model import Kind
from tests.contract.stores import BACKENDS, PG_DSN, drop_location, intake, new_location, open_store
from tests.evidence_log import (
    DATA,
    DOC,
    LOCAL,
    M0,
    M1,
    NODE,
    PARENT,
    S1,
    SENDER,
    STATUS_DATA,
    T0,
    NodeIdentity,
    at,
    document_events,
    node_identity,
    rewrite,
)
from tests.pki import DevPki

pytestmark = pytest.mark.integration


@dataclass
class Site:
    backend: str
    where: dict[str, str]  # node id -> store location
    config: dict[str, Path]  # node id -> node file
    node_certs: Path
    nodes: dict[str, NodeIdentity]

    @property
    def key(self) -> NodeKey:  # the child's
        return self.nodes[NODE].key


def node_file(folder: Path, node: str, backend: str, where: str, parent: str | None) -> Path:
    store = (
        f'kind = "sqlite"\npath = "{where}"'
        if backend == "sqlite"
        else f'kind = "postgres"\ndsn = "{PG_DSN}"\nschema = "{where}"'
    )
    text = f"""
[node]
id = "{node}"
{f'parent = "{parent}"' if parent else ""}
[rabbitmq]
url = "amqp://guest:guest@127.0.0.1:5672/"
[store]
{store}
[trust]
ca = "pki/ca.pem"
crls = ["pki/ca.crl"]
directory = "directory.toml"
node_key = "pki/nodes/{node}.key"
node_certs = "pki/nodes"
"""
    path = folder / f"{node}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(params=BACKENDS)
def site(request: pytest.FixtureRequest, tmp_path: Path, pki: DevPki) -> Iterator[Site]:
    backend: str = request.param
    nodes = tmp_path / "pki" / "nodes"
    nodes.mkdir(parents=True)
    (tmp_path / "pki" / "ca.pem").write_bytes(pki.ca.cert_pem)
    (tmp_path / "pki" / "ca.crl").write_bytes(make_crl(pki.ca, [], when=T0))
    where, config, identities = {}, {}, {}
    for node, parent in ((NODE, PARENT), (PARENT, None)):
        identity = node_identity(pki.ca, node)
        (nodes / f"{node}.pem").write_bytes(identity.issued.cert_pem)
        (nodes / f"{node}.key").write_bytes(identity.issued.key_pem)
        identities[node] = identity
        where[node] = new_location(backend, tmp_path / node)
        config[node] = node_file(tmp_path, node, backend, where[node], parent)
    yield Site(backend, where, config, nodes, identities)
    for location in where.values():
        drop_location(backend, location)


async def record_log(site: Site) -> None:
    """What the child node records about the document, with its calls; and what its parent
    records of the checkpoints it reports."""
    child, parent = (open_store(site.backend, site.where[n]) for n in (NODE, PARENT))
    await child.migrate()
    await parent.migrate()

    async def checkpoint(minutes: int) -> None:
        head = (await child.chain_heads())["main"]
        event = checkpoint_event(
            make_checkpoint(site.key, "main", head, at(minutes)), at(minutes), PARENT
        )
        await child.record_events([event])
        await parent.record_events([dataclasses.replace(event, report_to=None)])  # its report

    try:
        await parent.record_events(
            [Event(EventKind.ACCEPTED, "accepted|p-1", T0, PARENT, message_id="p-1")]
        )
        events = document_events(site.nodes)  # the deliveries with their signed receipts
        other = intake(b"<other/>", message_id=M0, document_id="D-0")
        await child.commit_intake(dataclasses.replace(other, events=(events[0],)))
        sent = intake(DATA, message_id=M1, document_id=DOC, sender=SENDER, mailboxes=(LOCAL,))
        await child.commit_intake(dataclasses.replace(sent, events=(events[1],)))
        rows = [r for r in await child.pending_outbox(10) if r.message_id == M1]
        await child.finish_outbox([(LOCAL, M1)], [r.id for r in rows], events=[events[2]])
        await checkpoint(2)
        await child.record_events([events[3]])  # reported by the parent, which delivered there
        assert await child.mark_fetched(LOCAL, [M1], [events[4]]) == 1
        await child.record_events([events[5]])
        status = intake(
            STATUS_DATA,
            message_id=S1,
            kind=Kind.STATUS,
            document_id=DOC,
            sender=LOCAL,
            mailboxes=(SENDER,),
        )
        await child.commit_intake(dataclasses.replace(status, events=(events[6], events[7])))
        await child.record_events([events[8]])
        await checkpoint(10)
    finally:
        await child.close()
        await parent.close()


def rewrite_in_database(site: Site, key: str, edit: Callable[[dict[str, Any]], None]) -> None:
    """The operator edits one record in the database and makes the chain hold together:
    every later hash, the node's own checkpoints signed again, the chain head."""
    where = site.where[NODE]
    if site.backend == "sqlite":
        db: Any = sqlite3.connect(Path(where) / "lienthong.db")
        mark = "?"
    else:
        db = psycopg.connect(PG_DSN, options=f"-c search_path={where}")
        mark = "%s"
    with db:
        (seq,) = db.execute(f"SELECT seq FROM evidence WHERE key = {mark}", (key,)).fetchone()
        rows = db.execute(
            f"SELECT seq, record, prev FROM evidence WHERE chain = 'main' AND seq >= {mark} "
            "ORDER BY seq",
            (seq,),
        ).fetchall()
        records = [
            {"chain": "main", "seq": s, "event": json.loads(r), "prev": p} for s, r, p in rows
        ]
        last = ""
        for number, record, prev, digest in rewrite(records, seq, edit, site.key):
            db.execute(
                f"UPDATE evidence SET record = {mark}, prev = {mark}, hash = {mark} "
                f"WHERE chain = 'main' AND seq = {mark}",
                (canonical(record).decode(), prev, digest, number),
            )
            last = digest
        db.execute(f"UPDATE chain_heads SET hash = {mark} WHERE chain = 'main'", (last,))
    db.close()


def lienthong(*args: str | Path) -> int:
    return cli.main([str(a) for a in args])


def test_export_verify_and_a_chain_rewritten_in_the_database(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(record_log(site))
    child, parent = site.config[NODE], site.config[PARENT]
    bundle = tmp_path / "evidence.json"
    assert lienthong("evidence", "--config", child, DOC, "-o", bundle) == 0
    # the segment starts at the document's first entry (#2), and runs to the head
    assert "10 entries of chain main, 2 package(s), 1 CRL(s)" in capsys.readouterr().out
    body = json.loads(bundle.read_text(encoding="utf-8"))
    assert body["format"] == "lienthong-evidence/1"
    assert [e["seq"] for e in body["entries"]] == list(range(2, 12))
    assert sorted(p["message_id"] for p in body["packages"]) == [M1, S1]
    assert [c["name"] for c in body["crls"]] == ["ca.crl"]

    assert lienthong("evidence", "--verify", bundle, "--node-certs", site.node_certs) == 0
    out = capsys.readouterr().out
    assert (
        f"  {LOCAL}: delivered {at(2).isoformat()} at node {NODE}, with a signed receipt; " in out
    )
    assert "status 03 (Đã tiếp nhận)" in out
    assert "2 signed receipt(s) checked" in out
    assert out.rstrip().endswith(f"{bundle}: verified")

    kept = tmp_path / "checkpoints.json"
    assert lienthong("evidence", "checkpoints", "--config", parent, "--node", NODE, "-o", kept) == 0
    assert f"2 checkpoint(s) of node {NODE} kept at node {PARENT}" in capsys.readouterr().out
    assert lienthong("evidence", "--verify", bundle, "--config", child, "--checkpoints", kept) == 0
    assert "checked up to #10 against 1 parent checkpoint(s)" in capsys.readouterr().out

    def to_rejected(record: dict[str, Any]) -> None:
        record["detail"]["code"] = "04"

    rewrite_in_database(site, f"status|{S1}|{NODE}", to_rejected)
    forged = tmp_path / "forged.json"
    assert lienthong("evidence", "--config", child, DOC, "-o", forged) == 0
    assert lienthong("evidence", "--verify", forged, "--node-certs", site.node_certs) == 0
    assert "status 04" in capsys.readouterr().out  # alone, the rewritten chain holds together
    assert (
        lienthong(
            "evidence", "--verify", forged, "--node-certs", site.node_certs, "--checkpoints", kept
        )
        == 1
    )
    out = capsys.readouterr().out
    assert f"problem: entry main#10: its hash is not the one node {NODE} signed at" in out
    assert out.rstrip().endswith(f"{forged}: refused, 2 problem(s)")
    # the parent's file, carried in the bundle by the exporting operator, still catches it
    carried = tmp_path / "carried.json"
    assert lienthong("evidence", "--config", child, DOC, "-o", carried, "--checkpoints", kept) == 0
    assert lienthong("evidence", "--verify", carried, "--node-certs", site.node_certs) == 1


def test_an_edited_bundle_is_refused_naming_the_entry(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(record_log(site))
    bundle = tmp_path / "evidence.json"
    assert lienthong("evidence", "--config", site.config[NODE], DOC, "-o", bundle) == 0
    body = json.loads(bundle.read_text(encoding="utf-8"))
    fetched = next(e for e in body["entries"] if e["event"]["kind"] == "fetched")
    fetched["event"]["at"] = at(1).isoformat()  # fetched before it was delivered
    bundle.write_text(json.dumps(body), encoding="utf-8")
    capsys.readouterr()
    assert lienthong("evidence", "--verify", bundle, "--node-certs", site.node_certs) == 1
    assert "problem: entry main#6: its record does not match its hash" in capsys.readouterr().out


def test_unknown_documents_and_wrong_usage(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(record_log(site))
    assert lienthong("evidence", "--config", site.config[NODE], "D-404", "-o", "x.json") == 1
    assert f"D-404: no evidence at node {NODE}" in capsys.readouterr().out
    assert lienthong("evidence", "--config", site.config[NODE]) == 2
    assert lienthong("evidence", "--verify", "x.json") == 2
    assert "--node-certs DIR or --config FILE" in capsys.readouterr().err
    assert lienthong("evidence", "checkpoints", "--config", site.config[PARENT], "-o", "x") == 2
