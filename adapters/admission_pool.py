"""Admission in worker processes, so that parsing, XSD and signatures use every core.

Each worker builds its own admission context from the node file once, at start
(trust store, directory, limits), and then judges packages: bytes in, a frozen
``Admitted`` or one of the node's errors out (both pickle). Threads share one
interpreter lock, which the XML and signature work holds for most of its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import signal
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from adapters.config_files import load_directory_for, load_node_config, load_trust
from adapters.pades_pyhanko import pdf_check_for
from exchange.admission import Admission, Admitted, admit
from exchange.directory import Directory
from exchange.errors import TransientFault
from exchange.large import Spooled
from exchange.policy import VerificationPolicy
from exchange.stream_admission import admit_stream
from exchange.xmlsafe import ParseLimits

HEADER = struct.Struct("!Q")  # the length of each pickle on a worker's pipes


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


def context_of(config_file: str | Path) -> tuple[Admission, int]:
    """What a worker builds once, at start: its admission context and the large cap."""
    return _context_for(config_file), _cap_of(config_file)


def admit_file(spooled: Spooled, policy: VerificationPolicy, ctx: Admission, cap: int) -> Admitted:
    """A large package admitted streaming from its spooled file: memory bounded by the
    document's structure, never by its size (exchange/stream_admission.py)."""
    with spooled.path.open("rb") as stream:
        limits = replace(ctx.parse_limits, max_bytes=cap)
        return admit_stream(stream, spooled.size, policy, replace(ctx, parse_limits=limits))


class WorkerLost(TransientFault):
    """The worker judging a package ended (killed, crashed, or stopped for a package that
    ran past its deadline); the package is tried again, and counted."""


class _Worker:
    """One worker process and the requests it holds, oldest first (it judges them in turn)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pending: dict[int, asyncio.Future[Admitted]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while True:
                (size,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
                seq, ok, value = pickle.loads(await stdout.readexactly(size))  # noqa: S301 (our worker)
                future = self.pending.pop(seq, None)
                if future is None or future.done():
                    continue  # its caller gave up waiting
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._fail(f"admission worker {self.process.pid} ended")

    def _fail(self, reason: str) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(WorkerLost(reason))
        self.pending.clear()

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and not self.reader.done()

    def oldest(self) -> int | None:
        return next(iter(self.pending), None)

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


class AdmissionPool:
    """Admission in worker processes, each fed through its own pipes from the node's event
    loop: a request is one pickle written, a verdict one pickle read, with no thread in
    between (a ``ProcessPoolExecutor`` hands each call through a queue, a feeder thread and
    a management thread, which cost the node's process 0.5 ms of CPU per package). A new
    request goes to the worker holding fewest. A request whose caller stops waiting while
    its worker judges it (a package past its deadline) stops that worker: it is killed, the
    requests queued behind it fail as transient, and a new worker takes its place."""

    def __init__(self, config_file: Path, workers: int) -> None:
        self._config_file, self._size = config_file, workers
        self._workers: list[_Worker] = []
        self._starting = asyncio.Lock()
        self._seq = itertools.count()

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "adapters.admission_worker",
            str(self._config_file),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
        )
        return _Worker(process)

    async def _worker(self) -> _Worker:
        async with self._starting:
            self._workers = [w for w in self._workers if w.alive]
            while len(self._workers) < self._size:
                self._workers.append(await self._spawn())
        return min(self._workers, key=lambda w: len(w.pending))

    async def start(self) -> None:
        await self._worker()

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.alive]

    async def _call(self, kind: str, payload: object, policy: VerificationPolicy) -> Admitted:
        worker = await self._worker()
        seq = next(self._seq)
        request = pickle.dumps((seq, kind, payload, policy), protocol=pickle.HIGHEST_PROTOCOL)
        future: asyncio.Future[Admitted] = asyncio.get_running_loop().create_future()
        worker.pending[seq] = future
        stdin = worker.process.stdin
        assert stdin is not None
        try:
            stdin.write(HEADER.pack(len(request)) + request)
            await stdin.drain()
            return await future
        except asyncio.CancelledError:
            if worker.oldest() == seq:  # it is judging this one: stop it, in case it hangs
                worker.kill()
            worker.pending.pop(seq, None)
            raise
        except (ConnectionError, RuntimeError) as exc:
            worker.pending.pop(seq, None)
            raise WorkerLost(f"admission worker {worker.process.pid}: {exc}") from exc

    async def __call__(self, data: bytes, policy: VerificationPolicy) -> Admitted:
        return await self._call("bytes", data, policy)

    async def file(self, spooled: Spooled, policy: VerificationPolicy) -> Admitted:
        return await self._call("file", spooled, policy)

    async def reload(self) -> None:
        """New workers, which read the node's files (a newer directory) again; admissions
        already under way finish in the old ones, which then end."""
        async with self._starting:
            old, self._workers = self._workers, []
        for worker in old:
            if worker.process.stdin is not None:
                worker.process.stdin.close()  # it ends when it has judged what it holds
        await self.start()

    async def aclose(self) -> None:
        """Stop every worker (the node stops taking packages first): each is told by the
        end of its input, and killed if it has not ended within a second."""
        workers, self._workers = self._workers, []
        for worker in workers:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in workers:
            try:
                async with asyncio.timeout(1.0):
                    await worker.process.wait()
            except TimeoutError:
                worker.kill()
                await worker.process.wait()
            await asyncio.gather(worker.reader, return_exceptions=True)

    def shutdown(self) -> None:
        """Kill every worker at once, from outside the event loop (a node that is dying)."""
        for worker in self._workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid, signal.SIGKILL)
        self._workers = []


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

    async def start(self) -> None:
        """Nothing to start: the context was built with this object."""

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

    async def aclose(self) -> None:
        await asyncio.to_thread(self.shutdown)

    def shutdown(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)


def admission_for(
    config_file: Path, workers: int, directory: Directory | None = None
) -> AdmissionPool | InlineAdmission:
    """Worker processes read the directory themselves; a thread shares ``directory``."""
    if workers:
        return AdmissionPool(config_file, workers)
    return InlineAdmission(config_file, directory)
