"""The core package ``exchange/`` does no I/O: it imports no network, database or metrics
library. adapters/ does that. Checked twice: in the source (``ast``) and in a fresh
interpreter that imports every exchange module."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CORE = ROOT / "exchange"
CORE_FILES = sorted(CORE.glob("*.py"))

IO_LIBRARIES = frozenset(
    {
        "aio_pika",
        "aiormq",
        "pamqp",
        "aiohttp",
        "asyncpg",
        "psycopg",
        "psycopg2",
        "aiosqlite",
        "sqlite3",
        "socket",
        "requests",
        "httpx",
        "urllib3",
        "prometheus_client",
    }
)

# The stdlib's email.utils imports socket (for getfqdn), and cryptography.x509 imports
# email.utils. So socket is loaded by the core's dependencies whatever exchange/ does; the
# static check below still forbids exchange/ from importing it itself.
LOADED_BY_DEPENDENCIES = frozenset({"socket"})


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


def imported_top_level(source: str, filename: str = "<source>") -> set[str]:
    """Top-level names of every module a source file imports, however it spells it."""
    tree = ast.parse(source, filename=filename)
    names: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    for node in ast.walk(tree):
        # importlib.import_module("x") and __import__("x") with a literal name
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        first = node.args[0]
        if (
            called in {"import_module", "__import__"}
            and isinstance(first, ast.Constant)
            and isinstance(first.value, str)
        ):
            names.add(first.value.partition(".")[0])
    return names


def test_the_core_files_are_found() -> None:
    names = {path.name for path in CORE_FILES}
    assert {"__init__.py", "xmlsafe.py", "admission.py", "organ.py"} <= names


def test_the_scanner_sees_every_way_of_importing() -> None:
    source = (
        "import socket\n"
        "import urllib3.util as u\n"
        "from aiohttp import web\n"
        "from . import sibling\n"
        "def f():\n"
        "    import asyncpg\n"
        "    importlib.import_module('sqlite3.dbapi2')\n"
        "    return __import__('httpx')\n"
    )
    assert imported_top_level(source) == {
        "socket",
        "urllib3",
        "aiohttp",
        "asyncpg",
        "sqlite3",
        "httpx",
    }


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_module_imports_no_io_library(path: Path) -> None:
    imported = imported_top_level(path.read_text(encoding="utf-8"), str(path))
    assert not imported & IO_LIBRARIES, f"{path.name} imports {sorted(imported & IO_LIBRARIES)}"


def _third_party_imports() -> list[str]:
    """The core's own import statements for its third-party dependencies, as source."""
    statements: set[str] = set()
    for path in CORE_FILES:
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level or not node.module:
                    continue
                modules = [node.module]
            else:
                modules = [alias.name for alias in node.names]
            tops = {m.partition(".")[0] for m in modules}
            if tops - {"exchange", "__future__"} - sys.stdlib_module_names:
                statements.add(ast.unparse(node))
    return sorted(statements)


PROBE = """
import importlib, json, pkgutil, sys

io_libraries = set(json.loads(sys.argv[1]))
dependency_imports = json.loads(sys.argv[2])

def loaded():
    return io_libraries & {name.partition(".")[0] for name in sys.modules}

for statement in dependency_imports:
    exec(statement, {})
baseline = loaded()

import exchange
imported = ["exchange"]
for info in pkgutil.walk_packages(exchange.__path__, "exchange."):
    importlib.import_module(info.name)
    imported.append(info.name)

print(json.dumps({
    "baseline": sorted(baseline),
    "after": sorted(loaded()),
    "imported": imported,
    "file": exchange.__file__,
}))
"""


def _probe() -> dict[str, list[str] | str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            json.dumps(sorted(IO_LIBRARIES)),
            json.dumps(_third_party_imports()),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, list[str] | str] = json.loads(result.stdout)
    return report


def test_importing_every_core_module_loads_no_io_library() -> None:
    report = _probe()
    expected = {f"exchange.{path.stem}" for path in CORE_FILES if path.stem != "__init__"}
    assert Path(str(report["file"])).resolve().parent == CORE.resolve()
    assert expected <= set(report["imported"]), "the probe did not import every core module"
    baseline, after = set(report["baseline"]), set(report["after"])
    assert baseline <= LOADED_BY_DEPENDENCIES, (
        f"the core's dependencies load I/O libraries: {sorted(baseline)}"
    )
    assert after == baseline, f"importing exchange/ loads {sorted(after - baseline)}"
