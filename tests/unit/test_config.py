"""The node file: read once, every mistake named by file, key and what was expected."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from adapters.config_files import directory_key, load_directories
from adapters.sandbox_tree import load_topology, topology_file
from adapters.transport_amqp import with_heartbeat
from exchange.config import NodeConfig, node_config_from_mapping
from exchange.errors import ConfigurationError

GOOD = """
[node]
id = "province-h53"
parent = "central"

[rabbitmq]
url = "amqp://guest:guest@127.0.0.1:5672/"
prefetch = 16

[store]
kind = "sqlite"
path = "var/store"

[trust]
ca = "pki/ca.pem"
directory = "pki/directory.toml"
node_key = "pki/nodes/province-h53.key"
node_certs = "pki/nodes"

[limits]
max_attempts = 4

[sources.vendor-gateway]
policy = "legacy-or-unsigned"
"""


def load(text: str) -> NodeConfig:
    return node_config_from_mapping(tomllib.loads(text), "node.toml", Path("/etc/lienthong"))


def test_a_good_file_is_read_with_defaults_and_relative_paths() -> None:
    config = load(GOOD)
    assert config.node_id == "province-h53"
    assert config.parent == "central"
    assert config.prefetch == 16
    assert config.publish_timeout_s == 10.0
    assert config.max_attempts == 4
    assert config.store.path == Path("/etc/lienthong/var/store")
    assert config.store.lease_s == 60.0  # several instances on PostgreSQL: what each holds
    assert config.policy_for("vendor-gateway").allow_unsigned
    assert config.policy_for("anyone-else").name == "strict"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('id = "province-h53"', 'id = "tỉnh tây ninh"'), "key 'node.id': expected letters"),
        (
            ("prefetch = 16", "prefetch = -1"),
            "key 'rabbitmq.prefetch': expected a positive whole number, found int -1",
        ),
        (
            ("prefetch = 16", 'prefetch = "16"'),
            "key 'rabbitmq.prefetch': expected a positive whole number, found str '16'",
        ),
        (
            ('kind = "sqlite"', 'kind = "mysql"'),
            "key 'store.kind': expected 'sqlite' or 'postgres', found 'mysql'",
        ),
        (
            ('policy = "legacy-or-unsigned"', 'policy = "lenient"'),
            "key 'sources.vendor-gateway.policy': expected one of",
        ),
        (
            ('ca = "pki/ca.pem"\n', ""),
            "key 'trust.ca': expected a file or folder path, found nothing",
        ),
        (("[limits]", "[limit]"), "unknown table 'limit'"),
        (
            ('path = "var/store"', 'path = "var/store"\nlease_s = 0'),
            "key 'store.lease_s': expected a positive number of seconds, found float 0.0",
        ),
        (
            ("max_attempts = 4", "admission_workers = -2"),
            "key 'limits.admission_workers': expected a whole number, 0 or more, found int -2",
        ),
    ],
)
def test_each_mistake_names_the_file_and_the_key(change: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load(GOOD.replace(*change))
    assert caught.value.message.startswith("node.toml: ")
    assert message in caught.value.message


def test_optional_tables_may_be_left_out() -> None:
    minimal = GOOD.split("[limits]")[0]
    config = load(minimal)
    assert config.max_attempts == 5
    assert config.link.max_bytes == 64 * 1024 * 1024
    assert config.link.parent_url is None
    assert config.link.heartbeat_s == 15


def test_a_link_heartbeat_is_asked_of_the_parents_broker_unless_its_url_names_one() -> None:
    config = load(GOOD + '[link]\nparent_url = "amqp://u:p%40ss@parent:5672/lt"\nheartbeat_s = 5\n')
    assert config.link.heartbeat_s == 5
    assert config.link.parent_url is not None
    asked = with_heartbeat(config.link.parent_url, config.link.heartbeat_s)
    assert asked == "amqp://u:p%40ss@parent:5672/lt?heartbeat=5"
    assert with_heartbeat("amqp://h/?name=x", 5) == "amqp://h/?name=x&heartbeat=5"
    assert with_heartbeat("amqp://h/?heartbeat=30", 5) == "amqp://h/?heartbeat=30"
    with pytest.raises(ConfigurationError, match=r"link\.heartbeat_s"):
        load(GOOD + "[link]\nheartbeat_s = 0\n")


def test_a_cluster_is_named_by_the_list_of_its_nodes_and_one_url_still_works() -> None:
    one = load(GOOD)
    assert one.broker_urls == ("amqp://guest:guest@127.0.0.1:5672/",)
    assert one.parent_broker_urls == one.broker_urls  # the link goes to our own broker
    nodes = ["amqp://u:p@mq1:5672/", "amqp://u:p@mq2:5672/", "amqp://u:p@mq3:5672/"]
    cluster = load(
        GOOD.replace(
            'url = "amqp://guest:guest@127.0.0.1:5672/"', f"url = {nodes!r}".replace("'", '"')
        )
        + '[link]\nparent_url = ["amqp://c:s@p1/", "amqp://c:s@p2/"]\n'
    )
    assert cluster.broker_urls == tuple(nodes)
    assert cluster.amqp_url == nodes[0]  # what reads one URL (the CLI's client) takes the first
    assert cluster.parent_broker_urls == ("amqp://c:s@p1/", "amqp://c:s@p2/")
    for bad in ("url = []", "url = [5672]", 'url = ["http://mq1/"]', "url = 5672"):
        with pytest.raises(ConfigurationError, match=r"key 'rabbitmq\.url': expected an amqp"):
            load(GOOD.replace('url = "amqp://guest:guest@127.0.0.1:5672/"', bad))


def test_admission_may_run_in_the_nodes_own_process() -> None:
    assert load(GOOD.replace("max_attempts = 4", "admission_workers = 0")).admission_workers == 0
    assert load(GOOD).admission_workers == max(1, (os.cpu_count() or 2) - 1)


def test_the_sandbox_topology_packs_its_tree_into_four_processes() -> None:
    topology = load_topology(topology_file(), "-x")
    assert len(topology.processes()) <= 4
    parents = {node.id: node.parent for node in topology.nodes}
    assert parents["commune-22-31-h53-x"] == "district-31-h53-x"
    assert topology.node_of(topology.demo_recipient) == "province-h41-x"


def test_a_sandbox_agency_on_no_node_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "sandbox.toml"
    broken.write_text(
        topology_file()
        .read_text(encoding="utf-8")
        .replace('home_node = "province-h41"', 'home_node = "province-h99"', 1),
        encoding="utf-8",
    )
    with pytest.raises(
        ConfigurationError, match=r"000\.00\.00\.H41 names home node 'province-h99'"
    ):
        load_topology(broken)


def test_nodes_of_one_process_that_name_one_directory_file_share_it(tmp_path: Path) -> None:
    """``lienthong serve`` with several nodes reads each directory file once (with 10,000
    agencies and 28 nodes per process, reading it per node took most of the start)."""
    (tmp_path / "pki").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "pki" / "directory.toml").write_text(
        'version = 1\n[[agency]]\norgan_id = "000.00.00.H53"\n'
    )
    first = node_config_from_mapping(tomllib.loads(GOOD), "a.toml", tmp_path)
    other_path = GOOD.replace("pki/directory.toml", "elsewhere/../pki/directory.toml")
    second = node_config_from_mapping(tomllib.loads(other_path), "b.toml", tmp_path)
    loaded = load_directories([first, second])
    assert len(loaded) == 1
    assert loaded[directory_key(first)] is loaded[directory_key(second)]
    directory, signed = loaded[directory_key(first)]
    assert directory.get("000.00.00.H53") is not None
    assert signed is None  # a TOML directory: unsigned, for development
