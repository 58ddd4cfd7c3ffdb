"""The OpenAPI 3.1 description of REST API v1, served at /v1/openapi.json. A test runs
schemathesis against the live application to keep it and the code in agreement."""

from __future__ import annotations

from typing import Any

ORGAN = {"name": "organ", "in": "path", "required": True, "schema": {"type": "string"}}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


COMMON = {
    "401": _problem("no token, or a token of no credential (auth.unauthenticated)"),
    "403": _problem("the credential may not do this (auth.wrong_kind, agency.not_yours)"),
    "429": _problem("over the credential's rate (http.rate_limited); see Retry-After"),
}
XML_BODY = {
    "required": True,
    "content": {"application/xml": {"schema": {"type": "string", "format": "binary"}}},
}


def _operation(summary: str, ok: dict[str, Any], **more: Any) -> dict[str, Any]:
    responses = {**ok, **COMMON, **more.pop("responses", {})}
    return {"summary": summary, "security": [{"bearer": []}], "responses": responses, **more}


def openapi(max_bytes: int) -> dict[str, Any]:
    from adapters.openapi_ops import ops_paths  # it builds on the helpers above

    too_large = _problem(f"over the package cap of {max_bytes} bytes (package.too_large)")
    refused = _problem("refused: the error code says why; `problems` lists contract errors")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lienthong node, REST API",
            "version": "1.0.0",
            "description": "docs/http-api.md. Errors are application/problem+json with `code`.",
        },
        "paths": {
            "/v1/packages": {
                "post": _operation(
                    "Submit a signed edXML package (document or status)",
                    {
                        "201": _json("accepted", "Answer"),
                        "200": _json("the same package again: the original answer", "Answer"),
                        "409": _json("another package with this DocumentId was accepted", "Answer"),
                    },
                    parameters=[
                        {
                            "name": "Lienthong-As",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        },
                    ],
                    requestBody=XML_BODY,
                    responses={
                        "400": _problem("a header out of range"),
                        "413": too_large,
                        "422": refused,
                        "503": _problem("try again"),
                    },
                )
            },
            "/v1/validate": {
                "post": _operation(
                    "Check a package as intake would, storing nothing",
                    {"200": _json("valid", "Validation")},
                    requestBody=XML_BODY,
                    responses={"413": too_large, "422": refused, "503": _problem("try again")},
                )
            },
            "/v1/agencies/{organ}/mailbox": {
                "get": _operation(
                    "A page of the agency's mailbox, oldest first; long-polls with `wait`",
                    {"200": _json("a page", "MailboxPage")},
                    parameters=[
                        ORGAN,
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {"type": "string", "enum": ["pending", "all"]},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                        {
                            "name": "offset",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 1000000000},
                        },
                        {
                            "name": "wait",
                            "in": "query",
                            "schema": {"type": "number", "minimum": 0, "maximum": 30},
                        },
                    ],
                    responses={
                        "400": _problem("a query parameter out of range"),
                        "404": _problem("no mailbox for that agency here"),
                    },
                )
            },
            "/v1/agencies/{organ}/packages/{id}": {
                "get": _operation(
                    "The package, the exact bytes delivered",
                    {
                        "200": {
                            "description": "the package",
                            "content": {"application/xml": {"schema": {"type": "string"}}},
                        }
                    },
                    parameters=[ORGAN, ID],
                    responses={"404": _problem("not in that mailbox (mailbox.not_found)")},
                )
            },
            "/v1/agencies/{organ}/packages/{id}/ack": {
                "post": _operation(
                    "Acknowledge a package: the agency has it (fetched)",
                    {"200": _json("acknowledged", "Acknowledged")},
                    parameters=[ORGAN, ID],
                    responses={"404": _problem("not in that mailbox (mailbox.not_found)")},
                )
            },
            "/v1/agencies/{organ}/sent/{id}": {
                "get": _operation(
                    "Where a document the agency sent stands, recipient by recipient",
                    {"200": _json("the state", "DocumentStatus")},
                    parameters=[ORGAN, ID],
                    responses={"404": _problem("not sent by that agency through this node")},
                )
            },
            "/v1/directory": {
                "get": _operation(
                    "The agencies of the axis and their home nodes",
                    {"200": _json("the directory", "Directory")},
                )
            },
            **ops_paths(),
            "/v1/openapi.json": {
                "get": {
                    "summary": "This description",
                    "security": [],
                    "responses": {
                        "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
    }


_TEXT = {"type": "string"}
_MAYBE = {"type": ["string", "null"]}
SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "code", "detail"],
        "properties": {
            "type": _TEXT,
            "title": _TEXT,
            "status": {"type": "integer"},
            "code": _TEXT,
            "detail": _TEXT,
            "outcome": _TEXT,
            "problems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["path", "message"],
                    "properties": {
                        "line": {"type": ["integer", "null"]},
                        "path": _TEXT,
                        "message": _TEXT,
                        "code": _TEXT,
                    },
                },
            },
        },
    },
    "Answer": {
        "type": "object",
        "required": ["outcome"],
        "properties": {
            "outcome": {"enum": ["accepted", "duplicate", "conflict", "retry"]},
            "message_id": _TEXT,
            "level": _TEXT,
            "code": _TEXT,
            "reason": _TEXT,
            "unreachable": {"type": "array", "items": _TEXT},
        },
    },
    "Validation": {
        "type": "object",
        "required": ["valid", "kind", "sender", "recipients", "level"],
        "properties": {
            "valid": {"const": True},
            "kind": _TEXT,
            "sender": _TEXT,
            "recipients": {"type": "array", "items": _TEXT},
            "document_id": _MAYBE,
            "level": _TEXT,
            "notes": {"type": "array", "items": _TEXT},
        },
    },
    "MailboxPage": {
        "type": "object",
        "required": ["items", "limit", "offset"],
        "properties": {
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["message_id", "sender", "kind", "delivered_at"],
                    "properties": {
                        "message_id": _TEXT,
                        "sender": _TEXT,
                        "document_id": _MAYBE,
                        "kind": _TEXT,
                        "delivered_at": _TEXT,
                        "fetched_at": _MAYBE,
                    },
                },
            },
        },
    },
    "Acknowledged": {
        "type": "object",
        "required": ["message_id", "acknowledged", "now"],
        "properties": {
            "message_id": _TEXT,
            "acknowledged": {"const": True},
            "now": {"type": "integer"},
        },
    },
    "DocumentStatus": {
        "type": "object",
        "required": ["message_id", "sender", "recipients"],
        "properties": {
            "message_id": _TEXT,
            "sender": _TEXT,
            "document_id": _MAYBE,
            "recipients": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Directory": {
        "type": "object",
        "required": ["agencies"],
        "properties": {
            "agencies": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["organ_id", "node"],
                    "properties": {"organ_id": _TEXT, "node": _TEXT},
                },
            }
        },
    },
}
