"""Routing across the four levels: the next hop of each recipient, one copy per link,
and the share of the recipients a node serves given the link a package came by."""

from __future__ import annotations

import pytest

from exchange.errors import ConfigurationError
from exchange.topology import Topology

# the sandbox's tree (issue 4): central; province H53 with a district hosting communes as
# agencies and one commune with its own node; a second province H41
PARENTS = {
    "central": None,
    "province-h53": "central",
    "district-31-h53": "province-h53",
    "commune-21-31-h53": "district-31-h53",
    "province-h41": "central",
}
HOMES = {
    "000.00.00.G22": "central",  # Văn phòng Chính phủ
    "000.00.00.G14": "central",  # a ministry
    "000.00.00.H53": "province-h53",
    "000.00.11.H53": "province-h53",  # a department
    "000.00.31.H53": "district-31-h53",
    "000.20.31.H53": "district-31-h53",  # a commune hosted by its district
    "000.21.31.H53": "commune-21-31-h53",  # a commune with its own node
    "000.00.00.H41": "province-h41",
}
TREE = Topology(PARENTS, HOMES, redirects={"000.00.00.H99": "000.00.00.H41"})


def hops(here: str, organ: str) -> list[str]:
    """Follow a package hop by hop until it is in a mailbox."""
    path, arrived_from = [here], None
    while True:
        plan = TREE.plan(here, [organ], arrived_from)
        if plan.mailboxes:
            return path
        ((next_node, _),) = plan.links.items()
        here, arrived_from = next_node, here
        path.append(here)
        assert len(path) < 10


def test_commune_to_ministry_goes_up_four_levels() -> None:
    assert hops("commune-21-31-h53", "000.00.00.G14") == [
        "commune-21-31-h53",
        "district-31-h53",
        "province-h53",
        "central",
    ]


def test_ministry_to_a_commune_goes_down_to_its_node() -> None:
    assert hops("central", "000.21.31.H53") == [
        "central",
        "province-h53",
        "district-31-h53",
        "commune-21-31-h53",
    ]


def test_commune_to_a_commune_of_the_same_district_stops_at_the_district() -> None:
    assert hops("commune-21-31-h53", "000.20.31.H53") == ["commune-21-31-h53", "district-31-h53"]


def test_province_to_another_province_goes_through_central() -> None:
    assert hops("province-h53", "000.00.00.H41") == ["province-h53", "central", "province-h41"]


def test_one_copy_crosses_each_link_for_a_fan_out() -> None:
    everyone = list(HOMES)
    plan = TREE.plan("central", everyone)
    assert set(plan.mailboxes) == {"000.00.00.G22", "000.00.00.G14"}
    assert set(plan.links) == {"province-h53", "province-h41"}
    assert set(plan.links["province-h53"]) == {
        "000.00.00.H53",
        "000.00.11.H53",
        "000.00.31.H53",
        "000.20.31.H53",
        "000.21.31.H53",
    }
    # the province serves only its subtree of the same list, and passes one copy down
    below = TREE.plan("province-h53", everyone, arrived_from="central")
    assert set(below.mailboxes) == {"000.00.00.H53", "000.00.11.H53"}
    assert set(below.links) == {"district-31-h53"}


def test_from_a_child_a_node_serves_only_what_lies_outside_it() -> None:
    everyone = list(HOMES)
    plan = TREE.plan("district-31-h53", everyone, arrived_from="commune-21-31-h53")
    assert plan.mailboxes == ("000.00.31.H53", "000.20.31.H53")
    assert set(plan.links) == {"province-h53"}  # one copy up, for everything outside
    assert "000.21.31.H53" not in plan.links["province-h53"]  # the commune served itself


def test_an_unknown_recipient_at_the_root_is_reported() -> None:
    plan = TREE.plan("central", ["000.00.00.Z99", "000.00.00.G14"])
    assert plan.unknown == ("000.00.00.Z99",)
    assert plan.mailboxes == ("000.00.00.G14",)


def test_an_unknown_recipient_below_the_root_goes_up_to_ask() -> None:
    plan = TREE.plan("province-h41", ["000.00.00.Z99"])
    assert plan.links == {"central": ("000.00.00.Z99",)}


def test_an_old_code_is_redirected_to_the_merged_agency() -> None:
    plan = TREE.plan("central", ["000.00.00.H99"])
    assert plan.redirected == {"000.00.00.H99": "000.00.00.H41"}
    assert plan.links == {"province-h41": ("000.00.00.H41",)}


def test_a_tree_with_a_cycle_or_a_missing_parent_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="cycle"):
        Topology({"a": "b", "b": "a"}, {})
    with pytest.raises(ConfigurationError, match="not in the node tree"):
        Topology({"a": "nowhere"}, {})
    with pytest.raises(ConfigurationError, match="home node"):
        Topology({"a": None}, {"000.00.00.G22": "b"})


def test_the_directory_file_carries_the_node_tree_and_redirects() -> None:
    import tomllib

    from exchange.directory import directory_from_mapping

    directory = directory_from_mapping(
        tomllib.loads(
            """
version = 4
[[node]]
id = "central"
[[node]]
id = "province-h41"
parent = "central"
[[agency]]
organ_id = "000.00.00.G22"
home_node = "central"
[[agency]]
organ_id = "000.00.00.H41"
home_node = "province-h41"
old_codes = ["000.00.00.H99"]
"""
        ),
        "directory.toml",
    )
    plan = directory.topology().plan("central", ["000.00.00.H99"])
    assert plan.links == {"province-h41": ("000.00.00.H41",)}
    with pytest.raises(ConfigurationError, match="cycle"):
        directory_from_mapping(
            {"version": 1, "node": [{"id": "a", "parent": "b"}, {"id": "b", "parent": "a"}]},
            "directory.toml",
        )


def test_very_urgent_and_flash_documents_take_the_urgent_lane() -> None:
    from exchange.links import lane_of
    from exchange.model import Priority

    assert [lane_of(p) for p in Priority] == ["normal", "normal", "urgent", "urgent", "urgent"]
