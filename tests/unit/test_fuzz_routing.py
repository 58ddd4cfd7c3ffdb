"""Fuzzing the router (exchange/topology.py, exchange/links.py): it always ends, never loops.

Over random node trees (up to five levels), with agencies homed anywhere (upstream axes
as bridged leaves among them), oldCode redirects (chains, and now and then a loop) and
recipients nobody hosts:

- following ``next_hop`` from any node reaches the recipient's home node, or a definite
  "unreachable" at the root, in at most twice the depth of steps, never visiting a node
  twice;
- carrying a package as the nodes do (``plan`` at each node, with the link it came by)
  puts each hosted recipient in its mailbox exactly once, hands each bridged one to its
  upstream once, gives each unknown one up once, crosses each link at most once and
  never exceeds twice the depth of hops;
- a redirect loop is refused with the node's own error, never followed forever.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from exchange.errors import ConfigurationError
from exchange.links import outbox_for
from exchange.store import Destination
from exchange.topology import Topology
from exchange.upstream import UPSTREAM_PREFIX, is_upstream
from tests.fuzzing import fuzz, tried

MAX_LEVELS = 5  # central, province, district, commune, and one below


@dataclass(frozen=True)
class World:
    topology: Topology
    depth: int  # edges from the root to the deepest node
    agencies: tuple[str, ...]  # hosted, by their current code
    old_codes: tuple[str, ...]  # names that redirect (perhaps in a loop)
    strangers: tuple[str, ...]  # nobody hosts them


@st.composite
def worlds(draw: st.DrawFn) -> World:
    size = draw(st.integers(min_value=1, max_value=14))
    parents: dict[str, str | None] = {"n0": None}
    level = {"n0": 0}
    for i in range(1, size):
        above = [n for n in parents if level[n] < MAX_LEVELS - 1 and not is_upstream(n)]
        parent = draw(st.sampled_from(above))
        bridge = draw(st.integers(min_value=0, max_value=5)) == 0
        name = f"{UPSTREAM_PREFIX}axis{i}" if bridge else f"n{i}"
        parents[name] = parent
        level[name] = level[parent] + 1
    nodes = sorted(parents)
    agencies = tuple(f"A{i}" for i in range(draw(st.integers(min_value=1, max_value=8))))
    homes = {organ: draw(st.sampled_from(nodes)) for organ in agencies}
    # old codes: each renamed to a hosted agency, an unknown one, or another old code
    old_codes = tuple(f"OLD{i}" for i in range(draw(st.integers(min_value=0, max_value=4))))
    strangers = ("X0", "X1")
    redirects = {
        old: draw(st.sampled_from((*agencies, *strangers, *old_codes))) for old in old_codes
    }
    redirects = {old: new for old, new in redirects.items() if new != old}
    return World(
        Topology(parents, homes, redirects), max(level.values()), agencies, old_codes, strangers
    )


def neighbours(topology: Topology, node: str) -> set[str]:
    below = {n for n, p in topology.parents.items() if p == node}
    above = topology.parents[node]
    return below | ({above} if above is not None else set())


def names(world: World) -> st.SearchStrategy[str]:
    return st.sampled_from((*world.agencies, *world.old_codes, *world.strangers))


def current(world: World, named: str) -> str | None:
    """The recipient's current code, or None when its redirects go round."""
    try:
        return world.topology.current_code(named)
    except ConfigurationError:
        event("a redirect loop, refused")
        return None


