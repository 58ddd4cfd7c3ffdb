"""The admission pool: worker processes fed through pipes. What a caller sees: the same
verdict as admission in-process, the same errors, and a worker that crashes or hangs
costing only the packages it held, which are told to retry."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.admission_pool import AdmissionPool, InlineAdmission, WorkerLost
from adapters.sandbox_tree import load_topology, topology_file, write_tree
from exchange.errors import AdmissionCrashed, ConfigurationError, SignatureInvalid
from exchange.policy import STRICT
from exchange.signing import SigningKey, sign
from tests.conftest import example

NODE = "district-31-h53-r"
SENDER = "000.00.00.G22"


@pytest.fixture
def node_file(tmp_path: Path) -> Path:
    topology = load_topology(topology_file(), "-r")
    return write_tree(tmp_path, topology, "amqp://guest:guest@127.0.0.1:5672/")[NODE]


@pytest.fixture
def package(node_file: Path) -> bytes:
    pki = node_file.parent.parent.parent / "pki"
    key = SigningKey.from_pem(
        (pki / "agencies" / f"{SENDER}.key").read_bytes(),
        (pki / "agencies" / f"{SENDER}.pem").read_bytes(),
    )
    return sign(example("document-new.edxml"), key)


@pytest.fixture
async def pool(node_file: Path) -> AsyncIterator[AdmissionPool]:
    pool = AdmissionPool(node_file, 2)
    await pool.start()
    yield pool
    await pool.aclose()


async def test_a_worker_gives_the_verdict_admission_gives_in_process(
    pool: AdmissionPool, node_file: Path, package: bytes
) -> None:
    inline = InlineAdmission(node_file)
    try:
        here = await inline(package, STRICT)
        there = await asyncio.gather(*(pool(package, STRICT) for _ in range(6)))
    finally:
        inline.shutdown()
    assert len(pool.pids()) == 2
    assert {a.package for a in there} == {here.package}
    assert there[0].package.sender.organ_id == SENDER


async def test_a_refusal_crosses_from_the_worker_with_its_code_and_reason(
    pool: AdmissionPool, node_file: Path, package: bytes
) -> None:
    tampered = package.replace(b"125/UBND-VP", b"126/UBND-VP")
    inline = InlineAdmission(node_file)
    try:
        with pytest.raises(SignatureInvalid) as here:
            await inline(tampered, STRICT)
    finally:
        inline.shutdown()
    with pytest.raises(SignatureInvalid) as there:
        await pool(tampered, STRICT)
    assert there.value.code == here.value.code == "signature.invalid"
    assert str(there.value) == str(here.value)


async def test_a_package_whose_worker_dies_is_counted_and_those_behind_it_only_retry(
    node_file: Path, package: bytes
) -> None:
    pool = AdmissionPool(node_file, 1)
    await pool.start()
    try:
        (victim,) = pool.pids()
        os.kill(victim, signal.SIGSTOP)  # it holds both requests without answering
        judged = asyncio.ensure_future(pool(package, STRICT))
        behind = asyncio.ensure_future(pool(package, STRICT))
        await asyncio.sleep(0.1)
        os.kill(victim, signal.SIGKILL)  # as a crash in a parser, or the OOM killer, would
        with pytest.raises(AdmissionCrashed, match=f"worker {victim} ended while judging it"):
            await judged
        with pytest.raises(WorkerLost, match="killed by SIGKILL") as lost:
            await behind
        assert lost.value.code == "transient.fault"  # not counted against that package
        admitted = await pool(package, STRICT)  # a new worker takes its place
        assert admitted.package.sender.organ_id == SENDER
        assert victim not in pool.pids()
    finally:
        await pool.aclose()


async def test_a_worker_that_cannot_start_is_a_clear_error_and_a_reload_keeps_the_old(
    pool: AdmissionPool, node_file: Path, package: bytes
) -> None:
    before = pool.pids()
    text = node_file.read_text()
    node_file.write_text(re.sub(r'\nca = "[^"]*"', '\nca = "/nowhere/ca.pem"', text, count=1))
    try:
        with pytest.raises(ConfigurationError, match=r"did not start: .*nowhere/ca\.pem"):
            await pool.reload()
        assert pool.pids() == before  # the workers it had go on
        admitted = await pool(package, STRICT)
        assert admitted.package.sender.organ_id == SENDER
        broken = AdmissionPool(node_file, 1)
        with pytest.raises(ConfigurationError, match=r"nowhere/ca\.pem"):
            await broken.start()
        await broken.aclose()
    finally:
        node_file.write_text(text)


async def test_a_caller_that_stops_waiting_stops_the_hung_worker_and_another_takes_over(
    pool: AdmissionPool, package: bytes
) -> None:
    hung = pool.pids()[0]
    os.kill(hung, signal.SIGSTOP)  # as if a package made it hang
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await pool(package, STRICT)
    for _ in range(50):  # killed: it is reaped by the loop
        if hung not in pool.pids():
            break
        await asyncio.sleep(0.05)
    assert hung not in pool.pids()
    admitted = await pool(package, STRICT)
    assert admitted.package.sender.organ_id == SENDER


async def test_closing_the_pool_ends_every_worker(node_file: Path, package: bytes) -> None:
    pool = AdmissionPool(node_file, 2)
    await pool(package, STRICT)
    pids = pool.pids()
    await pool.aclose()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
