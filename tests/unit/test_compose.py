"""The containers (docker-compose.yml, Dockerfile, deploy/compose/; docs/containers.md).

No container engine runs on the project's machines, so the images are neither built nor
run here. What is checked instead: the compose file parses; every node service runs a node
file that its init service really writes (the init's own command, run here on the same
files); every volume, port, host name, login and dependency agrees from one file to the
next; each node file loads as a node would load it, with the signed directory it keeps;
and the Dockerfile's base, user, port and health check are what the services rely on.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from adapters.cli import main
from adapters.config_files import hosted_agencies, load_node_config, load_signed_directory
from adapters.sandbox_tree import load_topology
from exchange.config import NodeConfig
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
TOPOLOGY = load_topology(ROOT / "config" / "sandbox.toml")
NODES = [n.id for n in TOPOLOGY.nodes]
SERVICES: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]


def lienthong(*args: str | Path) -> tuple[int, str, str]:
    """The ``lienthong`` command, in this process: its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def mounts(service: str) -> dict[str, str]:
    """A service's volumes: mount point in the container → named volume or host path."""
    found = {}
    for entry in SERVICES[service].get("volumes", []):
        source, target, *_ = entry.split(":")
        found[target] = source
    return found


def host_path(service: str, container_path: str) -> Path:
    """Where a path of a service's container comes from in this checkout (a bind mount)."""
    path = PurePosixPath(container_path)
    for target, source in mounts(service).items():
        if path.is_relative_to(target) and source.startswith("."):
            return ROOT / source / path.relative_to(target)
    raise AssertionError(f"{service}: {container_path} is not bind-mounted from the checkout")


def init_command() -> tuple[str, str]:
    """The init's --write-only FOLDER and --dir, as its container sees them."""
    command = SERVICES["init"]["command"]
    assert command[0] == "sandbox"
    return command[command.index("--write-only") + 1], command[command.index("--dir") + 1]


def listen_port(config: NodeConfig) -> int:
    assert config.http is not None
    return config.http.port


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the init service writes into its volume, written by the init's own command
    with the node files its bind mount brings: a temporary folder stands for the volume."""
    folder = tmp_path_factory.mktemp("etc-lienthong")
    node_files, _ = init_command()
    code, out, err = lienthong(
        "sandbox", "--write-only", host_path("init", node_files), "--dir", folder
    )
    assert code == 0, err
    assert f"5 node files, the PKI and the signed directory in {folder}" in out
    return folder


@pytest.fixture(scope="module")
def configs(written: Path) -> dict[str, NodeConfig]:
    """Each node service's node file, as the node loads it (`serve --config FILE`)."""
    _, into = init_command()
    loaded = {}
    for node in NODES:
        assert node in SERVICES, f"no service for node {node}"
        command = SERVICES[node]["command"]
        assert command[:2] == ["serve", "--config"]
        file = PurePosixPath(command[2])
        # the node sees the init's volume at the path the init wrote it
        assert mounts(node)[into] == mounts("init")[into], f"{node}: not the init's {into}"
        loaded[node] = load_node_config(written / file.relative_to(into))
    return loaded


