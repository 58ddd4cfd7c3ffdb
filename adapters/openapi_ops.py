"""The operator's endpoints in the OpenAPI description (docs/operations.md): each needs an
operator credential (an agency's is answered 403), and actions a credential whose role is
``operator`` (a viewer's is answered 403 ``ops.viewer_only``)."""

from __future__ import annotations

from typing import Any

from adapters.openapi_doc import ID, _operation, _problem

NOTE_BODY = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"note": {"type": "string", "maxLength": 500}},
            }
        }
    },
}
DRAIN_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["on"],
                "properties": {"on": {"type": "boolean"}, "note": {"type": "string"}},
            }
        }
    },
}
_OBJECT = {"type": "object"}
_ITEMS = {"type": "object", "required": ["items"], "properties": {"items": {"type": "array"}}}
STATUS_KEYS = [
    "node", "drain", "health", "links", "upstreams", "queues", "mailboxes", "dead_letters",
    "quarantine", "failed", "receipts_last_hour", "overdue", "certificates", "directory",
    "clock", "series", "alerts",
]  # fmt: skip


def _plain(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _action(summary: str, body: dict[str, Any] = NOTE_BODY) -> dict[str, Any]:
    return {
        "post": _operation(
            summary,
            {"200": _plain("done", _OBJECT)},
            requestBody=body,
            responses={
                "400": _problem("the body or the id is not understood (request.invalid)"),
                "404": _problem("nothing of that id is open here (ops.not_dead_lettered, …)"),
            },
        )
    }


def _view(summary: str, schema: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"get": _operation(summary, {"200": _plain(summary, schema)}, **more)}


def ops_paths() -> dict[str, Any]:
    probe = {"type": "object", "required": ["ok", "node"]}
    return {
        "/healthz": {
            "get": {
                "summary": "The process lives",
                "security": [],
                "responses": {"200": _plain("alive", probe)},
            }
        },
        "/readyz": {
            "get": {
                "summary": "RabbitMQ and the store answer",
                "security": [],
                "responses": {
                    "200": _plain("ready", probe),
                    "503": _plain("not ready: the part that is not says why", probe),
                },
            }
        },
        "/status": _view(
            "Everything an operator sees of this node",
            {"type": "object", "required": STATUS_KEYS},
        ),
        "/metrics": {
            "get": _operation(
                "Prometheus series of this node (docs/metrics.md)",
                {"200": {"description": "the text format", "content": {"text/plain": {}}}},
            )
        },
        "/v1/ops/whoami": _view(
            "The operator credential and its role",
            {"type": "object", "required": ["name", "role", "node"]},
        ),
        "/v1/ops/dead-letters": _view("Dead letters, with their reasons", _ITEMS),
        "/v1/ops/dead-letters/{id}/replay": {
            "parameters": [ID],
            **_action("Send a dead letter through again"),
        },
        "/v1/ops/dead-letters/{id}/purge": {
            "parameters": [ID],
            **_action("Give a dead letter up: failed receipts for its sender"),
        },
        "/v1/ops/quarantine": _view("Packages held for an operator", _ITEMS),
        "/v1/ops/quarantine/{id}/release": {
            "parameters": [ID],
            **_action("Route a held package now"),
        },
        "/v1/ops/quarantine/{id}/refuse": {
            "parameters": [ID],
            **_action("Fail a held package for every recipient"),
        },
        "/v1/ops/failed": _view("Copies given up, with their reasons", _ITEMS),
        "/v1/ops/overdue": _view("Delivered documents nobody acknowledged in time", _ITEMS),
        "/v1/ops/search": _view(
            "Packages by DocumentId, party or date",
            _ITEMS,
            parameters=[
                {"name": n, "in": "query", "required": False, "schema": {"type": "string"}}
                for n in ("document_id", "party", "since", "until")
            ],
            responses={"400": _problem("nothing to search by, or a date not understood")},
        ),
        "/v1/ops/packages/{id}": _view(
            "A package's route, recipients and receipts",
            _OBJECT,
            parameters=[ID],
            responses={"404": _problem("no such package or document here (status.not_tracked)")},
        ),
        "/v1/ops/drain": _action("Maintenance: stop (or take up again) new packages", DRAIN_BODY),
    }