@fuzz(300)
@given(data=st.data())
def test_fuzz_next_hops_reach_home_or_unreachable_without_revisiting_a_node(
    data: st.DataObject,
) -> None:
    tried("routing: next hops end without a loop")
    world = data.draw(worlds())
    topology = world.topology
    start = data.draw(st.sampled_from(sorted(topology.parents)))
    organ = current(world, data.draw(names(world)))
    if organ is None:
        return
    home = topology.homes.get(organ)
    here, visited = start, [start]
    for _ in range(2 * world.depth + 1):
        hop = topology.next_hop(here, organ)
        if hop == here:
            assert here == home
            event("reached home")
            return
        if hop is None:
            assert home is None, f"{organ} is hosted at {home}, yet {here} has nowhere to go"
            assert topology.parents[here] is None, "only the root may call a recipient unknown"
            event("unreachable")
            return
        assert hop in neighbours(topology, here), f"{here} -> {hop} is not a link"
        assert hop not in visited, f"a loop: {visited} -> {hop}"
        visited.append(hop)
        here = hop
    raise AssertionError(f"no end after {2 * world.depth} steps: {visited}")


@fuzz(300)
@given(data=st.data())
def test_fuzz_a_package_carried_node_by_node_ends_once_per_recipient(
    data: st.DataObject,
) -> None:
    tried("routing: a carried package ends once per recipient")
    world = data.draw(worlds())
    topology = world.topology
    entry = data.draw(st.sampled_from(sorted(n for n in topology.parents if not is_upstream(n))))
    named = data.draw(st.lists(names(world), min_size=1, max_size=6))
    if any(current(world, n) is None for n in named):
        return
    delivered: Counter[tuple[str, str]] = Counter()  # (node, organ)
    unknown: Counter[str] = Counter()
    links: Counter[tuple[str, str]] = Counter()
    # a copy in flight: where it is, the link it came by, its recipients, hops so far
    copies: list[tuple[str, str | None, tuple[str, ...], int]] = [(entry, None, tuple(named), 0)]
    while copies:
        here, came_from, recipients, hops = copies.pop()
        assert hops <= 2 * world.depth, f"{hops} hops in a tree {world.depth} deep"
        if is_upstream(here):  # the bridge hands them to the other axis: an end
            delivered.update((here, organ) for organ in recipients)
            continue
        plan = topology.plan(here, recipients, came_from)
        delivered.update((here, organ) for organ in plan.mailboxes)
        unknown.update(plan.unknown)
        rows = outbox_for(plan, "normal", here)
        assert len([r for r in rows if r.destination is Destination.LINK]) == len(plan.links)
        for node, organs in plan.links.items():
            assert node in neighbours(topology, here)
            assert node != came_from or not organs, "sent back the way it came"
            links[(here, node)] += 1
            copies.append((node, here, organs, hops + 1))
    for organ in dict.fromkeys(topology.current_code(n) for n in named):
        home = topology.homes.get(organ)
        if home is not None:
            assert delivered[(home, organ)] == 1, f"{organ} reached {home} {delivered} times"
    hosted = {topology.current_code(n) for n in named} & set(topology.homes)
    assert {organ for _, organ in delivered} == hosted, "delivered somewhere it is not hosted"
    assert all(count == 1 for count in delivered.values()), f"a duplicate: {delivered}"
    assert all(count == 1 for count in links.values()), f"a link crossed twice: {links}"
    # given up under the name it had where it was judged: the entry node's, or the
    # current code the nodes after it carry
    strangers = {topology.current_code(n) for n in named} - set(topology.homes)
    assert {topology.current_code(n) for n in unknown} == strangers
    assert all(count == 1 for count in unknown.values()), f"given up twice: {unknown}"
    event(f"{len(hosted)} hosted, {len(strangers)} unknown")


@fuzz(100)
@given(
    loop=st.lists(
        st.sampled_from(("OLD0", "OLD1", "OLD2", "OLD3")), min_size=2, max_size=4, unique=True
    )
)
def test_fuzz_a_redirect_loop_is_refused_not_followed(loop: list[str]) -> None:
    tried("routing: a redirect loop is refused")
    redirects = dict(zip(loop, [*loop[1:], loop[0]], strict=True))
    topology = Topology({"n0": None}, {"A0": "n0"}, redirects)
    for name in loop:
        with pytest.raises(ConfigurationError, match="loop"):
            topology.plan("n0", [name, "A0"])
