"""The bridge to an upstream axis (docs/bridge.md), on the in-memory tree: its root
(central) bridges to an upstream standing in for the national axis, where a ministry (G09)
lives.
What the commune's system sees: its document handed over with both ids kept, the
ministry's statuses back, and refusals with their reason; what the upstream sees: done
only after the commit, fail with the reason, each package once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.bridge import Bridge
from exchange.errors import Quarantined, UpstreamUnavailable
from exchange.evidence import EventKind
from exchange.node import Node
from exchange.signing import sign
from exchange.upstream import UpstreamAgency, UpstreamCredential, UpstreamSettings
from tests.conftest import example
from tests.fake_upstream import FakeUpstream
from tests.pki import DevPki
from tests.unit.memory_tree import COMMUNE, H41, Tree, document, key_of
from tests.unit.test_tracking import status_package, view, wait_for

G09, OLD_G09, H53 = "000.00.00.G09", "000.00.00.G99", "000.00.00.H53"
DOC = f"{COMMUNE},2026/11/20,125/UBND-VP"


def settings(policy: str = "strict", **more: object) -> UpstreamSettings:
    return UpstreamSettings(
        name="vdxp",
        protocol="vdxp",
        endpoint="http://vdxp.invalid/vdxp",
        credentials=(UpstreamCredential("tayninh", "000.00.00.H53", b"s" * 16),),
        policy=policy,
        **more,  # type: ignore[arg-type]
    )


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream(
        agencies_listed=[
            UpstreamAgency(G09, "Bộ Nội vụ", old_codes=(OLD_G09,)),
            UpstreamAgency(H53, "UBND tỉnh Tây Ninh (on the national axis too)"),
        ]
    )


@pytest.fixture
async def bridge(tree: Tree, upstream: FakeUpstream, tmp_path: Path) -> AsyncIterator[Bridge]:
    made = Bridge(
        tree.nodes["central"],
        settings(),
        {"tayninh": upstream},
        cache=tmp_path / "vdxp-agencies.json",
    )
    await made.sync_agencies()
    return made


def with_policy(bridge: Bridge, policy: str) -> Bridge:
    return Bridge(bridge.node, settings(policy), bridge.clients)


async def push_until_sent(bridge: Bridge, upstream: FakeUpstream, count: int = 1) -> None:
    async with asyncio.timeout(20):
        while len(upstream.sent) < count:
            await bridge.push_once()
            await asyncio.sleep(0.05)


def from_g09(pki: DevPki, to: str = COMMUNE, number: int = 7) -> bytes:
    data = example("document-new.edxml").replace(b"125/UBND-VP<", f"{number}/BNV-VP<".encode())
    data = data.replace(b"000.00.00.H53", to.encode()).replace(b"000.21.31.H53", to.encode())
    return data.replace(b"000.00.00.G22", G09.encode())


async def copy_waiting(node: Node) -> None:
    """Until the copy for the upstream is in the node's outbox (a deadline, not a guess)."""
    async with asyncio.timeout(20):
        while not await node.store.pending_outbox(5, only_prefix="upstream:vdxp/"):  # noqa: ASYNC110 - polls a store
            await asyncio.sleep(0.05)


async def mail_of(node: Node, organ: str) -> list[str]:
    return [e.message_id for e in await node.store.mailbox(organ, unfetched_only=False, limit=50)]


# --- out: a document to an agency of the upstream ---------------------------------------


async def test_a_document_to_a_ministry_on_the_upstream_is_handed_over_with_both_ids(
    tree: Tree, pki: DevPki, bridge: Bridge, upstream: FakeUpstream
) -> None:
    data = document(pki, COMMUNE, G09, H41)
    sent = await tree.submit("commune-21-31-h53", data)
    assert sent.outcome == "accepted", sent
    await push_until_sent(bridge, upstream)
    [(doc_id, bytes_sent, kind, sender, recipients)] = upstream.sent
    assert (bytes_sent, kind, sender, recipients) == (data, "edoc", COMMUNE, (G09,))
    root = tree.nodes["central"]
    [link] = await root.store.upstream_links(str(sent.message_id))
    assert (link.upstream, link.direction, link.doc_id) == ("vdxp", "out", doc_id)
    # the commune's node follows it as far as the axis can: handed over, with the docId
    seen = await wait_for(tree.nodes["commune-21-31-h53"], DOC, {G09: "bridged", H41: "delivered"})
    row = {r.recipient: r for r in seen.recipients}[G09]
    assert (row.node, row.note) == ("central", f"handed to the vdxp axis as docId {doc_id}")


