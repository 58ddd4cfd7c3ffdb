"""structlog set-up: one event per unit of work, JSON when not on a terminal.

Nothing secret and no package body reaches a log line: ``redact`` runs on every event
before it is rendered. It blanks the values of fields named for a secret (``token``,
``authorization``, ``secret``, ``password``, ``hmac``, ``api_key``, ``private_key``...,
judged by the words of the field name, so ``message_id`` or ``key_id`` stay), replaces
bytes with their length, and in text it blanks a bearer token and the password of a URL.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[redacted]"
# a field is secret when one of its words is one of these ...
SECRET_WORDS = frozenset(
    {"token", "authorization", "secret", "password", "passwd", "hmac", "apikey", "cookie"}
)
# ... or when its last word is "key": api_key, private_key, node_key, hmac_key, key
SECRET_LAST_WORDS = frozenset({"key"})
MAX_DEPTH = 4  # nested values deeper than this are not logged at all

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]*@")


def secret_field(name: str) -> bool:
    """Whether a field's value is a secret, by the words of its name."""
    words = [w for w in _WORD_SPLIT.split(_CAMEL.sub("_", name).lower()) if w]
    if not words:
        return False
    return bool(SECRET_WORDS.intersection(words)) or words[-1] in SECRET_LAST_WORDS


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, memoryview):
        return f"<{value.nbytes} bytes>"
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1***@", _BEARER.sub(r"\1 " + REDACTED, value))
    if depth >= MAX_DEPTH and isinstance(value, Mapping | list | tuple | set | frozenset):
        return "<nested>"
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and secret_field(k) else _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, depth + 1) for v in value]
    return value


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: no secret, no body, in any field of the event."""
    for name, value in list(event.items()):
        event[name] = REDACTED if secret_field(name) else _scrub(value)
    return event


def processors(renderer: structlog.typing.Processor) -> list[structlog.typing.Processor]:
    """The processor chain, ``redact`` last before the renderer."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,
        renderer,
    ]


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if out.isatty() else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=processors(renderer),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
