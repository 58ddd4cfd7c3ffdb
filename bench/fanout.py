"""One signed package to 10,000 agencies, over a generated tree of 111 nodes.

The tree: one central node, 10 provinces, 10 districts under each (111 nodes), packed
round-robin into 4 ``lienthong serve`` processes (several ``--config`` each, admission in a
thread). 10,000 agencies are spread over the nodes (100 on central, 90 on each province,
90 on each district), with standard OrganIds (``DDD.CC.BB.XNN``). An agency of the
central node sends two documents in turn, each with a To entry per recipient and a
10 KiB attachment: to every other agency (5,000), then to every agency (10,000). The
first measures the tree at a size whose transport envelope fits in an AMQP header frame;
the second is the goal (docs/benchmarks.md says what happens to it).

Measured per package: the time from the submission to the last mailbox row (the
``delivered_at`` the nodes stamp on them; completion is watched by polling every store
read-only), the CPU of the node processes over that time (user + system, /proc), and
the bytes that crossed the links (bench/observe.py). Once: the tree's start and memory.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from adapters.client import NodeClient
from adapters.pki_files import load_directory
from bench.documents import numbered, signed_document
from bench.observe import LinkCopy, connection_errors, link_copies, mailbox_rows, rss_mib
from bench.tree import AMQP_URL, BenchNode, BenchTree, cpu_seconds, delete_queues, suffix

SENDER = "000.00.00.G01"


@dataclass(frozen=True)
class Shape:
    provinces: int
    districts: int  # under each province
    central_agencies: int
    province_agencies: int
    district_agencies: int
    processes: int
    deadline_s: float

    @property
    def recipients(self) -> int:
        return self.central_agencies + self.provinces * (
            self.province_agencies + self.districts * self.district_agencies
        )


FULL = Shape(10, 10, 100, 90, 90, processes=4, deadline_s=120)
QUICK = Shape(2, 2, 3, 3, 3, processes=2, deadline_s=30)


def generate(shape: Shape, tag: str) -> tuple[list[BenchNode], dict[str, str]]:
    """The nodes (round-robin over the processes) and each agency's home node."""
    central = f"fc-{tag}"
    ids: list[tuple[str, str | None]] = [(central, None)]
    homes = {SENDER: central}
    homes |= {f"000.00.{k:02d}.G02": central for k in range(shape.central_agencies)}
    for p in range(1, shape.provinces + 1):
        province = f"fp{p:02d}-{tag}"
        ids.append((province, central))
        # the province itself, then its departments (level-2 codes after the districts')
        units = [0, *range(shape.districts + 1, 100)][: shape.province_agencies]
        homes |= {f"000.00.{k:02d}.H{p:02d}": province for k in units}
        for d in range(1, shape.districts + 1):
            district = f"fd{p:02d}{d:02d}-{tag}"
            ids.append((district, province))
            # the district itself, then its communes
            homes |= {
                f"000.{c:02d}.{d:02d}.H{p:02d}": district for c in range(shape.district_agencies)
            }
    nodes = [
        BenchNode(node, parent, process=index % shape.processes)
        for index, (node, parent) in enumerate(ids)
    ]
    return nodes, homes


@dataclass(frozen=True)
class Outcome:
    recipients: int
    size: int  # package bytes
    delivered: int
    seconds: float | None  # submission to the last mailbox row; None if not all arrived
    cpu_s: float
    per_level: dict[str, tuple[int, int]]  # level -> (delivered, expected)
    links: list[LinkCopy]
    connection_errors: list[str]  # the nodes' broker connections lost meanwhile, why


@dataclass(frozen=True)
class Startup:
    files_s: float
    directory_s: float
    ready_s: float
    rss_ready: list[float]
    rss_after: list[float]


def run(*, rounds: int, quick: bool) -> None:
    """One tree, two packages: to every other agency, then to every agency (``rounds``
    is not used: the tree is the measurement)."""
    del rounds
    shape = QUICK if quick else FULL
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        nodes, homes = generate(shape, suffix())
        tree = BenchTree(folder, nodes, homes, [SENDER])
        began = time.perf_counter()
        tree.write()
        files_s = time.perf_counter() - began
        began = time.perf_counter()
        load_directory(tree.pki / "directory.toml")
        directory_s = time.perf_counter() - began
        everyone = [organ for organ in homes if organ != SENDER]
        outcomes = []
        try:
            began = time.perf_counter()
            tree.start()
            asyncio.run(tree.ready(timeout=shape.deadline_s))
            ready_s = time.perf_counter() - began
            rss_ready = rss_mib(tree.pids())
            for recipients in (everyone[::2], everyone):
                outcomes.append(asyncio.run(_send_and_watch(tree, recipients, shape)))
            rss_after = rss_mib(tree.pids())
        finally:
            tree.stop()
            asyncio.run(delete_queues(tree.queue_names()))
        startup = Startup(files_s, directory_s, ready_s, rss_ready, rss_after)
        _report(shape, outcomes, startup)


