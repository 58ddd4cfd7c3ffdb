"""Agency codes (OrganId): levels read right to left, real non-standard ids tolerated."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.organ import OrganCode, parse_organ_id

COMMUNE = "000.21.31.H53"
DISTRICT = "000.00.31.H53"
PROVINCE = "000.00.00.H53"
OTHER_PROVINCE = "000.00.00.G22"

# The contract's character rule for OrganId (exchange.rules.ORGAN_ID); parse_organ_id
# promises never to raise for a value that passes it.
CONTRACT_ORGAN_ID = r"[0-9A-Za-z.]{1,35}"


# --- standard codes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "levels"),
    [
        (COMMUNE, ("H53", "31", "21")),
        (DISTRICT, ("H53", "31")),
        (PROVINCE, ("H53",)),
        (OTHER_PROVINCE, ("G22",)),
    ],
)
def test_standard_codes_read_right_to_left(raw: str, levels: tuple[str, ...]) -> None:
    code = parse_organ_id(raw)
    assert code.raw == raw
    assert code.levels == levels
    assert code.depth == len(levels)
    assert code.top == levels[0]
    assert code.standard is True


def test_a_commune_code_has_depth_three() -> None:
    code = parse_organ_id(COMMUNE)
    assert code.levels == ("H53", "31", "21")
    assert code.depth == 3
    assert code.standard is True


def test_a_province_code_has_depth_one() -> None:
    code = parse_organ_id(OTHER_PROVINCE)
    assert code.levels == ("G22",)
    assert code.depth == 1
    assert code.top == "G22"


def test_surrounding_whitespace_is_ignored() -> None:
    assert parse_organ_id(f"  {COMMUNE}\n") == parse_organ_id(COMMUNE)


# --- is_within -------------------------------------------------------------------------


def test_commune_is_within_its_district_and_province() -> None:
    commune, district, province = map(parse_organ_id, (COMMUNE, DISTRICT, PROVINCE))
    assert commune.is_within(district)
    assert district.is_within(province)
    assert commune.is_within(province)


def test_a_code_is_within_itself() -> None:
    for raw in (COMMUNE, DISTRICT, PROVINCE):
        assert parse_organ_id(raw).is_within(parse_organ_id(raw))


def test_is_within_is_not_symmetric() -> None:
    commune, district, province = map(parse_organ_id, (COMMUNE, DISTRICT, PROVINCE))
    assert not province.is_within(district)
    assert not province.is_within(commune)
    assert not district.is_within(commune)


def test_nothing_is_within_another_province() -> None:
    other = parse_organ_id(OTHER_PROVINCE)
    for raw in (COMMUNE, DISTRICT, PROVINCE):
        assert not parse_organ_id(raw).is_within(other)
    assert not other.is_within(parse_organ_id(PROVINCE))


def test_a_commune_is_not_within_a_sibling_district() -> None:
    assert not parse_organ_id(COMMUNE).is_within(parse_organ_id("000.00.32.H53"))
    assert not parse_organ_id(COMMUNE).is_within(parse_organ_id("000.22.31.H53"))


# --- parent ---------------------------------------------------------------------------


def test_parent_of_a_commune_is_its_district() -> None:
    parent = parse_organ_id(COMMUNE).parent()
    assert isinstance(parent, OrganCode)
    assert parent.levels == ("H53", "31")
    assert parent.raw == DISTRICT
    assert parent.standard is True
    assert parent == parse_organ_id(DISTRICT)


def test_parents_climb_to_the_province_and_stop() -> None:
    district = parse_organ_id(COMMUNE).parent()
    assert district is not None
    province = district.parent()
    assert province == parse_organ_id(PROVINCE)
    assert province is not None
    assert province.parent() is None


@pytest.mark.parametrize(
    "raw",
    [
        COMMUNE,
        DISTRICT,
        "28.22.H17",
        "1.2.3.4.5.H53",
        "000.21.00.H53",  # a commune directly under a province (the post-2025 shape)
    ],
)
def test_parent_is_what_its_raw_code_parses_to(raw: str) -> None:
    parent = parse_organ_id(raw).parent()
    assert parent is not None
    assert parent == parse_organ_id(parent.raw)


# --- real, non-standard ids ------------------------------------------------------------


def test_three_group_ids_keep_their_levels_but_are_not_standard() -> None:
    code = parse_organ_id("28.22.H17")
    assert code.levels == ("H17", "22", "28")
    assert code.depth == 3
    assert code.standard is False


@pytest.mark.parametrize("raw", ["vxp.saas.03", "H37.DN.001"])
def test_ids_without_a_level_one_unit_are_one_opaque_level(raw: str) -> None:
    code = parse_organ_id(raw)
    assert code.levels == (raw,)
    assert code.depth == 1
    assert code.standard is False
    assert code.parent() is None


def test_an_opaque_id_is_not_within_a_province() -> None:
    assert not parse_organ_id("H37.DN.001").is_within(parse_organ_id("000.00.00.H37"))


# --- invalid strings -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "000/21", "a b", "000.21.31.H53;", "Hà.53", "A" * 36, "0" * 40],
    ids=["empty", "blank", "slash", "space", "semicolon", "non-ascii", "36-chars", "40-chars"],
)
def test_invalid_strings_raise_value_error(raw: str) -> None:
    with pytest.raises(ValueError, match="not an agency code"):
        parse_organ_id(raw)


def test_thirty_five_characters_is_the_limit() -> None:
    raw = "0" * 31 + ".H53"
    assert len(raw) == 35
    assert parse_organ_id(raw).levels == ("H53",)


# --- properties ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.from_regex(CONTRACT_ORGAN_ID, fullmatch=True))
def test_any_id_the_contract_accepts_parses(raw: str) -> None:
    code = parse_organ_id(raw)
    assert code.raw == raw
    assert code.depth >= 1
    assert all(code.levels)
    assert code.is_within(code)
    assert code.standard == bool(re.fullmatch(r"\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}", raw))


_GROUP = st.from_regex(r"[0-9]{1,3}", fullmatch=True)
_PROVINCE = st.from_regex(r"[A-Z][0-9]{2}", fullmatch=True)


@st.composite
def _codes(draw: st.DrawFn) -> str:
    """Codes with any mix of used and unused (all-zero) groups below the province."""
    groups = draw(st.lists(_GROUP, max_size=4))
    return ".".join([*reversed(groups), draw(_PROVINCE)])


@settings(max_examples=200, deadline=None)
@given(_codes())
def test_every_parent_contains_its_child_and_reparses_to_itself(raw: str) -> None:
    code = parse_organ_id(raw)
    parent = code.parent()
    if code.depth == 1:
        assert parent is None
        return
    assert parent is not None
    assert parent.depth < code.depth
    assert parent.levels == code.levels[: parent.depth]
    assert parent.depth == 1 or set(parent.levels[-1]) != {"0"}, "a parent ends on a used level"
    assert parent.raw.count(".") == raw.count(".")
    assert code.is_within(parent)
    assert not parent.is_within(code)
    assert parent == parse_organ_id(parent.raw)
