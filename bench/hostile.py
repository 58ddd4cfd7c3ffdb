"""``python -m bench hostile``: legitimate agencies' latency while attackers hit every door.

One node (its own process, the real RabbitMQ) with its REST API, SDK facade and AMQP face.
Legitimate agencies submit at a steady paced rate, half over REST (H53's system), half over
AMQP (a login for H53), for ``seconds``; once without attack (baseline) and once while
attackers hit every door at the same time: slowloris connections, the admission corpus at
REST and at the SDK facade, tampered HMACs, wrong tokens, one agency's token sending as
another, a flood from one AMQP login. Every HTTP client and the flooding login have the
documented default rate, 20 a second. The attacker is a process of its own (on the same
two cores), as it would be a machine of its own. Rounds alternate; figures are median
(min–max).

Reported: the legitimate p50/p99 with and without the attack (target: p99 ≤ 3×), packages
lost (every accepted legitimate package is in its recipient's mailbox exactly once), and
per kind of hostile input, how many were tried and how many were let in (target: 0)."""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections import Counter
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import aiohttp

from adapters.client import NodeClient
from bench.report import Headline, Section
from bench.timing import spread
from tests.integration.broker import AMQP_URL
from tests.integration.doors import (
    INVALID,
    Door,
    close_door,
    open_door,
    sdk_send_request,
    wait_open,
)
from tests.integration.harness import COMMUNE, G22, H53

SLOW_CONNECTIONS = 50
# callers at once, each closed-loop (one connection each), as many as the slowloris
# connections
HTTP_WORKERS = 50


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Attack:
    def __init__(self, door: Door) -> None:
        self.door = door
        self.tried: Counter[str] = Counter()
        self.let_in: Counter[str] = Counter()

    def note(self, kind: str, admitted: bool) -> None:
        self.tried[kind] += 1
        if admitted:
            self.let_in[kind] += 1

    async def slowloris(self, stop: asyncio.Event) -> None:
        async def one() -> None:
            while not stop.is_set():
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.door.port)
                except OSError:
                    await asyncio.sleep(0.5)
                    continue
                self.note("slowloris (headers dribbled)", False)
                try:
                    writer.write(b"POST /v1/packages HTTP/1.1\r\nHost: x\r\n")
                    while not stop.is_set() and not reader.at_eof():
                        writer.write(b"X")
                        await writer.drain()
                        await asyncio.sleep(0.5)
                    answered = await reader.read(64)
                    if answered.startswith(b"HTTP/1.1 2"):
                        self.let_in["slowloris (headers dribbled)"] += 1
                except ConnectionError:
                    pass
                finally:
                    writer.close()

        await asyncio.gather(*(one() for _ in range(SLOW_CONNECTIONS)))

    async def http(self, stop: asyncio.Event, http: aiohttp.ClientSession) -> None:
        """``HTTP_WORKERS`` callers at once, each sending the next hostile request as soon as
        the last is answered; the packages are made once, so that the attacker's own work
        is the requests, not the signing."""
        door = self.door
        rest = [door.corpus(path, G22) for path in INVALID]
        sdk = [door.corpus(path, COMMUNE) for path in INVALID]
        tampered, form = sdk_send_request(door.package(COMMUNE, [G22]))
        tampered["XroadVnpt-hash-header"] = "0" * 64
        foreign = door.package(H53, [G22])

        async def worker(n: int) -> None:
            while not stop.is_set():
                n += HTTP_WORKERS
                status, _ = await door.rest_submit(http, rest[n % len(rest)], who="g22")
                self.note("corpus at REST", status < 300)
                status, body = await door.sdk_send(http, sdk[n % len(sdk)])
                self.note("corpus at the SDK facade", body.get("status") == "OK")
                async with http.post(
                    f"{door.base}/vdxp/sendEdoc", data=form, headers=tampered
                ) as got:
                    self.note("tampered HMAC", got.status < 300)
                async with http.post(
                    f"{door.base}/v1/packages",
                    data=foreign,
                    headers={"Authorization": "Bearer not-a-token"},
                ) as got:
                    self.note("wrong bearer token", got.status < 300)
                status, _ = await door.rest_submit(http, foreign, who="g22")
                self.note("another agency's token", status < 300)

        await asyncio.gather(*(worker(n) for n in range(HTTP_WORKERS)))

    async def flood(self, stop: asyncio.Event) -> None:
        """Bursts of 500 published as fast as the broker takes them, never waiting for the
        rate: a flood, not a client that keeps to its limit."""
        async with NodeClient(self.door.flood_url, self.door.node.node_id, timeout_s=60) as c:
            while not stop.is_set():
                junk = [f"<flood id='{uuid.uuid4()}'/>".encode() for _ in range(500)]
                for answer in await c.submit(junk, as_organ=G22, wait_for_rate=False):
                    self.note("AMQP flood from one login", answer.outcome == "accepted")


