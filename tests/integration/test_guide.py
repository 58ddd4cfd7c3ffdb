"""The Debian guide, run: docs/operations-guide.md's install commands, as written, bring up
a node that links to the sandbox over TLS.

The sandbox's tree runs on a RabbitMQ of this test's own (plain AMQP for the sandbox's
nodes, AMQPS with certificate logins beside it), all but one of its nodes: the commune
node ``commune-22-31-h53`` is installed instead by the guide's blocks, in order, under a
scratch root that stands in for ``/`` (``/opt``, ``/etc``, ``/var/lib``, ``/root`` are
moved under it), on ports of its own:

- "Packages, user, folders", "lienthong itself" (a virtual environment, `pip install` of
  this checkout), "The files in place", "RabbitMQ: TLS only, logins by certificate" (the
  broker the guide configures is started from the guide's own rabbitmq.conf), "The node
  file", "The service" (the unit's ExecStart is what runs) and "Check that it works";
- its parent's operator runs the guide's "The children's logins" at the parent.

What cannot run here is stood in for by small programs first on PATH: apt-get, useradd
and chown do nothing (the packages are installed; the node runs as root), install drops
its owner and group, systemctl and rabbitmq-plugins act on this test's broker and node
process, rabbitmqctl is the real one, aimed at this test's broker. The handover folder the
guide asks for is made from the sandbox's PKI and a throwaway TLS CA.

Then a document goes from the sandbox down to the commune, and one from the commune up to
the central node, each exactly once. On demand (it installs a virtual environment):
``scripts/test -m ondemand tests/integration/test_guide.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.client import NodeClient
from adapters.pki_files import init_tls
from adapters.sandbox_tree import free_port, load_topology, topology_file, write_tree
from adapters.store_sqlite import SqliteStore
from adapters.tls import client_context
from exchange.config_tls import TlsClient
from tests.chaos.rabbit_cluster import SBIN, BrokerTls, SingleBroker, available
from tests.integration.tree import signed_document

pytestmark = [
    pytest.mark.integration,
    pytest.mark.ondemand,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not available(), reason="RabbitMQ is not installed here"),
]

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "operations-guide.md"
RUN = [  # the guide's blocks this test runs, in order, by their heading
    "Packages, user, folders",
    "lienthong itself",
    "The files in place",
    "RabbitMQ: TLS only, logins by certificate",
    "The node file",
    "The service",
]
CHECK = "Check that it works"
CHILDREN = "The children's logins"
GUIDE_NODE = "commune-22-31-h53"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Debian's root
COMMUNE, CENTRAL, PROVINCE = "000.22.31.H53", "000.00.00.G22", "000.00.00.H53"


def guide_blocks() -> dict[str, list[str]]:
    """Each ``###`` heading of the guide and the ```bash blocks under it."""
    blocks: dict[str, list[str]] = {}
    heading = ""
    for part in re.split(r"^(#{2,4} .*)$", GUIDE.read_text(encoding="utf-8"), flags=re.M):
        if re.match(r"#{2,4} ", part):
            heading = part.lstrip("#").strip()
            continue
        blocks.setdefault(heading, []).extend(re.findall(r"```bash\n(.*?)```", part, re.S))
    return blocks


SHIM_NOOP = '#!/bin/sh\necho "(guide test: $(basename "$0") $* is not run here)"\n'
SHIM_INSTALL = """#!/bin/bash
# install, without -o OWNER and -g GROUP: the scratch root has no user lienthong
args=()
while [ $# -gt 0 ]; do
    case "$1" in -o|-g) shift 2 ;; *) args+=("$1"); shift ;; esac
done
exec /usr/bin/install "${args[@]}"
"""
SHIM_ASK = """#!/bin/bash
# ask the test to do it: a request file, then wait for its answer
id=$(date +%s%N)-$$
printf '%s\\n' "$(basename "$0")" "$@" > "{asks}/$id.req"
while [ ! -e "{asks}/$id.done" ]; do sleep 0.1; done
cat "{asks}/$id.out"
exit "$(cat "{asks}/$id.done")"
"""
SHIM_CTL = """#!/bin/bash
# the real rabbitmqctl, aimed at one of the test's brokers (GUIDE_BROKER: own or sandbox)
. "{env}/${{GUIDE_BROKER:-own}}.env"
exec {sbin}/rabbitmqctl -n "$RABBITMQ_NODENAME" "$@"
"""


