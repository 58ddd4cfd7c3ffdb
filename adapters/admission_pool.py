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

import structlog

from adapters.config_files import load_directory_for, load_node_config, load_trust
from adapters.pades_pyhanko import pdf_check_for
from exchange.admission import Admission, Admitted, admit
from exchange.directory import Directory
from exchange.errors import AdmissionCrashed, ConfigurationError, TransientFault
from exchange.large import Spooled
from exchange.policy import VerificationPolicy
from exchange.stream_admission import admit_stream
from exchange.xmlsafe import ParseLimits

log = structlog.get_logger()
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
    """The worker holding a package ended before it judged it (another package crashed it,
    or it was stopped): the package is tried again, and not counted against it."""


READY = -1  # the sequence number of a worker's first frame: its context is built, or why not
START_S = 60.0  # how long a worker may take to read the node's files and build its context


def _exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


class _Worker:
    """One worker process and the requests it holds, oldest first (it judges them in turn)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pending: dict[int, asyncio.Future[Admitted]] = {}
        self.reader: asyncio.Task[None] | None = None
        self.stopped = False  # killed on purpose: what it held was no fault of its own

    async def ready(self) -> None:
        """Wait for the worker's first frame: ready, or the error that stopped it."""
        stdout = self.process.stdout
        assert stdout is not None
        try:
            async with asyncio.timeout(START_S):
                seq, ok, value = await self._frame(stdout)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            self.kill()
            raise ConfigurationError(
                f"admission worker {self.process.pid} did not start: {exc!r} "
                "(its error, if any, is in the log above)"
            ) from exc
        if seq != READY or not ok:
            self.kill()
            raise ConfigurationError(f"admission worker {self.process.pid} did not start: {value}")
        self.reader = asyncio.create_task(self._read(stdout))

    @staticmethod
    async def _frame(stdout: asyncio.StreamReader) -> tuple[int, bool, object]:
        (size,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
        seq, ok, value = pickle.loads(await stdout.readexactly(size))  # noqa: S301 (our worker)
        return seq, ok, value

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        try:
            while True:
                seq, ok, value = await self._frame(stdout)
                future = self.pending.pop(seq, None)
                if future is None or future.done():
                    continue  # its caller gave up waiting
                if ok:
                    future.set_result(value)  # type: ignore[arg-type]
                else:
                    future.set_exception(value)  # type: ignore[arg-type]
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # it ended
        except Exception:  # a frame that does not read: this worker is not to be trusted
            log.exception("admission.worker_unreadable", pid=self.process.pid)
            self.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):  # its exit status, for the reason given
                await self.process.wait()
        self._fail()

    def _fail(self) -> None:
        """The worker ended: the package it was judging is the likely cause, and counted;
        those queued behind it are only tried again."""
        pid, code = self.process.pid, _exit(self.process.returncode)
        for index, future in enumerate(self.pending.values()):
            if future.done():
                continue
            if index == 0 and not self.stopped:
                future.set_exception(
                    AdmissionCrashed(f"admission worker {pid} ended while judging it ({code})")
                )
            else:
                future.set_exception(WorkerLost(f"admission worker {pid} ended ({code})"))
        self.pending.clear()

    @property
    def alive(self) -> bool:
        return (
            self.process.returncode is None and self.reader is not None and not self.reader.done()
        )

    def oldest(self) -> int | None:
        return next(iter(self.pending), None)

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def end(self, grace_s: float) -> None:
        """Its input closed (it ends once it has judged what it holds), killed after
        ``grace_s``, and reaped."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            async with asyncio.timeout(grace_s):
                await self.process.wait()
        except TimeoutError:
            self.kill()
            await self.process.wait()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


class AdmissionPool:
    """Admission in worker processes, each fed through its own pipes from the node's event
    loop: a request is one pickle written, a verdict one pickle read, with no thread in
    between (a ``ProcessPoolExecutor`` hands each call through a queue, a feeder thread and
    a management thread, which cost the node's process 0.5 ms of CPU per package). A new
    request goes to the worker holding fewest.

    A worker is used once it has said it is ready (its context built from the node file);
    one that cannot start is a ConfigurationError at ``start`` and ``reload`` (which keeps
    the workers it had), and a transient fault for a package that needed a new one. A
    request whose caller stops waiting while its worker judges it (a package past its
    deadline) stops that worker: it is killed, and a new one takes its place."""

    def __init__(self, config_file: Path, workers: int) -> None:
        self._config_file, self._size = config_file, workers
        self._workers: list[_Worker] = []
        self._retired: list[_Worker] = []  # replaced by a reload: they finish what they hold
        self._starting = asyncio.Lock()
        self._seq = itertools.count()
        self._closed = False

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
        worker = _Worker(process)
        await worker.ready()
        return worker

    async def _fill(self) -> None:
        """Start workers until there are enough; raises ConfigurationError if one fails."""
        if self._closed:
            raise WorkerLost("the admission pool is closed: the node is stopping")
        self._workers = [w for w in self._workers if w.alive]
        while len(self._workers) < self._size:
            self._workers.append(await self._spawn())

    async def _worker(self) -> _Worker:
        async with self._starting:
            try:
                await self._fill()
            except ConfigurationError as exc:  # not the package's fault: it waits and retries
                if not self._workers:
                    raise WorkerLost(exc.message) from exc
        return min(self._workers, key=lambda w: len(w.pending))

    async def start(self) -> None:
        async with self._starting:
            await self._fill()

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
                worker.stopped = True
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
        already under way finish in the old ones, which then end. If a new worker cannot
        start, the old ones stay, and the error is raised."""
        async with self._starting:
            fresh: list[_Worker] = []
            try:
                while len(fresh) < self._size:
                    fresh.append(await self._spawn())
            except ConfigurationError:
                for worker in fresh:
                    await worker.end(0)
                raise
            old, self._workers = self._workers, fresh
        self._retired = [w for w in self._retired if w.process.returncode is None]
        for worker in old:
            if worker.process.stdin is not None:
                worker.process.stdin.close()  # it ends when it has judged what it holds
            self._retired.append(worker)

    async def aclose(self) -> None:
        """Stop every worker (the node stops taking packages first): each is told by the
        end of its input, and killed if it has not ended within a second."""
        async with self._starting:
            self._closed = True
            workers, self._workers = [*self._workers, *self._retired], []
            self._retired = []
        await asyncio.gather(*(w.end(1.0) for w in workers))

    def shutdown(self) -> None:
        """Kill every worker at once, from outside the event loop (a node that is dying)."""
        self._closed = True
        for worker in [*self._workers, *self._retired]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid, signal.SIGKILL)
        self._workers, self._retired = [], []


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
