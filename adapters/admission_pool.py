"""Admission in worker processes, so that parsing, XSD and signatures use every core.

Each worker builds its own admission context from the node file once, at start
(trust store, directory, limits), and then judges packages: bytes in, a frozen
``Admitted`` or one of the node's errors out (both pickle). Threads share one
interpreter lock, which the XML and signature work holds for most of its time.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from adapters.config_files import load_directory_for, load_node_config, load_trust
from adapters.pades_pyhanko import pdf_check_for
from exchange.admission import Admission, Admitted, admit
from exchange.directory import Directory
from exchange.large import Spooled
from exchange.policy import VerificationPolicy
from exchange.stream_admission import admit_stream
from exchange.xmlsafe import ParseLimits

_context: Admission | None = None
_cap: int = 0  # the package cap of a streamed (large) admission


def _follow_parent(parent: int) -> None:
    """A worker whose node was killed (kill -9 leaves no time to stop the pool) ends too."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _cap_of(config_file: str | Path) -> int:
    return load_node_config(config_file).max_package_bytes


def _context_for(config_file: str | Path, directory: Directory | None = None) -> Admission:
    config = load_node_config(config_file)
    trust = load_trust(config)
    return Admission(
        trust=trust,
        pdf_check=pdf_check_for(trust.roots),
        binder=directory if directory is not None else load_directory_for(config),
        parse_limits=ParseLimits(max_bytes=config.inline_max_bytes),  # in memory: inline only
    )


def _start_worker(config_file: str) -> None:
    global _context, _cap  # one context per worker process, built once
    threading.Thread(target=_follow_parent, args=(os.getppid(),), daemon=True).start()
    _context = _context_for(config_file)
    _cap = _cap_of(config_file)


def _admit_here(data: bytes, policy: VerificationPolicy) -> Admitted:
    assert _context is not None, "the worker was started without its context"
    return admit(data, policy, _context)


def admit_file(spooled: Spooled, policy: VerificationPolicy, ctx: Admission, cap: int) -> Admitted:
    """A large package admitted streaming from its spooled file: memory bounded by the
    document's structure, never by its size (exchange/stream_admission.py)."""
    with spooled.path.open("rb") as stream:
        limits = replace(ctx.parse_limits, max_bytes=cap)
        return admit_stream(stream, spooled.size, policy, replace(ctx, parse_limits=limits))


def _admit_file_here(spooled: Spooled, policy: VerificationPolicy) -> Admitted:
    assert _context is not None, "the worker was started without its context"
    return admit_file(spooled, policy, _context, _cap)


class AdmissionPool:
    def __init__(self, config_file: Path, workers: int) -> None:
        self._config_file, self._workers = config_file, workers
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawned, not forked: the node has threads (the store's writer, the broker's
        # connection), and a fork copies their locks in whatever state they are
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(str(self._config_file),),
        )

    async def reload(self) -> None:
        """New workers, which read the node's files (a newer directory) again; admissions
        already under way finish in the old ones."""
        old, self._pool = self._pool, self._new_pool()
        old.shutdown(wait=False)

    async def __call__(self, data: bytes, policy: VerificationPolicy) -> Admitted:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, _admit_here, data, policy
        )

    async def file(self, spooled: Spooled, policy: VerificationPolicy) -> Admitted:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, _admit_file_here, spooled, policy
        )

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class InlineAdmission:
    """``admission_workers = 0``: admission in one thread of the node's own process. For
    small nodes and for the sandbox, which packs several nodes into one process; the
    interpreter lock then shares one core between admission and everything else. The
    directory, when given, is the one the node itself was built with (read once)."""

    def __init__(self, config_file: Path, directory: Directory | None = None) -> None:
        self._config_file = config_file
        self._context = _context_for(config_file, directory)
        self._cap = _cap_of(config_file)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="admission")

    async def reload(self) -> None:
        self._context = await asyncio.to_thread(_context_for, self._config_file)

    async def __call__(self, data: bytes, policy: VerificationPolicy) -> Admitted:
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, admit, data, policy, self._context
        )

    async def file(self, spooled: Spooled, policy: VerificationPolicy) -> Admitted:
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, admit_file, spooled, policy, self._context, self._cap
        )

    def shutdown(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)


def admission_for(
    config_file: Path, workers: int, directory: Directory | None = None
) -> AdmissionPool | InlineAdmission:
    """Worker processes read the directory themselves; a thread shares ``directory``."""
    if workers:
        return AdmissionPool(config_file, workers)
    return InlineAdmission(config_file, directory)
