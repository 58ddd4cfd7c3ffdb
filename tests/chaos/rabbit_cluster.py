"""Private RabbitMQ nodes on loopback, started and ended by a test: a cluster of N, or one.

The machine's own broker (5672) is never touched: every node here has its own node name,
AMQP port, distribution port, data folder, config file, empty plugin list and Erlang
cookie (a HOME of its own in the temp folder), and is started from the installed
``rabbitmq-server`` directly (not through the /usr/sbin wrapper, which switches to the
``rabbitmq`` user and its cookie).

    with RabbitCluster(3) as cluster:          # started, clustered, all running
        urls = cluster.urls()                  # one amqp:// URL per node
        cluster.kill(0); cluster.start(0)      # SIGKILL the node's processes; start, rejoin
        cluster.freeze(1); cluster.thaw(1)     # SIGSTOP / SIGCONT its beam
        cluster.leader_of("some-queue")        # index of the node leading a quorum queue

    with SingleBroker() as broker:             # one node, same code
        broker.url(); broker.restart()         # a clean stop, then a start

    with SingleBroker(tls=BrokerTls(ca, cert, key)) as broker:   # AMQPS only, client
        broker.url()                           # certificates required, EXTERNAL login by CN

Faults are recorded in ``.faults`` (what, which node, when) for the caller's report.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

SBIN = Path("/usr/lib/rabbitmq/bin")  # the real scripts, run as whoever we are
NET_TICKTIME_S = 8


def available() -> bool:
    """True when this machine has RabbitMQ installed and we may run nodes of our own."""
    return (SBIN / "rabbitmq-server").exists() and shutil.which("rabbitmq-server") is not None


def _free_port(low: int, high: int, taken: set[int], *, pair: bool = False) -> int:
    """A port in [low, high) nobody listens on (nor on port + 10000: the CLI's range);
    with ``pair``, the next port too (a TLS listener beside it)."""
    for _ in range(500):
        port = low + int.from_bytes(os.urandom(2), "big") % (high - low)
        ports = (port, port + 1) if pair else (port,)
        if any(p in taken or p + 10000 in taken for p in ports):
            continue
        if all(_bindable(p) for q in ports for p in (q, q + 10000)):
            taken.update(ports)
            return port
    raise RuntimeError(f"no free port in {low}..{high}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class BrokerTls:
    """A TLS-only listener: the broker's certificate and key, the CA every client's
    certificate must chain to (no certificate, no connection), and logins taken from the
    certificate's CN (the EXTERNAL mechanism)."""

    ca: Path
    cert: Path
    key: Path
    plain: bool = False  # also plain AMQP, with passwords (PLAIN), on the node's amqp_port

    def conf(self, port: int) -> str:
        listen = (
            f"listeners.tcp.default = 127.0.0.1:{port}\nauth_mechanisms.2 = PLAIN\n"
            if self.plain
            else "listeners.tcp = none\n"
        )
        return (
            listen + f"listeners.ssl.default = 127.0.0.1:{port + 1}\n"
            f"ssl_options.cacertfile = {self.ca}\n"
            f"ssl_options.certfile = {self.cert}\n"
            f"ssl_options.keyfile = {self.key}\n"
            "ssl_options.verify = verify_peer\n"
            "ssl_options.fail_if_no_peer_cert = true\n"
            "ssl_cert_login_from = common_name\n"
            "auth_mechanisms.1 = EXTERNAL\n"
        )


@dataclass
class BrokerNode:
    """One private node: its name, ports, folder, and its process while it runs."""

    name: str  # e.g. lt-chaos-ab12cd-1@localhost
    amqp_port: int
    dist_port: int
    folder: Path
    home: Path  # HOME: where the shared Erlang cookie lives
    process: subprocess.Popen[bytes] | None = None
    tls: BrokerTls | None = None  # AMQPS only

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.home),
            RABBITMQ_CONF_ENV_FILE=str(self.folder / "rabbitmq-env.conf"),  # not /etc's
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CTL_DIST_PORT_MIN=str(self.dist_port + 10000),
            RABBITMQ_CTL_DIST_PORT_MAX=str(self.dist_port + 10010),
            RABBITMQ_MNESIA_BASE=str(self.folder / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.folder / "log"),
            RABBITMQ_CONFIG_FILE=str(self.folder / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.folder / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.folder / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.folder / "rabbit.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=f"-kernel net_ticktime {NET_TICKTIME_S}",
            RABBITMQ_CTL_ERL_ARGS=f"-kernel net_ticktime {NET_TICKTIME_S}",
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        if self.tls is not None:  # the listeners are the config file's
            del env["RABBITMQ_NODE_PORT"], env["RABBITMQ_NODE_IP_ADDRESS"]
        return env

    def write_files(self, extra_conf: str = "") -> None:
        for sub in ("mnesia", "log"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        (self.folder / "rabbitmq-env.conf").write_text("")
        plugins = "rabbitmq_auth_mechanism_ssl" if self.tls else ""
        (self.folder / "enabled_plugins").write_text(f"[{plugins}].\n")
        listen = (
            self.tls.conf(self.amqp_port)
            if self.tls
            else f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
        )
        (self.folder / "rabbitmq.conf").write_text(
            listen + "cluster_partition_handling = pause_minority\n"
            "vm_memory_high_watermark.relative = 0.2\n"
            "disk_free_limit.absolute = 50MB\n"
            "log.console = false\n"
            "log.file.level = info\n" + extra_conf
        )

    @property
    def url(self) -> str:
        if self.tls is not None and not self.tls.plain:
            return self.tls_url
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def tls_url(self) -> str:
        """The TLS listener (the port after amqp_port), logins by certificate."""
        return f"amqps://127.0.0.1:{self.amqp_port + 1}/?auth=external"

    def pids(self) -> list[int]:
        """This node's processes: the session its start script leads."""
        if self.process is None:
            return []
        sid = self.process.pid
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getsid(int(entry.name)) == sid:
                    found.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
        return found

    def beam_pid(self) -> int:
        for pid in self.pids():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip().startswith("beam"):
                    return pid
            except FileNotFoundError:
                continue
        raise RuntimeError(f"{self.name}: no beam process")


@dataclass
class _Nodes:
    """What RabbitCluster and SingleBroker share: starting, stopping, asking rabbitmqctl."""

    count: int = 3
    startup_timeout_s: float = 90.0
    extra_conf: str = ""
    keep_folder: bool = False
    tls: BrokerTls | None = None
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    nodes: list[BrokerNode] = field(default_factory=list)
    faults: list[tuple[float, str, int]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not available():
            raise RuntimeError("rabbitmq-server is not installed here")
        self.root = Path(tempfile.mkdtemp(prefix=f"lt-rabbit-{self.suffix}-"))
        home = self.root / "home"
        home.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)
        taken: set[int] = set()
        for i in range(self.count):
            node = BrokerNode(
                name=f"lt-chaos-{self.suffix}-{i + 1}@localhost",
                amqp_port=_free_port(16000, 19000, taken, pair=self.tls is not None),
                dist_port=_free_port(20000, 24000, taken),
                folder=self.root / f"n{i + 1}",
                home=home,
                tls=self.tls,
            )
            node.write_files(self.extra_conf)
            self.nodes.append(node)

    # -- running rabbitmqctl and friends against one node --

    def ctl(self, i: int, *args: str, tool: str = "rabbitmqctl", timeout: float = 60.0) -> str:
        node = self.nodes[i]
        done = subprocess.run(
            [str(SBIN / tool), "-n", node.name, *args],
            env=node.env(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} -n {node.name} {' '.join(args)}: exit {done.returncode}: "
                f"{done.stderr.decode(errors='replace')[-2000:]}"
            )
        return done.stdout.decode(errors="replace")

    def _spawn(self, i: int) -> None:
        node = self.nodes[i]
        log = (node.folder / "log" / "server.out").open("ab")
        node.process = subprocess.Popen(
            [str(SBIN / "rabbitmq-server")],
            env=node.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session: kill() reaches its whole tree
            cwd=node.folder,
        )
        log.close()

    def _await_startup(self, i: int) -> None:
        node = self.nodes[i]
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"{node.name} exited at startup: see {node.folder}/log")
            try:
                self.ctl(i, "await_startup", "--timeout", "10", timeout=20)
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _kill_tree(self, i: int) -> None:
        node = self.nodes[i]
        if node.process is None:
            return
        for pid in node.pids():
            try:
                os.kill(pid, signal.SIGCONT)  # a frozen node dies too
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.process.wait(timeout=10)
        node.process = None

    # -- the faults --

    def kill(self, i: int) -> None:
        """SIGKILL node i's beam and the rest of its process tree."""
        self._record("kill", i)
        self._kill_tree(i)

    def freeze(self, i: int) -> None:
        """SIGSTOP node i's beam: to its peers it is as good as cut off (a partition)."""
        self._record("freeze", i)
        os.kill(self.nodes[i].beam_pid(), signal.SIGSTOP)

    def thaw(self, i: int) -> None:
        self._record("thaw", i)
        os.kill(self.nodes[i].beam_pid(), signal.SIGCONT)

    def _record(self, what: str, i: int) -> None:
        self.faults.append((time.time(), what, i))

    def running(self, i: int) -> bool:
        node = self.nodes[i]
        return node.process is not None and node.process.poll() is None

    def stop_all(self) -> None:
        """Every node ends (a stop that does not come quickly is a kill); the folder goes."""
        for i in range(len(self.nodes)):
            if self.running(i):
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    self.ctl(i, "stop", timeout=20)
            self._kill_tree(i)
        if not self.keep_folder:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> _Nodes:
        try:
            self.start_all()
        except BaseException:
            self.stop_all()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start_all(self) -> None:
        raise NotImplementedError


class RabbitCluster(_Nodes):
    """N private nodes (3 by default) joined into one cluster, pause_minority, with a
    ``net_ticktime`` of 8 s, quorum queues replicated over all of them."""

    def __enter__(self) -> RabbitCluster:
        super().__enter__()
        return self

    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start_all(self) -> None:
        began = time.monotonic()
        for i in range(len(self.nodes)):
            self._spawn(i)
        for i in range(len(self.nodes)):
            self._await_startup(i)
        self.timings["nodes_started_s"] = time.monotonic() - began
        first = self.nodes[0].name
        for i in range(1, len(self.nodes)):
            self.ctl(i, "stop_app")
            self.ctl(i, "join_cluster", first)
            self.ctl(i, "start_app")
        self.wait_all_running()
        self.timings["cluster_formed_s"] = time.monotonic() - began

    def start(self, i: int) -> None:
        """Start node i again (after kill) and wait until the cluster counts it running."""
        self._record("start", i)
        self._spawn(i)
        self._await_startup(i)
        self.wait_all_running()

    def _status(self, i: int) -> dict[str, Any] | None:
        """``cluster_status`` as live node i sees it; None when it cannot say."""
        if not self.running(i):
            return None
        try:
            status: dict[str, Any] = json.loads(
                self.ctl(i, "cluster_status", "--formatter", "json")
            )
        except (RuntimeError, subprocess.TimeoutExpired, ValueError):
            return None
        return status

    def running_nodes(self, asking: int | None = None) -> set[str]:
        """The nodes ``cluster_status`` calls running, as one live node sees it."""
        candidates = [asking] if asking is not None else range(len(self.nodes))
        for i in candidates:
            status = self._status(i)
            if status is not None:
                return set(status.get("running_nodes", []))
        return set()

    def wait_all_running(self, timeout_s: float | None = None) -> None:
        wanted = {node.name for i, node in enumerate(self.nodes) if self.running(i)}
        deadline = time.monotonic() + (timeout_s or self.startup_timeout_s)
        while True:
            if all(
                self.running_nodes(i) >= wanted for i in range(len(self.nodes)) if self.running(i)
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not formed: want {sorted(wanted)}")
            time.sleep(0.5)

    def partitions(self) -> dict[str, list[str]]:
        """What each live node reports as partitioned from it (empty: none)."""
        seen: dict[str, list[str]] = {}
        for i in range(len(self.nodes)):
            status = self._status(i) or {}
            for name, others in (status.get("partitions") or {}).items():
                seen.setdefault(name, []).extend(others)
        return seen

    def heal(self, i: int, wait_s: float = 30.0) -> bool:
        """After thaw(i): wait for the cluster to count node i running with no partition
        left; should it not (a frozen node never saw itself in the minority, so
        pause_minority does not pause it), restart node i's app, RabbitMQ's own recovery
        from a partition. True when that restart was needed."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not self.partitions() and len(self.running_nodes()) == len(self.nodes):
                return False
            time.sleep(1)
        self._record("heal", i)
        self.ctl(i, "stop_app", timeout=120)
        self.ctl(i, "start_app", timeout=120)
        self.wait_all_running()
        return True

    def leader_of(self, queue: str, vhost: str = "/") -> int:
        """The index of the node that leads quorum queue ``queue`` now."""
        for i in range(len(self.nodes)):
            if not self.running(i):
                continue
            try:
                out = self.ctl(
                    i,
                    "list_queues",
                    "-p",
                    vhost,
                    "name",
                    "leader",
                    "-q",
                    "--no-table-headers",
                    timeout=20,
                )
            except (RuntimeError, subprocess.TimeoutExpired):
                continue
            for line in out.splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] == queue:
                    return self.index(parts[1])
        raise LookupError(f"no leader known for queue {queue!r}")

    def index(self, name: str) -> int:
        for i, node in enumerate(self.nodes):
            if node.name == name:
                return i
        raise LookupError(name)


class SingleBroker(_Nodes):
    """One private node, for tests that restart "the broker"."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(count=1, **kwargs)  # type: ignore[arg-type]

    def __enter__(self) -> SingleBroker:
        super().__enter__()
        return self

    def url(self) -> str:
        return self.nodes[0].url

    def start_all(self) -> None:
        began = time.monotonic()
        self._spawn(0)
        self._await_startup(0)
        self.timings["started_s"] = time.monotonic() - began

    def restart(self) -> None:
        """RabbitMQ restarts: a clean stop (durable queues and their messages survive),
        then a start on the same port and data."""
        self._record("restart", 0)
        self.ctl(0, "stop", timeout=60)
        self._kill_tree(0)
        self._spawn(0)
        self._await_startup(0)

    def kill_and_start(self) -> None:
        """RabbitMQ crashes (SIGKILL) and comes back."""
        self.kill(0)
        self._record("start", 0)
        self._spawn(0)
        self._await_startup(0)