class Guide:
    """The scratch root, the two brokers, the sandbox's processes, the guide's node."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tls = root / "tls-ca"
        self.asks = root / "shim-asks"
        self.asks.mkdir(parents=True)
        # the sandbox's broker: plain for its nodes, AMQPS beside it for the guide's link
        self.sandbox_broker = SingleBroker(
            tls=BrokerTls(
                self.tls / "ca.pem", self.tls / "sandbox-mq.pem", self.tls / "sandbox-mq.key", True
            )
        )
        self.own_broker = SingleBroker(  # the guide's node's own: configured by the guide
            tls=BrokerTls(self.tls / "ca.pem", self.tls / "unused.pem", self.tls / "unused.key")
        )
        self.own_port, self.http_port = self.own_broker.nodes[0].amqp_port + 1, free_port()
        self.topology = load_topology(topology_file(), f"-{uuid.uuid4().hex[:5]}")
        self.ids = {n.id.rsplit("-", 1)[0]: n.id for n in self.topology.nodes}
        self.node_id = self.ids[GUIDE_NODE]
        self.parent_id = self.ids["district-31-h53"]
        self.sandbox = root / "sandbox"
        self.files = write_tree(self.sandbox, self.topology, self.sandbox_broker.url())
        self.processes: list[subprocess.Popen[bytes]] = []
        self.service: subprocess.Popen[bytes] | None = None
        self.plugins: list[str] = []

    # --- what the guide's operator is handed ------------------------------------------

    def handover(self) -> Path:
        node, parent, pki = self.node_id, self.parent_id, self.sandbox / "pki"
        init_tls(self.tls, ["sandbox-mq"], names=(parent, "localhost"), addresses=("127.0.0.1",))
        init_tls(self.tls, [node], names=("localhost",), addresses=("127.0.0.1",))
        folder = self.root / "root" / "lienthong-handover"
        (folder / "nodes").mkdir(parents=True)
        (folder / "tls").mkdir()
        shutil.copy(pki / "nodes" / f"{node}.key", folder / f"{node}.key")
        for cert in (pki / "nodes").glob("*.pem"):
            shutil.copy(cert, folder / "nodes" / cert.name)
        shutil.copy(pki / "ca.pem", folder / "agencies-ca.pem")
        shutil.copy(self.files[node].parent / "directory.json", folder / "directory.json")
        shutil.copy(self.tls / "ca.pem", folder / "tls" / "ca.pem")
        for name in (node, "broker", "http"):
            shutil.copy(self.tls / f"{node}.pem", folder / "tls" / f"{name}.pem")
            shutil.copy(self.tls / f"{node}.key", folder / "tls" / f"{name}.key")
        shutil.copy(self.files[node].parent / "link.token", folder / "link-token")
        return folder

    # --- the programs that stand in for the machine's --------------------------------

    def shims(self) -> Path:
        bin_ = self.root / "shim-bin"
        bin_.mkdir()
        env = self.root / "shim-env"
        env.mkdir()
        for name, broker in (("own", self.own_broker), ("sandbox", self.sandbox_broker)):
            lines = [f"export {k}={shlex.quote(v)}" for k, v in broker.nodes[0].env().items()]
            (env / f"{name}.env").write_text("\n".join(lines) + "\n")
        scripts = {
            "apt-get": SHIM_NOOP,
            "useradd": SHIM_NOOP,
            "chown": SHIM_NOOP,
            "install": SHIM_INSTALL,
            "systemctl": SHIM_ASK.format(asks=self.asks),
            "rabbitmq-plugins": SHIM_ASK.format(asks=self.asks),
            "rabbitmqctl": SHIM_CTL.format(env=env, sbin=SBIN),
        }
        for name, text in scripts.items():
            (bin_ / name).write_text(text)
            (bin_ / name).chmod(0o755)
        return bin_

    def answer(self, argv: list[str]) -> tuple[int, str]:
        """What systemctl and rabbitmq-plugins do here."""
        match argv:
            case ["rabbitmq-plugins", "enable", *plugins]:
                self.plugins += plugins
                return 0, f"(guide test) enabled {' '.join(plugins)}"
            case ["systemctl", "restart", "rabbitmq-server"]:
                return self._start_own_broker()
            case ["systemctl", "daemon-reload"]:
                return 0, ""
            case ["systemctl", "enable", "--now", "lienthong"]:
                return self._start_service()
            case ["systemctl", "status", "lienthong", *_]:
                alive = self.service is not None and self.service.poll() is None
                return (0, "active (running)") if alive else (3, "inactive (dead)")
        return 1, f"(guide test) not stood in for: {' '.join(argv)}"

    def _start_own_broker(self) -> tuple[int, str]:
        node = self.own_broker.nodes[0]
        conf = (self.root / "etc" / "rabbitmq" / "rabbitmq.conf").read_text()
        (node.folder / "rabbitmq.conf").write_text(
            conf + "\nlisteners.ssl.default = 127.0.0.1:" + str(self.own_port) + "\n"
            "log.console = false\nlog.file.level = info\n"
        )
        (node.folder / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")
        try:
            self.own_broker.start_all()
        except RuntimeError as exc:
            return 1, str(exc)
        return 0, "(guide test) rabbitmq-server started from the guide's rabbitmq.conf"

    def _start_service(self) -> tuple[int, str]:
        unit = (self.root / "etc" / "systemd" / "system" / "lienthong.service").read_text()
        command = shlex.split(re.search(r"^ExecStart=(.+)$", unit, re.M)[1])  # type: ignore[index]
        with open(self.root / "lienthong.log", "ab") as log:
            self.service = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        return 0, f"(guide test) started: {' '.join(command)}"

    # --- running the guide ------------------------------------------------------------

    def adapt(self, block: str) -> str:
        """The block, for the scratch root, the sandbox and this test's ports."""
        sandbox_http = json.loads((self.sandbox / "http.json").read_text())[self.parent_id]["url"]
        text = block
        for path in ("/opt/lienthong", "/etc/lienthong", "/var/lib/lienthong", "/etc/rabbitmq",
                     "/etc/systemd/system", "/usr/local/bin", "/root/"):  # fmt: skip
            text = text.replace(path, f"{self.root}{path}")
        text = text.replace("$HOST:5671", f"$HOST:{self.own_port}")
        text = text.replace(
            "$PARENT_MQ:5671", f"$PARENT_MQ:{self.sandbox_broker.nodes[0].amqp_port + 1}"
        )
        text = text.replace("listeners.ssl.default = 5671", "# (this test's port, below)")
        text = text.replace('"0.0.0.0:8443"', f'"127.0.0.1:{self.http_port}"')
        text = text.replace(":8443", f":{self.http_port}")
        values = {
            "NODE_ID": self.node_id,
            "PARENT_ID": self.parent_id,
            "DIRECTORY_SIGNER": self.topology.root,
            "HOST": "localhost",
            "PARENT_MQ": "localhost",
            "PARENT_HTTP": sandbox_http,
            "LT_SRC": str(REPO),
            "CHILD": self.node_id,
        }
        for name, value in values.items():
            text = re.sub(rf"^{name}=.*$", f"{name}={shlex.quote(value)}", text, flags=re.M)
        return text

    async def run_block(self, block: str, env: dict[str, str], log: Path) -> int:
        script = self.adapt(block)
        with open(log, "a") as out:
            out.write(f"\n$ ---- block ----\n{script}\n")
        with open(log, "ab") as out:
            process = await asyncio.create_subprocess_exec(
                "bash", "-e", "-c", script, env=env, stdout=out, stderr=out, cwd=self.root
            )
            while process.returncode is None:
                for request in sorted(self.asks.glob("*.req")):
                    argv = request.read_text().splitlines()
                    code, said = await asyncio.to_thread(self.answer, argv)
                    request.with_suffix(".out").write_text(said + "\n")
                    request.with_suffix(".done").write_text(str(code))
                    request.unlink()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 0.1)
        return process.returncode

    # --- the sandbox's own nodes ------------------------------------------------------

    def start_sandbox(self) -> None:
        for node in self.topology.nodes:
            if node.id == self.node_id:
                continue  # the guide installs this one
            with open(self.sandbox / f"{node.id}.log", "ab") as log:
                self.processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "adapters.cli",
                            "serve",
                            "--config",
                            str(self.files[node.id]),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                        cwd=self.sandbox,
                    )
                )

    def stop(self) -> None:
        for process in [*self.processes, *([self.service] if self.service else [])]:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        self.own_broker.stop_all()
        self.sandbox_broker.stop_all()


