"""What the benchmarks read from a running tree of nodes, from outside: mailbox rows
and link copies in each node's SQLite store (read-only), lost broker connections in the
node processes' logs, resident memory in /proc."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bench.tree import BenchTree


@dataclass(frozen=True)
class LinkCopy:
    """One copy of a package a node sent over a link: one link outbox row."""

    source: str
    target: str
    package_bytes: int
    envelope_bytes: int  # the transport envelope, carried in the body with the package
    published: bool  # the broker confirmed it (the row is done)

    @property
    def carried(self) -> int:
        return self.package_bytes + self.envelope_bytes


def connection_errors(tree: BenchTree) -> list[str]:
    """The reasons of every broker connection the node processes have lost so far."""
    errors = []
    for log in sorted(tree.folder.glob("process-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if '"rabbitmq.connection_lost"' in line:
                errors.append(json.loads(line).get("error", "?"))
    return errors


def mailbox_rows(db: Path, message_id: str) -> tuple[int, str | None]:
    if not db.exists():
        return 0, None
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
        count, last = connection.execute(
            "SELECT count(*), max(delivered_at) FROM mailbox WHERE message_id = ?", (message_id,)
        ).fetchone()
    return int(count), last


def link_copies(tree: BenchTree, message_id: str) -> list[tuple[str, str, int, int, bool]]:
    """Every copy of the message the tree's nodes sent, or tried to send, over a link."""
    copies = []
    for node in tree.nodes:
        db = tree.database(node.id)
        if not db.exists():
            continue
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            rows = connection.execute(
                "SELECT o.target, p.size, length(p.envelope), o.done_at IS NOT NULL "
                "FROM outbox o JOIN packages p ON p.message_id = o.message_id "
                "WHERE o.destination = 'link' AND o.message_id = ?",
                (message_id,),
            ).fetchall()
        copies += [
            LinkCopy(node.id, t.split("/")[0], size, env, bool(done)) for t, size, env, done in rows
        ]
    return copies


def rss_mib(pids: list[int]) -> list[float]:
    sizes = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes
