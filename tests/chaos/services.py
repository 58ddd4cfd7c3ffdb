"""A PostgreSQL the chaos suite owns, so that it may restart it: a private cluster on its
own loopback port and data directory (the RabbitMQ nodes it owns are in rabbit_cluster.py).

The machine's own PostgreSQL (5432) is shared with every other test and never touched.
This one runs as the ``postgres`` system user, in a folder made for it under /tmp, and is
stopped and removed at the end.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def _folder_for(user: str, prefix: str) -> Path:
    """A fresh folder the service's system user owns (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.chown(folder, user, user)
    return folder


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").iterdir(), key=lambda p: int(p.name))
    return versions[-1] / "bin"


class PrivatePostgres:
    """``start()`` initialises and starts a cluster; ``restart()`` stops it the hard way
    (``-m immediate``: no shutdown checkpoint, crash recovery at start) and starts it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = _folder_for("postgres", "lt-chaos-pg-")
        self.data = self.folder / "data"
        self.restarts = 0

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str, timeout: float = 60) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            check=True,
            capture_output=True,
            timeout=timeout,
            cwd=self.folder,
        )

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            self._as_postgres(
                str(_pg_bin() / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"
            )
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            str(_pg_bin() / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-t", "60",
            "-l", str(self.folder / "postgres.log"), "start",
        )  # fmt: skip
        wait_port(self.port, 30, "the private PostgreSQL")
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(
                str(_pg_bin() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"
            )

    def restart(self) -> None:
        self.stop("immediate")
        self.start()
        self.restarts += 1

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