@pytest.fixture
def guide(tmp_path: Path) -> Iterator[Guide]:
    made = Guide(tmp_path / "scratch")
    try:
        yield made
    finally:
        made.stop()


async def _mailbox(store_folder: Path, organ: str) -> list[str]:
    store = SqliteStore(store_folder)
    try:
        await store.migrate()
        return [e.message_id for e in await store.mailbox(organ, unfetched_only=False, limit=1000)]
    finally:
        await store.close()


async def _until_in(store_folder: Path, organ: str, message_id: str) -> list[str]:
    async with asyncio.timeout(90):
        while message_id not in (found := await _mailbox(store_folder, organ)):  # noqa: ASYNC110
            await asyncio.sleep(0.5)
    return found


async def test_the_debian_guide_brings_up_a_node_linked_to_the_sandbox_over_tls(
    guide: Guide,
) -> None:
    blocks = guide_blocks()
    for heading in [*RUN, CHECK, CHILDREN]:
        assert blocks.get(heading), f"the guide has no bash block under '{heading}'"
    handover = guide.handover()
    assert handover.is_dir()
    await asyncio.to_thread(guide.sandbox_broker.start_all)
    # the parent's operator gives the child its login, as the guide's "children's logins"
    shims = guide.shims()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))},
        "PATH": f"{shims}:{guide.root}/usr/local/bin:" + SYSTEM_PATH,
    }
    for standard in ("usr/local/bin", "etc/systemd/system"):  # as on any Debian machine
        (guide.root / standard).mkdir(parents=True)
    log = guide.root / "guide.log"
    guide.start_sandbox()
    parent_file = guide.files[guide.parent_id]
    (child,) = blocks[CHILDREN]
    at_parent = child.replace('"$LT_ETC/node.toml"', shlex.quote(str(parent_file)))
    at_parent = at_parent.split("# its token for large-package")[0]  # the sandbox made tokens
    code = await guide.run_block(
        at_parent,
        {**env, "GUIDE_BROKER": "sandbox", "PATH": f"{sys.prefix}/bin:{env['PATH']}"},
        log,
    )
    assert code == 0, log.read_text()[-3000:]
    for heading in RUN:
        for block in blocks[heading]:
            code = await guide.run_block(block, env, log)
            assert code == 0, f"'{heading}' failed:\n{log.read_text()[-4000:]}"
    # "Check that it works": until the link to the parent is up (ops links exits 0)
    (check,) = blocks[CHECK]
    for _ in range(60):
        if await guide.run_block(check, env, log) == 0:
            break
        await asyncio.sleep(2)
    else:
        pytest.fail(f"'{CHECK}' never passed:\n{log.read_text()[-4000:]}")

    # down: from the province (the sandbox) to the commune's agency, over the AMQPS link
    pki = guide.sandbox / "pki"
    down = signed_document(pki, PROVINCE, [COMMUNE], 4101)
    async with NodeClient(guide.sandbox_broker.url(), guide.ids["province-h53"]) as province:
        (answer,) = await province.submit([down], as_organ=PROVINCE)
    assert answer.outcome == "accepted", answer
    commune_store = guide.root / "var" / "lib" / "lienthong" / "store"
    found = await _until_in(commune_store, COMMUNE, str(answer.message_id))
    assert found.count(str(answer.message_id)) == 1

    # up: from the commune's agency, over its own TLS-only broker, to the central node
    etc = guide.root / "etc" / "lienthong"
    tls = TlsClient(
        etc / "tls" / "ca.pem",
        etc / "tls" / f"{guide.node_id}.pem",
        etc / "tls" / f"{guide.node_id}.key",
    )
    up = signed_document(pki, COMMUNE, [CENTRAL], 4102)
    own = f"amqps://localhost:{guide.own_port}/?auth=external"
    async with NodeClient(
        own, guide.node_id, ssl_context=client_context(tls), login=guide.node_id
    ) as commune:
        (answer,) = await commune.submit([up], as_organ=COMMUNE)
    assert answer.outcome == "accepted", answer
    central_store = guide.files[guide.ids["central"]].parent / "store"
    found = await _until_in(central_store, CENTRAL, str(answer.message_id))
    assert found.count(str(answer.message_id)) == 1