async def _attack(door: Door, stop: asyncio.Event) -> Attack:
    attacker = Attack(door)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=120),
        connector=aiohttp.TCPConnector(limit=HTTP_WORKERS),
    ) as http:
        await asyncio.gather(
            attacker.slowloris(stop),
            attacker.http(stop, http),
            attacker.flood(stop),
            return_exceptions=True,
        )
    return attacker


def _attacker_process(door: Door, stop: Event, counts: Queue) -> None:  # type: ignore[type-arg]
    """The attacker in a process of its own, as it would be on a machine of its own: its
    work does not hold up the legitimate client's event loop (it still shares the cores)."""

    async def main() -> Attack:
        halt = asyncio.Event()
        running = asyncio.create_task(_attack(door, halt))
        while not stop.is_set():  # noqa: ASYNC110 - a process-shared flag, not an asyncio one
            await asyncio.sleep(0.1)
        halt.set()
        return await running

    attacker = asyncio.run(main())
    counts.put((dict(attacker.tried), dict(attacker.let_in)))


class Attacker:
    """Starts the attacker's process before a round and collects its counts after."""

    def __init__(self, door: Door) -> None:
        context = multiprocessing.get_context("fork")  # the door's keys and tokens, as they are
        self.stop = context.Event()
        self.counts: Queue = context.Queue()  # type: ignore[type-arg]
        self.process = context.Process(
            target=_attacker_process, args=(door, self.stop, self.counts), daemon=True
        )

    def __enter__(self) -> Attacker:
        self.process.start()
        time.sleep(1.0)  # the attack is on before the first measured package
        return self

    def finish(self) -> tuple[Counter[str], Counter[str]]:
        self.stop.set()
        tried, let_in = self.counts.get(timeout=180)
        self.process.join(timeout=60)
        return Counter(tried), Counter(let_in)

    def __exit__(self, *exc: object) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


async def _round(door: Door, seconds: float, rate: float) -> dict[str, object]:
    latencies: list[float] = []
    by_door: dict[str, list[float]] = {"rest": [], "amqp": []}
    accepted: list[str] = []
    refused: Counter[str] = Counter()
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http,
        NodeClient(AMQP_URL, door.node.node_id, timeout_s=120) as amqp,
    ):

        async def one(over: str) -> None:
            data = door.package(H53, [G22])
            started = time.perf_counter()
            if over == "rest":
                status, body = await door.rest_submit(http, data)
                ok, ident = status == 201, str(body.get("message_id"))
                code = str(body.get("code"))
            else:
                (answer,) = await amqp.submit([data], as_organ=H53)
                ok, ident, code = (
                    answer.outcome == "accepted",
                    str(answer.message_id),
                    str(answer.code),
                )
            latencies.append(time.perf_counter() - started)
            by_door[over].append(latencies[-1])
            if ok:
                accepted.append(ident)
            else:
                refused[code] += 1

        sends = []
        start = time.perf_counter()
        for i in range(int(seconds * rate)):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            sends.append(asyncio.create_task(one("rest" if i % 2 == 0 else "amqp")))
        await asyncio.gather(*sends)
    async with asyncio.timeout(120):
        while not set(accepted) <= set(found := await door.node.mailbox(G22)):  # noqa: ASYNC110
            await asyncio.sleep(0.5)
    counts = Counter(found)
    lost = sum(1 for ident in accepted if counts[ident] != 1)
    return {
        "p50": _p(latencies, 0.5) * 1000,
        "p99": _p(latencies, 0.99) * 1000,
        "p99 rest": _p(by_door["rest"], 0.99) * 1000,
        "p99 amqp": _p(by_door["amqp"], 0.99) * 1000,
        "sent": len(latencies),
        "refused": sum(refused.values()),
        "lost": lost,
    }


def _measured(door: Door, attack: bool, seconds: float, rate: float) -> dict[str, object]:
    if not attack:
        return {**asyncio.run(_round(door, seconds, rate)), "tried": {}, "let_in": {}}
    with Attacker(door) as attacker:
        got = asyncio.run(_round(door, seconds, rate))
        tried, let_in = attacker.finish()
    return {**got, "tried": tried, "let_in": let_in}


def run(*, rounds: int, quick: bool, plots: Path | None = None) -> Section:
    del plots
    repeats = 1 if quick else max(3, rounds)
    seconds, rate = (4.0, 10.0) if quick else (60.0, 30.0)
    results: dict[bool, list[dict[str, object]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        # every HTTP client at the documented default rate (20 a second), the flooding
        # AMQP login at 20 a second: the node as an operator would run it
        door = open_door(
            Path(tmp), header_timeout_s=5, body_timeout_s=5, flood_rate=20, rate_per_s=20.0
        )
        try:
            asyncio.run(wait_open(door))
            for repeat in range(repeats):
                for attack in (False, True) if repeat % 2 == 0 else (True, False):
                    got = _measured(door, attack, seconds, rate)
                    results[attack].append(got)
                    print(  # a full run takes a quarter of an hour: say where it is
                        f"hostile: round {repeat + 1}/{repeats} "
                        f"{'attack' if attack else 'baseline'}: p99 {got['p99']:.0f} ms, "
                        f"lost {got['lost']}",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            asyncio.run(close_door(door))
    return _section(results, seconds, rate, repeats)


def _section(
    results: dict[bool, list[dict[str, object]]], seconds: float, rate: float, repeats: int
) -> Section:
    def col(attack: bool, key: str) -> list[float]:
        return [float(r[key]) for r in results[attack]]  # type: ignore[arg-type]

    ratios = [a / b for a, b in zip(col(True, "p99"), col(False, "p99"), strict=True)]
    tried: Counter[str] = Counter()
    let_in: Counter[str] = Counter()
    for r in results[True]:
        tried.update(r["tried"])  # type: ignore[call-overload]
        let_in.update(r["let_in"])  # type: ignore[call-overload]
    lost = int(sum(col(True, "lost")) + sum(col(False, "lost")))
    lines = [
        f"Legitimate agencies submit {rate:g} packages/s (half REST, half AMQP) for "
        f"{seconds:g} s per round, {repeats} round(s) each way, alternating; "
        "median (min–max) over the rounds. The attacker runs in a process of its own, with "
        f"{SLOW_CONNECTIONS} slowloris connections, {HTTP_WORKERS} HTTP callers each sending "
        "its next hostile request as soon as the last is answered, and one AMQP login "
        "flooding in bursts of 500.",
        "",
        "| round | p50 ms | p99 ms | p99 REST ms | p99 AMQP ms | sent | refused | lost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for attack, name in ((False, "baseline"), (True, "under attack")):
        lines.append(
            f"| {name} | {spread(col(attack, 'p50'), '{:.1f}')} | "
            f"{spread(col(attack, 'p99'), '{:.1f}')} | "
            f"{spread(col(attack, 'p99 rest'), '{:.1f}')} | "
            f"{spread(col(attack, 'p99 amqp'), '{:.1f}')} | {spread(col(attack, 'sent'))} | "
            f"{spread(col(attack, 'refused'))} | {spread(col(attack, 'lost'))} |"
        )
    lines += [
        "",
        f"p99 under attack / baseline, per round: {spread(ratios, '{:.2f}')}.",
        "",
        "| hostile input | tried | let in |",
        "|---|---|---|",
        *(f"| {kind} | {tried[kind]} | {let_in[kind]} |" for kind in sorted(tried)),
        "",
    ]
    worst = max(ratios)
    return Section(
        "hostile",
        "Hostile input at every door, under load (issue 11)",
        "\n".join(lines),
        headlines=[
            Headline(
                "legitimate p99 under attack / without",
                spread(col(True, "p99"), "{:.1f}"),
                spread(col(False, "p99"), "{:.1f}"),
                spread(ratios, "{:.2f}"),
                "≤ 3×",
                worst <= 3.0,
            ),
            Headline("legitimate packages lost", str(lost), "", "", "0", lost == 0),
            Headline(
                "hostile inputs let in",
                f"{sum(let_in.values())} of {sum(tried.values())}",
                "",
                "",
                "0",
                sum(let_in.values()) == 0,
            ),
        ],
    )
