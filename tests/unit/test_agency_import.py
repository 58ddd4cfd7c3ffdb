"""The national axis's agency list, imported: homes by subtree, oldCode redirects, and
every item left out named with its reason."""

from __future__ import annotations

import json

from exchange.agency_import import import_agencies

# the shape of getAgenciesList's data[] (reference/edxml.md §6)
AGENCIES = json.loads(
    """[
  {"id": 1, "code": "000.00.00.G22", "pid": 0, "name": "Văn phòng Chính phủ", "oldCode": ""},
  {"id": 2, "code": "000.00.00.H53", "pid": 0, "name": "UBND tỉnh Tây Ninh", "oldCode": null},
  {"id": 3, "code": "000.00.31.H53", "pid": 2, "name": "UBND huyện Bến Cầu", "oldCode": null},
  {"id": 4, "code": "000.21.31.H53", "pid": 3, "name": "UBND xã An Thạnh", "oldCode": null},
  {"id": 5, "code": "000.20.31.H53", "pid": 3, "name": "UBND thị trấn Bến Cầu", "oldCode": null},
  {"id": 6, "code": "000.00.00.H41", "pid": 0, "name": "UBND tỉnh Nghệ An",
   "oldCode": "000.00.00.H99"},
  {"id": 7, "code": "vxp.saas.03", "pid": 0, "name": "a tenant", "oldCode": null},
  {"id": 8, "code": "", "pid": 0, "name": "no code"},
  {"id": 9, "code": "000.00.00.H53", "pid": 0, "name": "listed twice"}
]"""
)
HOSTS = {
    "central": ["000.00.00.G22"],
    "province-h53": ["000.00.00.H53"],
    "district-31-h53": ["000.00.31.H53"],
    "commune-21-31-h53": ["000.21.31.H53"],
    "province-h41": ["000.00.00.H41"],
}


def test_each_agency_lives_on_the_deepest_node_whose_subtree_holds_it() -> None:
    imported = import_agencies(AGENCIES, HOSTS)
    homes = {e.organ_id: e.home_node for e in imported.entries}
    assert homes == {
        "000.00.00.G22": "central",
        "000.00.00.H53": "province-h53",
        "000.00.31.H53": "district-31-h53",
        "000.21.31.H53": "commune-21-31-h53",
        "000.20.31.H53": "district-31-h53",  # a commune without a node of its own
        "000.00.00.H41": "province-h41",
    }


def test_old_codes_become_redirects() -> None:
    assert import_agencies(AGENCIES, HOSTS).redirects == {"000.00.00.H99": "000.00.00.H41"}


def test_what_is_left_out_is_said() -> None:
    skipped = import_agencies(AGENCIES, HOSTS).skipped
    assert skipped == (
        "vxp.saas.03: no node hosts its subtree",
        "item 7 (id 8): no code",
        "000.00.00.H53: listed twice; the first is kept",
    )
