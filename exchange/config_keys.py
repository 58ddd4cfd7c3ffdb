"""Which keys a node file may hold: those of the schema (exchange/config_schema.py),
checked before any value is read. A misspelt key stops the node, naming the closest known
one, instead of being ignored while its default quietly applies."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from exchange.config_schema import is_named, node_file_tables
from exchange.errors import ConfigurationError

_BARE = re.compile(r"[A-Za-z0-9_-]+")


@cache
def _children() -> dict[tuple[str, ...], dict[str, bool]]:
    """For each table path of the schema, its children: name -> is it a table."""
    children: dict[tuple[str, ...], dict[str, bool]] = {(): {}}
    for table in node_file_tables():
        path = table.segments
        for depth in range(len(path)):
            children.setdefault(path[:depth], {})[path[depth]] = True
        children.setdefault(path, {}).update((key.name, False) for key in table.keys)
    return children


def _step(known: Mapping[str, bool], name: str) -> str | None:
    """The schema's name for ``name`` among ``known``: itself, a <named> table, or None."""
    if name in known:
        return name
    return next((child for child in known if is_named(child)), None)


def schema_path(path: Sequence[str]) -> tuple[str, ...] | None:
    """A path in a node file (``("sources", "amqp", "policy")``) as the schema names it
    (``("sources", "<name>", "policy")``); None when the schema has no such path."""
    at: tuple[str, ...] = ()
    for name in path:
        step = _step(_children().get(at, {}), name)
        if step is None:
            return None
        at += (step,)
    return at


def refuse_unknown(data: Mapping[str, Any], source: str) -> None:
    """Raise ConfigurationError for the first key or table the schema does not know.
    Values are not judged here: a table given as a number is the loaders' to name."""
    _walk(data, (), (), source)


def _walk(
    table: Mapping[str, Any], at: tuple[str, ...], shown: tuple[str, ...], source: str
) -> None:
    known = _children().get(at, {})
    for name in table:
        step = _step(known, name)
        if step is None:
            raise ConfigurationError(_unknown(source, shown, name, known, table[name]))
        if not known[step]:
            continue  # a key: its value is for the loader to judge
        value = table[name]
        if isinstance(value, Mapping):
            _walk(value, (*at, step), (*shown, _quoted(name)), source)
        elif isinstance(value, list):  # [[...]]: a list of tables
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    _walk(item, (*at, step), (*shown, f"{_quoted(name)}[{i}]"), source)


def _unknown(
    source: str, shown: tuple[str, ...], name: str, known: Mapping[str, bool], value: object
) -> str:
    what = "table" if not shown and isinstance(value, Mapping) else "key"
    message = f"{source}: unknown {what} '{'.'.join((*shown, _quoted(name)))}'"
    close = _closest(name, sorted(known))
    if close:
        return f"{message}; did you mean '{close}'?"
    homes = [
        f"[{'.'.join(path)}]"
        for path, children in _children().items()
        if children.get(name) is False
    ]
    if homes:
        return f"{message}; it is a key of {' or '.join(homes)}"
    return f"{message}; expected one of {', '.join(sorted(known))}"


def _closest(name: str, known: Sequence[str]) -> str | None:
    """The known name ``name`` most likely misspells, or abbreviates (``rate``)."""
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return close[0]
    longer = [k for k in known if k.startswith(name) or name.startswith(k)]
    return longer[0] if len(longer) == 1 else None


def _quoted(name: str) -> str:
    return name if _BARE.fullmatch(name) else f'"{name}"'
