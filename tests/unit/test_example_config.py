"""The example node file and directory in config/ are valid, so the docs stay true."""

from __future__ import annotations

import tomllib
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from exchange.config import node_config_from_mapping
from exchange.directory import directory_from_mapping

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_the_example_node_file_is_valid() -> None:
    path = CONFIG / "node.example.toml"
    config = node_config_from_mapping(tomllib.loads(path.read_text()), str(path), CONFIG)
    assert config.node_id == "province-h53"
    assert config.store.kind == "sqlite"
    assert config.policy_for("vendor-gateway").allow_unsigned
    calendar = config.deadlines.calendar
    assert date(2027, 2, 5) in calendar.holidays
    assert config.deadlines.ttl == timedelta(hours=168)
    # delivered the Thursday evening before Tết 2027: due when the offices open again
    hanoi = ZoneInfo("Asia/Ho_Chi_Minh")
    due = calendar.end_of_working_day(datetime(2027, 2, 4, 18, 0, tzinfo=hanoi))
    assert due == datetime(2027, 2, 12, 17, 0, tzinfo=hanoi)


def test_the_example_directory_is_valid() -> None:
    path = CONFIG / "directory.example.toml"
    directory = directory_from_mapping(tomllib.loads(path.read_text(encoding="utf-8")), str(path))
    entry = directory.get("000.21.31.H53")
    assert entry is not None
    assert entry.home_node == "province-h53"
    assert entry.subject["CN"] == r"000\.21\.31\.H53"
