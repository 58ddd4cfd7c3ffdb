"""docs/configuration.md is made from the node file schema, and the schema is exactly what
the loaders read: every key they ask for is in it, every key in it is asked for, each
default in it is what an absent key gets, and a key it does not know is refused by name."""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from adapters.cli import main
from adapters.config_files import load_node_config
from adapters.config_reference import (
    COMMAND,
    example_node_file,
    example_path,
    reference_markdown,
)
from adapters.sandbox_tree import load_topology, topology_file, write_tree
from exchange import config_alerts, config_http, config_upstream
from exchange.config import NodeConfig, node_config_from_mapping
from exchange.config_keys import refuse_unknown, schema_path
from exchange.config_schema import Key, Table, node_file_tables
from exchange.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "configuration.md"
NODE_EXAMPLE = ROOT / "config" / "node.example.toml"
KeyPath = tuple[str, ...]


class Recording(Mapping[str, Any]):
    """A table of a node file that notes the path of every key the loaders ask it for,
    present or not, and hands out its inner tables recording too."""

    def __init__(self, data: Mapping[str, Any], at: KeyPath, read: set[KeyPath]) -> None:
        self.data, self.at, self.read = data, at, read

    def __getitem__(self, key: str) -> Any:
        self.read.add((*self.at, key))
        return _recording(self.data[key], (*self.at, key), self.read)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def _recording(value: Any, at: KeyPath, read: set[KeyPath]) -> Any:
    if isinstance(value, Mapping):
        return Recording(value, at, read)
    if isinstance(value, list):  # [[...]]: each table of the list records under one path
        return [_recording(item, at, read) for item in value]
    return value


def keys_read(data: Mapping[str, Any], base: Path) -> set[KeyPath]:
    read: set[KeyPath] = set()
    node_config_from_mapping(Recording(data, (), read), "node.toml", base)
    return read


def every_key() -> list[tuple[Table, Key]]:
    return [(table, key) for table in node_file_tables() for key in table.keys]


def _value(literal: str) -> Any:
    return tomllib.loads(f"v = {literal}")["v"]


def _table_at(data: dict[str, Any], path: KeyPath) -> dict[str, Any]:
    for part in path:
        data = data[part]
        if isinstance(data, list):  # [[...]]: its first table
            data = data[0]
    return data


def full_example() -> dict[str, Any]:
    return tomllib.loads(example_node_file())


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """The node file's folder, with each file that a key names and the loaders read."""
    for _, key in every_key():
        if key.file:
            path = tmp_path / _value(key.example)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("a secret of thirty-two bytes....\n", encoding="utf-8")
    return tmp_path


