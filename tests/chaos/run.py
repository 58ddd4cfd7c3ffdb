"""One chaos run: the stand up, the load on, the faults on their schedule, then the load
stopped, everything healed, the tree left to drain, and the ledger checked.

Its report (printed, and written as JSON under build/chaos/) gives the figures
docs/reliability.md quotes: faults injected by kind, packages sent, copies owed, lost,
duplicated, refused, retries, and the nodes that died by themselves.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.chaos.faults import Injector, schedule
from tests.chaos.ledger import Findings, Ledger
from tests.chaos.load import Load
from tests.chaos.rabbit_cluster import RabbitCluster, SingleBroker
from tests.chaos.services import PrivatePostgres
from tests.chaos.stand import Stand

REPORTS = Path(__file__).resolve().parents[2] / "build" / "chaos"


@dataclass
class Plan:
    name: str
    seconds: float  # of load and faults
    rate: float  # packages per second, all senders together
    fault_every_s: float
    seed: int = 11
    drain_s: float = 240  # after healing: how long the tree may take to settle
    cluster: bool = False  # a three-node RabbitMQ cluster with quorum queues, not one node


@dataclass
class Report:
    plan: dict[str, Any]
    started: str
    seconds: float = 0
    faults: dict[str, int] = field(default_factory=dict)
    faults_total: int = 0
    packages_sent: int = 0
    copies_owed: int = 0
    delivered: int = 0
    failed_with_reason: int = 0
    lost: int = 0
    duplicated: int = 0
    not_accepted: int = 0
    without_receipt: int = 0
    refused: list[tuple[int, str, str]] = field(default_factory=list)
    retries: int = 0
    retry_causes: dict[str, int] = field(default_factory=dict)
    exited: dict[str, int] = field(default_factory=dict)
    node_starts: dict[str, int] = field(default_factory=dict)
    settled_after_s: float | None = None
    commit: str = ""

    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.not_accepted == 0
            and self.without_receipt == 0
            and not self.refused
            and not self.exited
        )


async def chaos_run(folder: Path, plan: Plan) -> tuple[Report, Findings]:
    broker: SingleBroker | RabbitCluster = await asyncio.to_thread(
        (RabbitCluster(3) if plan.cluster else SingleBroker()).__enter__
    )
    postgres = await asyncio.to_thread(PrivatePostgres().start)
    stand = Stand(folder, broker, postgres, suffix=f"-c{uuid.uuid4().hex[:4]}")
    report = Report(asdict(plan), datetime.now(UTC).isoformat(timespec="seconds"))
    report.commit = _commit()
    try:
        await stand.start()
        agencies = [a.organ_id for a in stand.topology.agencies]
        senders = [
            next(a.organ_id for a in stand.topology.agencies if a.home_node == n)
            for n in stand.nodes
        ]
        load = Load(stand, senders, agencies, plan.rate, seed=plan.seed)
        faults = schedule(stand, seconds=plan.seconds, every_s=plan.fault_every_s, seed=plan.seed)
        REPORTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        injector = Injector(stand, faults, REPORTS / f"{plan.name}-{stamp}-faults.json")
        started = time.monotonic()
        load.start()
        await injector.run(started, plan.seconds)
        await asyncio.sleep(max(0.0, started + plan.seconds - time.monotonic()))
        async with asyncio.timeout(300):
            await load.stop()  # every submission answered: the nodes are all back
        report.seconds = round(time.monotonic() - started, 1)
        ledger = Ledger(stand)
        drained = time.monotonic()
        findings = await ledger.check(load.tally.sent)
        while not findings.settled and time.monotonic() - drained < plan.drain_s:
            await asyncio.sleep(5)
            findings = await ledger.check(load.tally.sent)
        if findings.settled:
            report.settled_after_s = round(time.monotonic() - drained, 1)
        report.exited = stand.exited()
        await stand.stop()
        findings = await ledger.check(load.tally.sent)  # at rest, the final word
        _fill(report, findings, load, injector, stand)
        (REPORTS / f"{plan.name}-{stamp}.json").write_text(
            json.dumps(asdict(report), indent=1), encoding="utf-8"
        )
        return report, findings
    finally:
        await stand.stop()
        await asyncio.to_thread(broker.stop_all)
        await asyncio.to_thread(postgres.close)


def _fill(report: Report, found: Findings, load: Load, injector: Injector, stand: Stand) -> None:
    report.faults = injector.counts()
    report.faults_total = len(injector.done)
    report.packages_sent = found.accepted
    report.copies_owed = found.copies
    report.delivered = found.in_mailbox
    report.failed_with_reason = found.failed_with_reason
    report.lost = len(found.missing)
    report.duplicated = len(found.twice)
    report.not_accepted = len(found.not_accepted)
    report.without_receipt = len(found.without_receipt)
    report.refused = load.tally.refused[:20]
    report.retries = load.tally.retries
    report.retry_causes = dict(load.tally.errors)
    report.node_starts = dict(stand.started)


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip()


def describe(report: Report, findings: Findings) -> str:
    faults = ", ".join(f"{n} {k}" for k, n in sorted(report.faults.items()))
    return "\n".join(
        [
            f"chaos run {report.plan['name']}: {report.seconds:.0f} s, "
            f"{report.faults_total} faults ({faults})",
            findings.summary(),
            f"  refused: {len(report.refused)}; retries: {report.retries} {report.retry_causes}",
            f"  processes started per node: {report.node_starts}; died by themselves: "
            f"{report.exited or 'none'}; settled {report.settled_after_s} s after the load",
        ]
    )
