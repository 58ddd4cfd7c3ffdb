"""The published contract: structural XSD plus the rule pass, reported as one list.

The XSDs are loaded from our own package (never from a document's schemaLocation) and
compiled once. ``check`` returns every problem it finds; ``enforce`` raises
``ContractViolation`` when any of them is an error.
"""

from __future__ import annotations

import re
import threading
from importlib import resources
from pathlib import Path

from lxml import etree

from exchange.edxml import NS, header, kid, line_of, local
from exchange.errors import ContractViolation, Problem
from exchange.model import Kind
from exchange.rules import MAX_PROBLEMS, rule_pass

_SCHEMA_FILES = {
    (Kind.EDOC, False): "edxml.xsd",
    (Kind.STATUS, False): "edxml-status.xsd",
    (Kind.EDOC, True): "edxml-strict.xsd",
    (Kind.STATUS, True): "edxml-status-strict.xsd",
}


def schema_dir() -> Path:
    """Where the XSDs live: inside an installed wheel, or schemas/ in a checkout."""
    packaged = resources.files("exchange").joinpath("_schemas")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "schemas"


_compiled = threading.local()
_compiling = threading.Lock()  # libxml2's schema compiler keeps global state


def compile_schema(path: Path) -> etree.XMLSchema:
    """One of our own XSDs, compiled (one compilation at a time, process-wide)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    with _compiling:
        return etree.XMLSchema(etree.parse(str(path), parser=parser))


def _schema(kind: Kind, strict: bool) -> etree.XMLSchema:
    """The compiled schema, one per thread: libxml2 schemas are compiled and validate with
    state of their own (the error log), so threads of the admission pool never share one."""
    schemas: dict[tuple[Kind, bool], etree.XMLSchema] = _compiled.__dict__.setdefault("schemas", {})
    schema = schemas.get((kind, strict))
    if schema is None:
        schema = compile_schema(schema_dir() / _SCHEMA_FILES[(kind, strict)])
        schemas[(kind, strict)] = schema
    return schema


def detect_kind(root: etree._Element) -> Kind:
    """A status package has a Status block, or a MessageHeader with a StatusCode, or one
    that answers a document (ResponseFor) without addressing anyone (no To)."""
    head = header(root)
    if head is None:
        return Kind.EDOC
    if kid(head, "Status") is not None:
        return Kind.STATUS
    block = kid(head, "MessageHeader")
    if kid(block, "StatusCode") is not None:
        return Kind.STATUS
    if kid(block, "ResponseFor") is not None and kid(block, "To") is None:
        return Kind.STATUS
    return Kind.EDOC


_CLARK = re.compile(r"\{[^}]*\}")
_PREFIX = re.compile(r"(?<=/)[A-Za-z_][\w.-]*:")


def _xsd_path(raw: str | None) -> str:
    if not raw:
        return "/"
    path = _PREFIX.sub("", raw)
    if path.startswith("/*"):
        path = "/edXML" + path[2:]
    return path


def _xsd_message(message: str) -> str:
    return _CLARK.sub("", message).replace("( ", "(").replace(" )", ")")


def xsd_problems(root: etree._Element, kind: Kind, *, strict: bool = False) -> list[Problem]:
    schema = _schema(kind, strict)
    if schema.validate(root):
        return []
    entries = list(schema.error_log)  # type: ignore[call-overload]
    problems = [
        Problem(
            line=entry.line or None,
            path=_xsd_path(entry.path),
            message=_xsd_message(entry.message),
            code="contract.schema",
        )
        for entry in entries[:MAX_PROBLEMS]
    ]
    if len(entries) > MAX_PROBLEMS:
        problems.append(
            Problem(
                None,
                "/",
                f"… and {len(entries) - MAX_PROBLEMS} more schema problem(s), not listed",
                "contract.too_many_problems",
            )
        )
    return problems


# To elements in one package: every agency of the country fits (a ministry's circular to
# all communes is one package); past it, nothing else is checked
MAX_RECIPIENTS = 20_000


def check(root: etree._Element, *, strict: bool = False) -> tuple[Kind, list[Problem]]:
    """Every problem with the package against the contract, in document order. A package
    with more than MAX_RECIPIENTS To elements is refused for that alone, before the schema
    and the rules spend time on every one of them."""
    if etree.QName(root).namespace != NS or local(root) != "edXML":
        return Kind.EDOC, [
            Problem(
                line=line_of(root),
                path="/" + local(root),
                message=f"the root element must be edXML in namespace {NS}, found {root.tag}",
                code="contract.schema",
            )
        ]
    recipients = sum(1 for _ in root.iter(f"{{{NS}}}To"))
    if recipients > MAX_RECIPIENTS:
        return detect_kind(root), [
            Problem(
                line=None,
                path="/edXML/edXMLHeader/MessageHeader/To",
                message=f"{recipients} To elements; a package names at most {MAX_RECIPIENTS}",
                code="contract.too_many_recipients",
            )
        ]
    kind = detect_kind(root)
    problems = xsd_problems(root, kind, strict=strict)
    problems.extend(rule_pass(root, kind))
    problems.sort(key=lambda p: (p.code == "contract.too_many_problems", p.line or 0, p.path))
    return kind, problems


def enforce(root: etree._Element, *, strict: bool = False) -> tuple[Kind, list[Problem]]:
    """Like ``check``, but raise ContractViolation on any error; returns the warnings."""
    kind, problems = check(root, strict=strict)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ContractViolation(errors)
    return kind, problems