def test_the_configuration_page_is_made_from_the_schema(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert PAGE.read_text(encoding="utf-8") == reference_markdown(), (
        f"docs/configuration.md differs from the schema; remake it: {COMMAND}"
    )
    assert main(["config", "reference"]) == 0
    assert capsys.readouterr().out == reference_markdown()


def test_the_complete_example_sets_every_key_and_loads(base: Path) -> None:
    data = full_example()
    for table, key in every_key():
        assert key.name in _table_at(data, example_path(table)), (table.path, key.name)
    config = node_config_from_mapping(data, "node.toml", base)
    assert (config.node_id, config.parent) == ("province-h53", "central")
    assert config.link.transfer_token == "a secret of thirty-two bytes...."
    assert config.http is not None
    assert config.http.clients["qlvb-tayninh"].hmac_secret == b"a secret of thirty-two bytes...."
    assert config.http.operators["ops-tayninh"].may_act
    assert set(config.http.links) == {"commune-21-31-h53"}
    (upstream,) = config.upstreams
    assert (upstream.name, upstream.credentials[0].name) == ("vdxp", "tayninh")
    assert config.alerts is not None
    assert config.alerts.smtp_password == "a secret of thirty-two bytes...."
    assert config.credentials["vendor-x"].source == "vendor-gateway"


def _variants(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The complete example once per choice that some key is read only under."""
    for _, key in every_key():
        if key.when is None:
            continue
        on, value = key.when
        owner = next(t for t in node_file_tables() if t.path == on.rsplit(".", 1)[0])
        variant = copy.deepcopy(data)
        _table_at(variant, example_path(owner))[on.rsplit(".", 1)[1]] = _value(value)
        yield variant


def test_the_schema_holds_every_key_the_loaders_read_and_nothing_else(base: Path) -> None:
    data = full_example()
    read = keys_read(data, base)
    read |= keys_read(tomllib.loads(NODE_EXAMPLE.read_text(encoding="utf-8")), NODE_EXAMPLE.parent)
    for variant in _variants(data):
        read |= keys_read(variant, base)
    unknown = sorted(".".join(path) for path in read if schema_path(path) is None)
    assert not unknown, f"read by the loaders, missing from exchange/config_schema*.py: {unknown}"
    named = {schema_path(path) for path in read}
    unread = sorted(
        f"{t.path}.{k.name}" for t, k in every_key() if (*t.segments, k.name) not in named
    )
    assert not unread, f"in the schema, read by no loader: {unread}"


def _load(data: Mapping[str, Any], base: Path) -> NodeConfig | str:
    try:
        return node_config_from_mapping(data, "node.toml", base)
    except ConfigurationError as exc:
        return f"refused: {exc.message}"


@pytest.mark.parametrize(
    ("table", "key"),
    [(t, k) for t, k in every_key() if k.default is not None],
    ids=lambda x: x.path if isinstance(x, Table) else x.name,
)
def test_each_default_is_what_an_absent_key_gets(table: Table, key: Key, base: Path) -> None:
    data = full_example()
    del _table_at(data, example_path(table))[key.name]
    absent = _load(data, base)
    _table_at(data, example_path(table))[key.name] = _value(key.default or "")
    given = _load(data, base)
    if isinstance(absent, str):  # absent, it leaves the example incomplete: so does the default
        assert isinstance(given, str), f"{table.path}.{key.name}: {absent}"
    else:
        assert given == absent, f"{table.path}.{key.name}: the default is not {key.default}"


@pytest.mark.parametrize(
    ("path", "right", "wrong", "message"),
    [
        (
            ("link",),
            "parent_url",
            "parent_ur",
            "unknown key 'link.parent_ur'; did you mean 'parent_url'?",
        ),
        (
            ("credentials", "vendor-x"),
            "organs",
            "organ",
            "unknown key 'credentials.vendor-x.organ'; did you mean 'organs'?",
        ),
        (
            ("upstreams", "vdxp", "credentials"),
            "secret_file",
            "secret",
            "unknown key 'upstreams.vdxp.credentials[0].secret'; did you mean 'secret_file'?",
        ),
        (
            ("rabbitmq",),
            None,
            "heartbeat_s",
            "unknown key 'rabbitmq.heartbeat_s'; it is a key of [link]",
        ),
        ((), "limits", "limit", "unknown table 'limit'; did you mean 'limits'?"),
    ],
)
def test_a_key_the_schema_does_not_know_is_refused_with_the_closest(
    path: KeyPath, right: str | None, wrong: str, message: str, base: Path
) -> None:
    data = full_example()
    table = _table_at(data, path)
    table[wrong] = table.pop(right) if right else 15  # misspelt, or in the wrong table
    with pytest.raises(ConfigurationError) as refused:
        node_config_from_mapping(data, "/etc/lienthong/node.toml", base)
    assert refused.value.message == f"/etc/lienthong/node.toml: {message}"


def test_the_sandbox_node_files_load(tmp_path: Path) -> None:
    topology = load_topology(topology_file(), "-k")
    child = next(n.id for n in topology.nodes if n.parent is not None)
    files = write_tree(
        tmp_path, topology, "amqp://guest:guest@127.0.0.1:5672/", {child: "amqp://127.0.0.1:1/"}
    )
    configs = {node: load_node_config(path) for node, path in files.items()}
    assert configs[child].link.parent_url == "amqp://127.0.0.1:1/"
    assert any(c.upstreams for c in configs.values())  # the bridge to the national axis


def test_the_node_file_snippets_of_the_docs_use_only_known_keys() -> None:
    pages = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
    texts = {str(page.relative_to(ROOT)): page.read_text(encoding="utf-8") for page in pages}
    texts |= {m.__name__: m.__doc__ or "" for m in (config_http, config_alerts, config_upstream)}
    checked = []
    for where, text in texts.items():
        for block in re.findall(r"```toml\n(.*?)```", text, re.DOTALL):
            data = tomllib.loads(block)
            if "agency" in data or isinstance(data.get("node"), list):
                continue  # a directory, not a node file
            refuse_unknown(data, where)
            checked.append(where)
    assert {"docs/alerts.md", "docs/bridge.md", "exchange.config_http"} <= set(checked)