async def test_an_old_code_of_an_upstream_agency_leads_to_it(
    tree: Tree, pki: DevPki, bridge: Bridge, upstream: FakeUpstream
) -> None:
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, OLD_G09, H41))
    assert sent.outcome == "accepted", sent
    await push_until_sent(bridge, upstream)
    assert upstream.sent[0][4] == (G09,)


async def test_our_own_agencies_stay_ours_whatever_the_upstream_lists(
    tree: Tree, bridge: Bridge
) -> None:
    topology = tree.nodes["central"].settings.topology
    assert topology is not None
    assert topology.homes[H53] == "province-h53"  # listed upstream too, but ours
    assert topology.homes[G09] == "upstream:vdxp"
    # and the bridge is no broker child: no link queues are declared for it
    assert "upstream:vdxp" not in tree.nodes["central"].settings.children


async def test_the_agency_list_is_kept_for_a_restart(
    tree: Tree, bridge: Bridge, tmp_path: Path
) -> None:
    cache = tmp_path / "vdxp-agencies.json"
    assert {row["organ_id"] for row in json.loads(cache.read_bytes())} == {G09, H53}
    central = tree.nodes["central"]
    central.set_upstream_agencies("vdxp", [])  # as after a restart, before any sync
    assert central.settings.topology is not None
    assert G09 not in central.settings.topology.homes
    again = Bridge(central, settings(), bridge.clients, cache=cache)
    assert again.load_agencies() == 2
    assert central.settings.topology.homes[G09] == "upstream:vdxp"


async def test_an_upstream_that_is_down_keeps_the_copy_until_it_returns(
    tree: Tree, pki: DevPki, bridge: Bridge, upstream: FakeUpstream
) -> None:
    upstream.mode = "down"
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G09, H41))
    root = tree.nodes["central"]
    await copy_waiting(root)
    with pytest.raises(UpstreamUnavailable):
        await bridge.push_once()
    assert upstream.sent == []
    upstream.mode = "ok"
    await push_until_sent(bridge, upstream)
    assert (await root.store.upstream_links(str(sent.message_id)))[0].direction == "out"


async def test_a_definite_refusal_fails_the_copy_with_the_upstreams_reason(
    tree: Tree, pki: DevPki, bridge: Bridge, upstream: FakeUpstream
) -> None:
    upstream.mode = "refuse"
    await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G09, H41))
    root = tree.nodes["central"]
    await copy_waiting(root)
    assert await bridge.push_once() == 1
    seen = await wait_for(tree.nodes["commune-21-31-h53"], DOC, {G09: "failed"})
    reason = {r.recipient: r.reason for r in seen.recipients}[G09]
    assert reason == "vdxp refused it: sendEdoc: [18] recipient not found"


async def test_a_bridge_below_the_root_serves_its_subtree_and_the_root_leaves_it_alone(
    tree: Tree, pki: DevPki, upstream: FakeUpstream
) -> None:
    province = tree.nodes["province-h53"]
    below = Bridge(province, settings(), {"tayninh": upstream})
    await below.sync_agencies()
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G09, H41))
    assert sent.outcome == "accepted", sent
    await push_until_sent(below, upstream)
    assert upstream.sent[0][4] == (G09,)
    # the province's hop record says it handed G09 over: central, which does not know G09,
    # routes only H41 and reports nothing about G09
    seen = await wait_for(tree.nodes["commune-21-31-h53"], DOC, {G09: "bridged", H41: "delivered"})
    assert {r.recipient: r.node for r in seen.recipients}[G09] == "province-h53"
    central = tree.nodes["central"]
    about = await central.store.events_about(message_id=str(sent.message_id))
    assert not [e for e in about if e.kind is EventKind.FAILED]


# --- in: documents and statuses fetched from the upstream -------------------------------