async def _send_and_watch(tree: BenchTree, recipients: list[str], shape: Shape) -> Outcome:
    key = tree.key(SENDER)  # each package its own DocumentId: ``-<recipients>-0``
    (data,) = numbered(signed_document(SENDER, recipients, key), key, 1, f"-{len(recipients)}-")
    expected = Counter(tree.homes[organ] for organ in recipients)
    logs = connection_errors(tree)
    cpu_before = cpu_seconds(tree.pids())
    submitted = time.time()
    async with NodeClient(AMQP_URL, tree.nodes[0].id, timeout_s=120) as client:
        (answer,) = await client.submit([data], as_organ=SENDER)
    if answer.outcome != "accepted" or answer.message_id is None:
        raise RuntimeError(f"the central node did not accept the package: {answer}")
    message_id = answer.message_id
    found: dict[str, tuple[int, str | None]] = {}
    deadline = time.monotonic() + shape.deadline_s
    while time.monotonic() < deadline:
        for node, count in expected.items():
            if found.get(node, (0, None))[0] < count:
                found[node] = mailbox_rows(tree.database(node), message_id)
        if all(found[n][0] >= c for n, c in expected.items()):
            break
        await asyncio.sleep(0.5)
    cpu = cpu_seconds(tree.pids()) - cpu_before
    complete = all(found[n][0] >= c for n, c in expected.items())
    last = max(
        (datetime.fromisoformat(at).timestamp() for _, at in found.values() if at), default=0
    )
    per_level: dict[str, tuple[int, int]] = {}
    for node, count in expected.items():
        level = {"fc": "central", "fp": "provinces", "fd": "districts"}[node[:2]]
        got, want = per_level.get(level, (0, 0))
        per_level[level] = (got + found[node][0], want + count)
    return Outcome(
        recipients=len(recipients),
        size=len(data),
        delivered=sum(rows for rows, _ in found.values()),
        seconds=last - submitted if complete else None,
        cpu_s=cpu,
        per_level=per_level,
        links=link_copies(tree, message_id),
        connection_errors=connection_errors(tree)[len(logs) :],
    )


def _report(shape: Shape, outcomes: list[Outcome], startup: Startup) -> None:
    nodes = 1 + shape.provinces * (1 + shape.districts)
    print(f"\n### Fan-out: one package to {shape.recipients:,} agencies\n")
    print(
        f"Tree: {nodes} nodes (1 central, {shape.provinces} provinces, "
        f"{shape.provinces * shape.districts} districts) in {shape.processes} `lienthong serve` "
        f"processes, {shape.recipients:,} agencies. Two packages in turn from {SENDER} on the "
        "central node: to every other agency, then to every agency.\n"
    )
    heads = [f"to {o.recipients:,} agencies" for o in outcomes]
    print(f"| measure | {' | '.join(heads)} |")
    print(f"|---|{'---|' * len(outcomes)}")

    def row(label: str, cells: list[str]) -> None:
        print(f"| {label} | {' | '.join(cells)} |")

    row(
        "package bytes (a To entry per recipient, a 10 KiB attachment)",
        [f"{o.size:,}" for o in outcomes],
    )
    row(
        "submission to the last mailbox row",
        [
            f"**{o.seconds:.2f} s**"
            if o.seconds is not None
            else f"**not all within {shape.deadline_s:.0f} s**"
            for o in outcomes
        ],
    )
    row("mailbox rows written", [f"{o.delivered:,} of {o.recipients:,}" for o in outcomes])
    for level in ("central", "provinces", "districts"):
        row(
            f"… on {level}",
            [f"{o.per_level[level][0]:,} of {o.per_level[level][1]:,}" for o in outcomes],
        )
    row(
        "CPU of the node processes, submission to last row (or deadline)",
        [f"{o.cpu_s:.1f} s" for o in outcomes],
    )
    row(
        "link copies: outbox rows / published / most on one link",
        [
            f"{len(o.links)} / {sum(c.published for c in o.links)} / "
            f"{max(Counter((c.source, c.target) for c in o.links).values(), default=0)}"
            for o in outcomes
        ],
    )
    row(
        "bytes per link copy: package + envelope header (largest)",
        [f"{o.size:,} + {max((c.envelope_bytes for c in o.links), default=0):,}" for o in outcomes],
    )
    row(
        "bytes carried over all links (published copies)",
        [f"{sum(c.carried for c in o.links if c.published) / 2**20:.1f} MiB" for o in outcomes],
    )
    row(
        "broker connections the nodes lost meanwhile",
        [str(len(o.connection_errors)) for o in outcomes],
    )
    print(
        f"\nThe tree: its files (PKI, directory, node files) written in {startup.files_s:.1f} s; "
        f"the directory ({shape.recipients + 1:,} agencies) read once in "
        f"{startup.directory_s:.2f} s; "
        f"from start to every node consuming its queues and links {startup.ready_s:.1f} s; "
        "resident memory per process when ready / at the end: "
        + ", ".join(
            f"{a:.0f}/{b:.0f}" for a, b in zip(startup.rss_ready, startup.rss_after, strict=True)
        )
        + " MiB."
    )
    for o in outcomes:
        if o.connection_errors:
            print(f"\nTo {o.recipients:,}: the first connection lost: `{o.connection_errors[0]}`")
    final = outcomes[-1]
    if final.seconds is not None:
        verdict = "met" if final.seconds <= 60 else "NOT met"
        print(f"\nGoal, every one of {final.recipients:,} mailboxes within 60 s: {verdict}.")
    else:
        print(f"\nGoal, every one of {final.recipients:,} mailboxes within 60 s: NOT met.")