def test_the_compose_file_runs_a_broker_a_database_the_init_and_each_node_of_the_tree() -> None:
    assert set(SERVICES) == {"rabbitmq", "postgres", "init", *NODES}
    assert "management" in SERVICES["rabbitmq"]["image"]
    assert SERVICES["rabbitmq"]["healthcheck"]["test"][1] == "rabbitmq-diagnostics"
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    assert SERVICES["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert SERVICES["init"]["restart"] == "no"  # it runs once per `up`, then stays done
    for node in NODES:
        assert SERVICES[node]["command"] == ["serve", "--config", f"/etc/lienthong/{node}.toml"]
        assert SERVICES[node]["image"] == SERVICES["init"]["image"]


def test_each_node_file_is_the_node_of_the_sandbox_topology(
    configs: dict[str, NodeConfig],
) -> None:
    for node in TOPOLOGY.nodes:
        config = configs[node.id]
        assert (config.node_id, config.parent) == (node.id, node.parent)
        assert config.quorum, f"{node.id}: quorum queues"


def test_each_node_keeps_the_directory_the_root_signed_with_the_tree_in_it(
    configs: dict[str, NodeConfig],
) -> None:
    parents = {n.id: n.parent for n in TOPOLOGY.nodes}
    for node, config in configs.items():
        signed = load_signed_directory(config)  # checked with the node certificates it pins
        assert signed is not None
        assert signed.signer == TOPOLOGY.root
        assert {n: signed.directory.nodes[n] for n in parents} == parents
        hosted = {a.organ_id for a in TOPOLOGY.agencies if a.home_node == node}
        assert hosted_agencies(config, signed.directory) == hosted
        assert config.trust.node_key.exists()


def test_every_volume_a_service_mounts_is_declared_or_in_the_checkout() -> None:
    declared = set(yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["volumes"])
    used = set()
    for service in SERVICES:
        for source in mounts(service).values():
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{service}: {source} is not in the checkout"
            else:
                assert source in declared, f"{service}: volume {source} is not declared"
                used.add(source)
    assert used == declared
    # each node keeps its state in a volume of its own, where its store lives
    own = [mounts(node)["/var/lib/lienthong"] for node in NODES]
    assert len(set(own)) == len(NODES)


def test_each_store_is_where_its_node_keeps_state(configs: dict[str, NodeConfig]) -> None:
    environment = SERVICES["postgres"]["environment"]
    for node, config in configs.items():
        if config.store.kind == "sqlite":
            assert config.store.path is not None
            assert config.store.path.is_relative_to("/var/lib/lienthong"), node
            continue
        assert config.store.dsn is not None
        dsn = urlsplit(config.store.dsn)
        assert (dsn.hostname, dsn.port) == ("postgres", 5432)
        assert (dsn.username, dsn.password, dsn.path) == (
            environment["POSTGRES_USER"],
            environment["POSTGRES_PASSWORD"],
            "/" + environment["POSTGRES_DB"],
        )
        assert SERVICES[node]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert configs["province-h41"].store.kind == "postgres"


def test_each_node_reaches_the_broker_service_with_its_login(
    configs: dict[str, NodeConfig],
) -> None:
    conf = dict(
        line.split(" = ", 1)
        for line in (ROOT / "deploy" / "compose" / "rabbitmq.conf").read_text().splitlines()
        if " = " in line and not line.startswith("#")
    )
    mounted = mounts("rabbitmq")
    assert host_path("rabbitmq", "/etc/rabbitmq/conf.d/20-lienthong.conf").exists()
    assert "/etc/rabbitmq/conf.d/20-lienthong.conf" in mounted
    amqp = conf["listeners.tcp.default"]
    for node, config in configs.items():
        for url in config.broker_urls + config.parent_broker_urls:
            parts = urlsplit(url)
            assert (parts.hostname, str(parts.port)) == ("rabbitmq", amqp), node
            assert (parts.username, parts.password) == (conf["default_user"], conf["default_pass"])
    published = {p.rsplit(":", 1)[1] for p in SERVICES["rabbitmq"]["ports"]}
    assert {amqp, conf["management.tcp.port"]} == published


def test_each_link_reaches_the_parent_service_on_its_http_port(
    configs: dict[str, NodeConfig],
) -> None:
    for node, config in configs.items():
        if config.parent is None:
            assert config.link.transfer_url is None
            continue
        parts = urlsplit(config.link.transfer_url or "")
        assert parts.hostname == config.parent
        assert parts.hostname in SERVICES
        assert parts.port == listen_port(configs[config.parent])
        parent_http = configs[config.parent].http
        assert parent_http is not None
        assert node in parent_http.links  # the parent knows the child's token
        assert config.link.transfer_token is not None


def test_host_ports_are_distinct_and_lead_to_each_nodes_http_face(
    configs: dict[str, NodeConfig],
) -> None:
    exposed = set(dockerfile("EXPOSE"))
    host_ports = []
    for node, config in configs.items():
        (published,) = SERVICES[node]["ports"]
        address, host, inside = published.split(":")
        assert address == "127.0.0.1"  # development passwords: not for the network
        assert config.http is not None
        assert config.http.host == "0.0.0.0"
        assert int(inside) == config.http.port, f"{node}: the port published is not [http]'s"
        assert inside in exposed
        host_ports.append(host)
    for service in ("rabbitmq", "postgres"):
        host_ports += [p.split(":")[1] for p in SERVICES[service].get("ports", [])]
    assert len(host_ports) == len(set(host_ports))


def test_nodes_wait_for_the_init_the_broker_and_their_parent() -> None:
    for service, spec in SERVICES.items():
        for target in spec.get("depends_on", {}):
            assert target in SERVICES, f"{service} depends on {target}, not a service"
    for node in TOPOLOGY.nodes:
        depends = SERVICES[node.id]["depends_on"]
        assert depends["init"]["condition"] == "service_completed_successfully"
        assert depends["rabbitmq"]["condition"] == "service_healthy"
        parents = set(depends) - {"init", "rabbitmq", "postgres"}
        assert parents == ({node.parent} if node.parent else set())


def dockerfile_lines(instruction: str) -> list[str]:
    """What follows ``instruction`` on each of its lines of the Dockerfile, continuations
    joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == instruction:
            found.append(rest.strip())
    return found


def dockerfile(instruction: str) -> list[str]:
    """The words of every ``instruction`` line of the Dockerfile."""
    return [word for rest in dockerfile_lines(instruction) for word in rest.split()]


def test_the_image_is_slim_runs_as_a_user_of_its_own_and_starts_lienthong() -> None:
    (base,) = dockerfile_lines("FROM")
    assert re.fullmatch(r"python:3\.1[1-9]-slim", base), base
    (user,) = dockerfile("USER")
    assert user.split(":")[0] not in ("root", "0")
    assert dockerfile("ENTRYPOINT") == ['["lienthong"]']
    assert dockerfile("EXPOSE") == ["8480"]
    assert "/var/lib/lienthong" in " ".join(dockerfile("VOLUME"))
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    ignored = {line.strip().strip("/") for line in lines if not line.startswith("#")}
    copied = [
        source.strip("/") for line in dockerfile_lines("COPY") for source in line.split()[:-1]
    ]
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source not in ignored, f"{source} is copied, but .dockerignore leaves it out"
    assert {"pyproject.toml", "README.md", "exchange", "adapters", "schemas"} <= set(copied)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["scripts"]["lienthong"] == "adapters.cli:main"


class Probe(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def probe() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Probe)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def test_the_health_check_asks_healthz_and_fails_when_it_does_not_answer_200(probe: str) -> None:
    (healthcheck,) = dockerfile_lines("HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + len("CMD") :])
    env = dict(
        item.split("=", 1) for item in shlex.split(" ".join(dockerfile("ENV"))) if "=" in item
    )
    default = urlsplit(env["LIENTHONG_HEALTH_URL"])
    assert (default.hostname, default.path) == ("127.0.0.1", "/healthz")
    assert str(default.port) in dockerfile("EXPOSE")

    def check(url: str) -> int:
        run = subprocess.run(
            [sys.executable, *command[1:]],
            env={"LIENTHONG_HEALTH_URL": url},
            capture_output=True,
            timeout=30,
            check=False,
        )
        return run.returncode

    assert command[0] == "python"
    assert check(f"{probe}/healthz") == 0
    assert check(f"{probe}/readyz") != 0  # 503: unhealthy
    assert check("http://127.0.0.1:9/healthz") != 0  # nothing listens


def test_a_second_init_keeps_keys_tokens_and_the_directory(tmp_path: Path) -> None:
    node_files, _ = init_command()
    source = host_path("init", node_files)
    assert lienthong("sandbox", "--write-only", source, "--dir", tmp_path)[0] == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, _, err = lienthong("sandbox", "--write-only", source, "--dir", tmp_path)
    assert code == 0, err
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # running nodes hold these: an `up` again changes nothing


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('parent = "central"', 'parent = "province-h41"'),
            "province-h53.toml: key 'node': expected id 'province-h53' and parent 'central'",
        ),
        (
            ('listen = "0.0.0.0:8480"', 'listen = "0.0.0.0:8480"\n[http.operators.me]'),
            "province-h53.toml: key 'http.operators': written by `lienthong sandbox --write-only`",
        ),
        (('listen = "0.0.0.0:8480"', ""), "province-h53.toml: key 'http.listen': expected"),
    ],
)
def test_the_init_refuses_a_node_file_at_odds_with_the_tree(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    node_files, _ = init_command()
    bases = tmp_path / "nodes"
    bases.mkdir()
    for node in NODES:
        text = (host_path("init", node_files) / f"{node}.toml").read_text(encoding="utf-8")
        if node == "province-h53":
            assert change[0] in text
            text = text.replace(change[0], change[1])
        (bases / f"{node}.toml").write_text(text, encoding="utf-8")
    code, _, err = lienthong("sandbox", "--write-only", bases, "--dir", tmp_path / "out")
    assert code == 2
    assert message in err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_the_readme_links_the_containers_page() -> None:
    assert "[containers](docs/containers.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert (ROOT / "docs" / "containers.md").exists()
