"""Services the chaos suite owns, so that it may restart them: a private PostgreSQL
cluster and a private RabbitMQ node, each on its own loopback port and data directory.

The machine's own RabbitMQ (5672) and PostgreSQL (5432) are shared with every other test
and are never touched. These run as the services' system users (``postgres``,
``rabbitmq``), in folders made for them under /tmp, and are stopped and removed at the end.
"""

from __future__ import annotations

import os
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


class PrivateRabbit:
    """One RabbitMQ node of its own (node name, AMQP and distribution ports, data folder,
    no plugins). ``restart()`` stops it cleanly and starts it; ``kill()`` is SIGKILL."""

    def __init__(self, name: str | None = None) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.folder = _folder_for("rabbitmq", "lt-chaos-rabbit-")
        self.node = f"{name or f'lt-chaos-{self.port}'}@localhost"
        (self.folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.folder / "enabled_plugins").write_text("[].\n")
        for path in self.folder.iterdir():
            shutil.chown(path, "rabbitmq", "rabbitmq")
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.folder / "rabbit.pid"),
        }

    def ctl(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            ["rabbitmqctl", "-n", self.node, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return done.stdout

    def start(self) -> PrivateRabbit:
        subprocess.run(
            ["rabbitmq-server", "-detached"], env=self._env(), check=True, capture_output=True
        )
        deadline = time.monotonic() + 90
        while True:  # until the node answers the CLI at all, then until it has booted
            try:
                self.ctl("await_startup", "-t", "60", timeout=70)
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        wait_port(self.port, 30, f"RabbitMQ {self.node}")
        return self

    def stop(self) -> None:
        subprocess.run(
            ["rabbitmqctl", "-n", self.node, "stop", str(self.folder / "rabbit.pid")],
            capture_output=True,
            timeout=60,
            check=False,
        )

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