async def test_the_ministrys_statuses_come_back_to_the_commune(
    tree: Tree, pki: DevPki, bridge: Bridge, upstream: FakeUpstream
) -> None:
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G09, H41))
    assert sent.outcome == "accepted", sent
    await push_until_sent(bridge, upstream)
    first = upstream.put("status", status_package(pki, "03", G09, COMMUNE, "2026/11/21 08:00:00"))
    second = upstream.put("status", status_package(pki, "06", G09, COMMUNE, "2026/11/22 16:00:00"))
    assert await bridge.pull_once("tayninh") == 2
    assert upstream.confirmed == [(first, True, None), (second, True, None)]
    origin = tree.nodes["commune-21-31-h53"]
    # both statuses in the commune's mailbox first: each travels on its own, and 06 may
    # be recorded before 03
    assert len(await tree.wait(COMMUNE, 2)) == 2
    done = await wait_for(origin, DOC, {G09: "06"}, status=True)
    assert sorted(code for _, author, code in done.statuses if author == G09) == ["03", "06"]
    root = tree.nodes["central"]
    kept = await root.store.upstream_message("vdxp", "in", first)
    assert kept is not None
    bridged = [
        e for e in await root.store.events_about(message_id=kept) if e.kind is EventKind.BRIDGED
    ]
    assert [(e.detail["direction"], e.detail["doc_id"]) for e in bridged] == [("in", first)]


async def test_a_package_listed_again_after_our_done_is_taken_once(
    tree: Tree, pki: DevPki, bridge: Bridge, upstream: FakeUpstream
) -> None:
    upstream.forget_done = True  # the upstream did not record our done
    data = sign(from_g09(pki), key_of(pki, G09))
    doc_id = upstream.put("edoc", data, COMMUNE)
    await bridge.pull_once("tayninh")
    await bridge.pull_once("tayninh")
    assert upstream.fetches == 1  # the second time, its docId was known: confirmed, not fetched
    assert upstream.confirmed == [(doc_id, True, None), (doc_id, True, None)]
    # and the same bytes under a new docId (the upstream queued it twice) are one package
    again = upstream.put("edoc", data, COMMUNE)
    upstream.forget_done = False
    await bridge.pull_once("tayninh")
    root = tree.nodes["central"]
    first = await root.store.upstream_message("vdxp", "in", doc_id)
    assert first is not None
    assert await root.store.upstream_message("vdxp", "in", again) == first
    assert await tree.wait(COMMUNE) == [first]
    await asyncio.sleep(0.3)
    assert await tree.mailbox(COMMUNE) == [first]


async def test_a_package_the_node_refuses_is_failed_upstream_with_the_reason(
    tree: Tree, pki: DevPki, bridge: Bridge, upstream: FakeUpstream
) -> None:
    broken = upstream.put("edoc", b"<edXML:edXMLEnvelope><not-closed>", COMMUNE)
    await bridge.pull_once("tayninh")
    [(doc_id, ok, reason)] = upstream.confirmed
    assert (doc_id, ok) == (broken, False)
    assert reason is not None
    assert reason.startswith("[xml.malformed]")


async def test_items_listed_again_after_our_answer_are_answered_again_not_polled_hot(
    pki: DevPki, bridge: Bridge, upstream: FakeUpstream
) -> None:
    upstream.forget_done = True  # it lists everything again, whatever we answered
    broken = upstream.put("edoc", b"<edXML:edXMLEnvelope><not-closed>", COMMUNE)
    good = upstream.put("edoc", sign(from_g09(pki), key_of(pki, G09)), COMMUNE)
    assert await bridge.pull_once("tayninh") == 2  # both settled: work was done
    assert await bridge.pull_once("tayninh") == 0  # nothing new: the next poll waits its turn
    assert upstream.fetches == 2  # neither fetched a second time
    assert [(d, ok) for d, ok, _ in upstream.confirmed] == [
        (broken, False),
        (good, True),
        (broken, False),
        (good, True),
    ]
    assert upstream.confirmed[0][2] == upstream.confirmed[2][2]  # the same reason again


async def test_an_upstream_may_not_bring_a_package_from_one_of_our_agencies(
    tree: Tree, pki: DevPki, bridge: Bridge, upstream: FakeUpstream
) -> None:
    forged = document(pki, "000.00.11.H53", COMMUNE, H41)  # a department hosted at the province
    upstream.put("edoc", forged, COMMUNE)
    await bridge.pull_once("tayninh")
    [(_, ok, reason)] = upstream.confirmed
    assert not ok
    assert reason is not None
    assert reason.startswith("[submitter.not_sender]")
    assert "province-h53 hosts" in reason


async def test_an_upstream_that_answers_garbage_is_polled_again_later(
    bridge: Bridge, upstream: FakeUpstream
) -> None:
    upstream.mode = "garbage"
    with pytest.raises(Exception, match=r"upstream\.garbled"):
        await bridge.pull_once("tayninh")
    state = bridge.state.credentials["tayninh"]
    assert state.last_error is not None
    assert state.last_error.startswith("upstream.garbled")
    upstream.mode = "ok"
    assert await bridge.pull_once("tayninh") == 0
    assert bridge.state.credentials["tayninh"].last_error is None


# --- policies -----------------------------------------------------------------------------

LEVELS = {
    # (policy, how it is signed): what the province does with it
    ("strict", "sha256"): "strict",
    ("strict", "sha1"): "refused",
    ("strict", "none"): "refused",
    ("legacy", "sha256"): "strict",
    ("legacy", "sha1"): "legacy",
    ("legacy", "none"): "refused",
    ("quarantine", "sha256"): "strict",
    ("quarantine", "sha1"): "legacy",
    ("quarantine", "none"): "quarantined",
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(("policy", "signed"), list(LEVELS), ids=lambda v: str(v))
async def test_each_policy_labels_or_holds_or_refuses(
    tree: Tree, pki: DevPki, bridge: Bridge, upstream: FakeUpstream, policy: str, signed: str
) -> None:
    judged = with_policy(bridge, policy)
    data = from_g09(pki, number=len(policy) * 10 + len(signed))
    if signed != "none":
        data = sign(data, key_of(pki, G09), legacy=signed == "sha1")
    doc_id = upstream.put("edoc", data, COMMUNE)
    await judged.pull_once("tayninh")
    [(_, ok, reason)] = upstream.confirmed
    expected = LEVELS[(policy, signed)]
    if expected == "refused":
        assert not ok
        assert reason is not None
        assert reason.startswith("[signature.")
        return
    assert ok
    root = tree.nodes["central"]
    message_id = await root.store.upstream_message("vdxp", "in", doc_id)
    assert message_id is not None
    accepted = [
        e
        for e in await root.store.events_about(message_id=message_id)
        if e.kind is EventKind.ACCEPTED
    ]
    assert accepted[0].detail["level"] == expected
    assert accepted[0].detail["source"] == "upstream:vdxp"
    if expected == "quarantined":
        [held] = await root.store.quarantined()
        assert held.message_id == message_id
        assert "signature" in held.reason
        await asyncio.sleep(0.3)
        assert await tree.mailbox(COMMUNE) == []  # held: nothing delivered
    else:
        assert await tree.wait(COMMUNE) == [message_id]


async def test_an_operator_releases_one_held_package_and_rejects_another(
    tree: Tree, pki: DevPki, bridge: Bridge, upstream: FakeUpstream
) -> None:
    held = with_policy(bridge, "quarantine")
    first = upstream.put("edoc", from_g09(pki, number=1), COMMUNE)
    second = upstream.put("edoc", from_g09(pki, number=2), COMMUNE)
    await held.pull_once("tayninh")
    root = tree.nodes["central"]
    kept = [await root.store.upstream_message("vdxp", "in", d) for d in (first, second)]
    released, rejected = (str(m) for m in kept)
    decided = await root.decide_quarantined(
        released, "released", by="ops-an", note="confirmed by phone with Bộ Nội vụ"
    )
    assert (decided.decision, decided.decided_by) == ("released", "ops-an")
    assert await tree.wait(COMMUNE) == [released]
    await root.decide_quarantined(rejected, "rejected", by="ops-an", note="not theirs")
    with pytest.raises(Quarantined, match="rejected by ops-an"):
        await root.decide_quarantined(rejected, "released", by="ops-binh")
    seen = await view(root, rejected)
    row = {r.recipient: r for r in seen.recipients}[COMMUNE]
    assert row.transport == "failed"
    assert row.reason == "held in quarantine and rejected by ops-an: not theirs"
    assert await tree.mailbox(COMMUNE) == [released]


def test_an_upstream_without_a_policy_is_judged_by_quarantine(bridge: Bridge) -> None:
    unset = UpstreamSettings("lgsp", "bkav", "http://lgsp.invalid", settings().credentials)
    Bridge(bridge.node, unset, bridge.clients)
    policy = bridge.node.settings.policy_for("upstream:lgsp")
    assert (policy.name, policy.quarantine_failures, policy.allow_unsigned) == (
        "quarantine",
        True,
        False,
    )
