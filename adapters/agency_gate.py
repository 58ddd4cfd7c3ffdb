"""What an agency system may do at its home node, whatever face it comes through (the
REST API, the national-axis SDK facade): submit, check without storing, read its mailbox,
take a package, acknowledge it, ask where what it sent stands, read the directory.

Every call names the caller's credential; every agency it names is checked against that
credential's set (``Credential.may_act_for``), so nobody sends in another agency's name or
reads its mail. Submissions go through the node's own intake (``Node.handle_submission``),
the same path as AMQP: dedup, counted attempts, admission under the credential's policy,
one commit, and only then the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from exchange.admission import Admitted
from exchange.config import Credential
from exchange.errors import Draining, KeyReused, NotInMailbox, NotTracked, NotYours
from exchange.large import Spooled
from exchange.node import AS_HEADER, HTTP_CALLER, Answer, Node
from exchange.policy import VerificationPolicy
from exchange.status_view import DocumentStatus, document_status
from exchange.store import MailboxEntry
from exchange.transport import Message

# a long poll looks at the mailbox at least this often: mail another instance of the node
# put there (one PostgreSQL store, docs/operations.md) wakes nobody in this process
LOOK_S = 1.0


class LocalDelivery:
    """A submission handed to the node's intake in this process: acked, or given back."""

    def __init__(self, message: Message) -> None:
        self._message = message
        self.acked = False
        self.requeued = False

    @property
    def message(self) -> Message:
        return self._message

    @property
    def redelivered(self) -> bool:
        return False

    async def ack(self) -> None:
        self.acked = True

    async def reject(self, *, requeue: bool) -> None:
        self.requeued = requeue


@dataclass(frozen=True)
class Caller:
    name: str
    credential: Credential

    @property
    def user_id(self) -> str:
        return f"{HTTP_CALLER}{self.name}"


class AgencyGate:
    def __init__(
        self,
        node: Node,
        *,
        dry_run: Callable[[bytes, VerificationPolicy], Awaitable[Admitted]],
    ) -> None:
        self.node = node
        self._dry_run = dry_run

    def check(self, caller: Caller, organ: str) -> None:
        if not caller.credential.may_act_for(organ):
            raise NotYours(f"this credential ({caller.name}) may not act for {organ}")

    async def submit(
        self,
        caller: Caller,
        data: bytes,
        as_organ: str | None = None,
        *,
        key: str | None = None,
    ) -> Answer:
        """The node's answer: accepted, duplicate, conflict, refused, dead-lettered, or
        retry (a permanent fault the node will try again: answered, not held). The same
        ``key`` (an idempotency key) with other bytes than before is refused."""
        await self._before_submit(caller, as_organ, key, hashlib.sha256(data).hexdigest())
        headers: dict[str, str | int] = {AS_HEADER: as_organ} if as_organ else {}
        delivery = LocalDelivery(
            Message(data, message_id=str(uuid.uuid4()), user_id=caller.user_id, headers=headers)
        )
        return await self.node.handle_submission(delivery)

    async def submit_spooled(
        self, caller: Caller, spooled: Spooled, as_organ: str | None, *, key: str | None = None
    ) -> Answer:
        """A large package the HTTP face spooled: the same checks as ``submit``, then the
        node takes it over by its file (Node.handle_spooled)."""
        try:
            await self._before_submit(caller, as_organ, key, spooled.digest)
        except BaseException:
            spooled.path.unlink(missing_ok=True)
            raise
        return await self.node.handle_spooled(spooled, user_id=caller.user_id, as_organ=as_organ)

    async def _before_submit(
        self, caller: Caller, as_organ: str | None, key: str | None, digest: str
    ) -> None:
        """Refused before the node looks: drained, not the caller's agency, or an
        idempotency key sent again with other bytes."""
        self._draining()
        if as_organ is not None:
            self.check(caller, as_organ)
        if key is not None:
            bound = await self.node.store.claim_key(caller.name, key, digest, datetime.now(UTC))
            if bound is not None:
                raise KeyReused(
                    f"idempotency key {key!r} was used for other bytes (SHA-256 {bound[:16]}…)"
                )

    def _draining(self) -> None:
        if self.node.drain is not None:
            raise Draining(
                f"node {self.node.settings.node_id} is drained for maintenance since "
                f"{self.node.drain.since:%Y-%m-%d %H:%M} UTC; try again later"
            )

    async def validate(self, caller: Caller, data: bytes) -> Admitted:
        """Admission under the caller's policy, storing nothing; raises its refusal."""
        return await self._dry_run(data, self.node.settings.policy_for(caller.credential.source))

    async def mailbox(
        self,
        caller: Caller,
        organ: str,
        *,
        pending: bool,
        limit: int,
        offset: int = 0,
        wait_s: float = 0.0,
    ) -> Sequence[MailboxEntry]:
        """A page of the agency's mailbox, oldest first; with ``wait_s``, an empty
        pending page waits up to that long for mail to arrive (long polling)."""
        self.check(caller, organ)
        if organ not in self.node.settings.hosted:
            raise NotInMailbox(f"{organ} has no mailbox on node {self.node.settings.node_id}")
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            arrived = self.node.mail_arrived()  # taken before looking, so nothing slips by
            entries = await self.node.store.mailbox(
                organ, unfetched_only=pending, limit=limit, offset=offset
            )
            left = deadline - asyncio.get_running_loop().time()
            if entries or left <= 0:
                return entries
            # woken at once by mail this process delivers; mail that another instance of
            # the node delivered (a shared store) is found at the next look
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, LOOK_S)):
                    await arrived.wait()

    async def package(self, caller: Caller, organ: str, message_id: str) -> MailboxEntry:
        self.check(caller, organ)
        entry = await self.node.store.mailbox_entry(organ, message_id)
        if entry is None:
            raise NotInMailbox(f"no package {message_id} in the mailbox of {organ}")
        return entry

    async def package_bytes(self, entry: MailboxEntry) -> bytes:
        return await self.node.store.package_bytes(entry.digest)

    async def package_file(self, entry: MailboxEntry) -> Path | None:
        """Where the package's bytes lie as a file, to stream them (None: read the bytes)."""
        return await self.node.store.package_file(entry.digest)

    async def acknowledge(self, caller: Caller, organ: str, message_ids: Sequence[str]) -> int:
        self.check(caller, organ)
        return await self.node.acknowledge(organ, message_ids)

    async def status(self, caller: Caller, organ: str, ident: str) -> DocumentStatus:
        self.check(caller, organ)
        view = await document_status(
            self.node.store,
            ident,
            here=self.node.settings.node_id,
            topology=self.node.settings.topology,
            now=datetime.now(UTC),
            deadlines=self.node.settings.deadlines,
        )
        if view is None or view.sender != organ:
            raise NotTracked(f"{organ} sent no document or package {ident!r} through this node")
        return view

    def directory(self) -> list[dict[str, str]]:
        """The agencies of the axis and the node that hosts each (the signed directory)."""
        topology = self.node.settings.topology
        if topology is None:
            return [
                {"organ_id": organ, "node": self.node.settings.node_id}
                for organ in sorted(self.node.settings.hosted)
            ]
        return [{"organ_id": organ, "node": home} for organ, home in sorted(topology.homes.items())]
