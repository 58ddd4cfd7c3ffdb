"""``lienthong config reference``: docs/configuration.md, made from the node file schema
(exchange/config_schema*.py): one section per table, and a complete example node file
made from the examples. A test keeps the page equal to what this prints."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence

from exchange.config_schema import Key, Table, is_named, node_file_tables

COMMAND = "lienthong config reference > docs/configuration.md"
_BARE = re.compile(r"[A-Za-z0-9_-]+")

INTRO = f"""\
# Configuration reference

<!-- Made from exchange/config_schema*.py by `{COMMAND}`:
     edit those, not this page. -->

A node reads one TOML file, its node file, when it starts (`lienthong serve --config
node.toml`), and checks every key then. A wrong value stops the node with one message
naming the file, the key and what was expected; so does a key this page does not list,
with the closest one it does ("did you mean 'parent_url'?"). Relative paths are read from
the node file's folder. Tokens, HMAC keys and passwords, but for those in a broker's URL,
stay out of the node file: a key ending in `_file` names the file that holds one, read when
the node starts and never logged.

A table with a part in angle brackets, such as `[credentials.<login>]`, is one you give
once per thing you name: a source, a RabbitMQ login, a calling system, an operator, a child
node, an upstream. Its keys are the same for each. `[[upstreams.<name>.credentials]]` is a
list of tables: repeat it once per system.

A default in words says what an absent key means. The example column is a value as it is
written in the file; [the complete example](#a-complete-example) at the end sets every key.

Tables: {{tables}}.
"""

EXAMPLE_INTRO = """\
## A complete example

Every key of every table, set to its example above. A real node file is much shorter: most
keys are best left at their defaults (`config/node.example.toml` is a realistic one). A key
that is read only with another choice says so in a comment.
"""


def example_path(table: Table) -> tuple[str, ...]:
    """The table's path in the examples: each <named> part replaced by its example name."""
    by_path = {t.segments: t for t in node_file_tables()}
    segments = table.segments
    return tuple(
        by_path[segments[: i + 1]].example_name if is_named(part) else part
        for i, part in enumerate(segments)
    )


def _header(table: Table, path: Sequence[str]) -> str:
    dotted = ".".join(
        part if _BARE.fullmatch(part) or is_named(part) else f'"{part}"' for part in path
    )
    return f"[[{dotted}]]" if table.array else f"[{dotted}]"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(key: Key) -> str:
    cells = (f"`{key.name}`", key.type, key.default_text, f"`{key.example}`", key.meaning)
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _section(table: Table) -> list[str]:
    lines = [f"## `{_header(table, table.segments)}`", "", table.meaning, ""]
    lines += ["| key | type | default | example | meaning |", "|---|---|---|---|---|"]
    return [*lines, *(_row(key) for key in table.keys), ""]


def _anchor(table: Table) -> str:
    """GitHub's anchor for a section's heading: lower case, punctuation gone."""
    return re.sub(r"[^a-z0-9_ -]", "", _header(table, table.segments).lower()).replace(" ", "-")


def example_node_file() -> str:
    """A node file with every key of every table set to its example; a key that the
    examples' choices leave unread says so."""
    tables = node_file_tables()
    examples = {(*t.segments, k.name): k.example for t in tables for k in t.keys}
    lines: list[str] = []
    for table in tables:
        lines += [_header(table, example_path(table))]
        for key in table.keys:
            line = f"{key.name} = {key.example}"
            if key.when is not None and examples[tuple(key.when[0].split("."))] != key.when[1]:
                line += f"  # read only with {key.when[0].rsplit('.', 1)[-1]} = {key.when[1]}"
            lines.append(line)
        lines.append("")
    return "\n".join(lines)


def reference_markdown() -> str:
    tables = node_file_tables()
    links = ", ".join(f"[`{_header(t, t.segments)}`](#{_anchor(t)})" for t in tables)
    lines = [INTRO.replace("{tables}", links)]
    for table in tables:
        lines += _section(table)
    lines += [EXAMPLE_INTRO, "```toml", example_node_file().rstrip("\n"), "```", ""]
    return "\n".join(lines)


def cmd_reference(args: argparse.Namespace) -> int:
    print(reference_markdown(), end="")
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser("config", help="the node file").add_subparsers(
        dest="config_command", required=True
    )
    p = config.add_parser(
        "reference", help="every table and key of a node file, as Markdown (docs/configuration.md)"
    )
    p.set_defaults(func=cmd_reference)
