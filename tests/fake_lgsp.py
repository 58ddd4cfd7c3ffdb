"""In-process fakes of the two provincial axes (reference edxml.md §7), served by aiohttp
on a free local port, for the clients' tests and the bridge's:

    async with FakeBkav(token="t") as bkav:              # or FakeLangson(...)
        bkav.put_pending("edoc", "41", package, recipient="000.00.00.H53")
        ... a client against bkav.url ...
        bkav.sent        # [Sent(kind, data, headers, doc_id, ...)]: what clients sent
        bkav.confirmed   # [Confirmed(doc_id, status, description)]: what they answered
        bkav.mode = "slow"   # "ok" | "down" (503) | "slow" | "garbage" | "401" | "fail"

Both check credentials as the real ones do (Bkav: the ``authorization`` token; Lạng Sơn:
a login, then ``Bearer`` + ``X-SystemId`` + ``X-SecretKey``), hold pending items per kind
and answer in the shapes the reference and the products' public sources give; knobs choose
between the shapes seen (``FakeBkav.document_form``, ``FakeLangson.edxml_form``...). A
closed port is simply a fake that was stopped (``await fake.stop()``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

MODES = ("ok", "down", "slow", "garbage", "401", "fail")
GARBAGE = b"\x00garbage: not this protocol \xff\xfe"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Sent:
    """One package a client handed over."""

    kind: str  # "edoc" | "status"
    data: bytes
    headers: dict[str, str]  # the request's headers, names in lower case
    doc_id: str  # the id the fake answered
    filename: str | None = None  # Lạng Sơn's multipart part
    content_type: str | None = None


@dataclass(frozen=True)
class Confirmed:
    doc_id: str
    status: str  # Bkav: "received"; Lạng Sơn: what updateStatus said ("done", "fail")
    description: str | None = None


@dataclass
class Pending:
    kind: str
    doc_id: str
    data: bytes
    recipient: str | None = None
    sender: str | None = None
    status: str = "initial"


@dataclass
class FakeUpstream:
    """What both fakes share: the server, the records, the ways to misbehave."""

    mode: str = "ok"
    fail_code: str = "18"  # Lạng Sơn's errorCode in mode "fail"
    sent: list[Sent] = field(default_factory=list)
    confirmed: list[Confirmed] = field(default_factory=list)
    agencies: list[dict[str, Any]] = field(default_factory=list)  # served as they are
    items: list[Pending] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    def put_pending(
        self,
        kind: str,
        doc_id: str,
        data: bytes,
        recipient: str | None = None,
        sender: str | None = None,
    ) -> None:
        self.items.append(Pending(kind, doc_id, data, recipient, sender))

    def pending_ids(self, kind: str) -> list[str]:
        return [i.doc_id for i in self.items if i.kind == kind and i.status == "initial"]

    async def start(self) -> str:
        app = web.Application(middlewares=[self._misbehave], client_max_size=256 * 1024 * 1024)
        self.routes(app)
        self._release.clear()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self._release.set()  # slow answers end now
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def unauthorised(self) -> web.Response:
        raise NotImplementedError

    def failure(self) -> web.Response:
        raise NotImplementedError

    def exempt(self, request: web.Request) -> bool:
        """A request mode "fail" leaves alone (a login)."""
        return False

    @web.middleware
    async def _misbehave(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path, _headers(request)))
        if self.mode == "down":
            return web.Response(status=503, text="Service Unavailable")
        if self.mode == "slow":
            await self._release.wait()
        if self.mode == "garbage":
            return web.Response(body=GARBAGE, content_type="application/json")
        if self.mode == "401":
            return self.unauthorised()
        if self.mode == "fail" and not self.exempt(request):
            return self.failure()
        return await handler(request)


def _headers(request: web.Request) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def _find(items: list[Pending], doc_id: str, kind: str | None = None) -> Pending | None:
    for item in items:
        if item.doc_id == doc_id and (kind is None or item.kind == kind):
            return item
    return None


# --- Bkav EdocService -------------------------------------------------------------------


@dataclass
class FakeBkav(FakeUpstream):
    """Paths under ``/EdocService``; ``url`` includes it. Answers as edoc-service-2.0's
    EdocController does (``{"status": "Success", "code": "0", ...}``) unless told."""

    token: str = "bkav-token"
    document_form: str = "json"  # getDocument: "json" (base64 data) | "raw" (the bytes)
    #   | "html" (a proxy's web page, HTTP 200)
    pending_form: str = "pairs"  # "pairs" [{docId, organId}] | "wrapped" | "ids"
    doc_id_field: str = "docId"  # sendDocument's answer: "docId" | "DocId" | "data.docId"
    next_id: int = 1000

    async def start(self) -> str:
        await super().start()
        self.url = f"{self.url}/EdocService"
        return self.url

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/EdocService/sendDocument", self._send)
        app.router.add_get("/EdocService/getPendingDocIds", self._pending)
        app.router.add_post("/EdocService/getDocument", self._document)
        app.router.add_post("/EdocService/confirmReceived", self._confirm)
        app.router.add_get("/EdocService/getOrganizations", self._organizations)

    def unauthorised(self) -> web.Response:
        body = {
            "code": "9999",
            "status": "False",
            "errors": [{"code": "Unauthorized", "description": "Token is invalid"}],
        }
        return web.json_response(body, status=401)

    def failure(self) -> web.Response:
        errors = [{"code": "ExistDoc", "description": "Document is exist"}]
        return web.json_response({"status": "Fail", "code": "9999", "errors": errors})

    def _checked(self, request: web.Request) -> web.Response | None:
        if request.headers.get("authorization") != self.token:
            return self.unauthorised()
        return None

    async def _send(self, request: web.Request) -> web.Response:
        if (refused := self._checked(request)) is not None:
            return refused
        kind = request.headers.get("type", "")
        if kind not in ("EDOC", "STATUS"):
            errors = [{"code": "BadRequest", "description": "Bad Request"}]
            return web.json_response({"status": "Fail", "code": "9999", "errors": errors})
        data = await request.read()
        self.next_id += 1
        headers = _headers(request)
        self.sent.append(Sent(kind.lower(), data, headers, str(self.next_id)))
        answer: dict[str, Any] = {"status": "Success", "code": "0", "errors": []}
        if self.doc_id_field == "data.docId":
            answer["data"] = {"docId": self.next_id}
        else:
            answer[self.doc_id_field] = self.next_id
        return web.json_response(answer)

    async def _pending(self, request: web.Request) -> web.Response:
        if (refused := self._checked(request)) is not None:
            return refused
        kind = request.headers.get("type", "").lower()
        organ = request.headers.get("organid", "")
        waiting = [i for i in self.items if i.kind == kind and i.status == "initial"]
        if self.pending_form == "ids":
            ids = [int(i.doc_id) if i.doc_id.isdigit() else i.doc_id for i in waiting]
            return web.json_response(
                {"status": "Success", "code": "0", "docIDs": ids, "errors": []}
            )
        pairs = [{"docId": i.doc_id, "organId": i.recipient or organ} for i in waiting]
        if self.pending_form == "wrapped":
            return web.json_response({"status": "Success", "code": "0", "pendingResult": pairs})
        return web.json_response(pairs)

    async def _document(self, request: web.Request) -> web.Response:
        if (refused := self._checked(request)) is not None:
            return refused
        kind = request.headers.get("type", "").lower()
        item = _find(self.items, request.headers.get("docid", ""), kind)
        if item is None:
            errors = [{"code": "GetDocument", "description": "Get Document From Database Error"}]
            return web.json_response({"status": "Error", "code": "9999", "errors": errors})
        if self.document_form == "raw":
            return web.Response(body=item.data, content_type="application/octet-stream")
        if self.document_form == "html":
            return web.Response(body=b"<!DOCTYPE html><html>Login</html>", content_type="text/html")
        encoded = base64.b64encode(item.data).decode("ascii")
        return web.json_response({"status": "Success", "code": "0", "data": encoded})

    async def _confirm(self, request: web.Request) -> web.Response:
        if (refused := self._checked(request)) is not None:
            return refused
        doc_id = request.headers.get("docid", "")
        item = _find(self.items, doc_id, request.headers.get("type", "").lower() or None)
        if item is not None:
            item.status = "received"
        self.confirmed.append(Confirmed(doc_id, "received"))
        return web.json_response({"status": "Success", "code": "0", "errors": []})

    async def _organizations(self, request: web.Request) -> web.Response:
        if (refused := self._checked(request)) is not None:
            return refused
        return web.json_response(
            {"status": "Success", "code": "0", "organizations": self.agencies, "errors": []}
        )


# --- Lạng Sơn LGSP "apiltvb" -----------------------------------------------------------


@dataclass
class FakeLangson(FakeUpstream):
    """Paths under ``/v1``. Answers ``{success, message, ...}`` as the reference gives them;
    ``edxml_form`` chooses how getEdoc carries the package: ``"text"`` (``data.edxml`` as
    XML text), ``"base64"`` (``data.edxml`` in base64) or ``"data"`` (``data.data`` in
    base64, as one team found production answering)."""

    username: str = "van-thu"
    password: str = "mat-khau"
    application_code: str = "QLVB"
    systemid: str = "000.00.00.H53"
    secret: str = "khoa-bi-mat"
    edxml_form: str = "text"
    envelope: str = "success"  # answers {"success": true, ...}, or "code": {"code": 200, ...}
    attachments: list[dict[str, str]] = field(default_factory=list)  # beside getEdoc's edxml
    logins: int = 0  # successful logins
    tokens: dict[str, bool] = field(default_factory=dict)  # issued JWT -> still valid
    list_queries: list[dict[str, str]] = field(default_factory=list)

    def expire_tokens(self) -> None:
        """Every JWT issued so far is refused from now on (HTTP 401)."""
        self.tokens = dict.fromkeys(self.tokens, False)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/auth/login", self._login)
        app.router.add_post("/v1/sendEdoc", self._send)
        app.router.add_get("/v1/syncReceivedEdocList", self._list)
        app.router.add_get("/v1/getEdoc", self._document)
        app.router.add_post("/v1/updateStatus", self._update)
        app.router.add_get("/v1/getAgenciesList", self._agencies)

    def exempt(self, request: web.Request) -> bool:
        return request.path == "/v1/auth/login"

    def unauthorised(self) -> web.Response:
        return web.json_response({"success": False, "message": "Unauthorized"}, status=401)

    def failure(self, code: str | None = None, desc: str | None = None) -> web.Response:
        code = code or self.fail_code
        data = {"docId": None, "status": "FAIL", "errorCode": code, "errorDesc": desc or "lỗi"}
        return web.json_response({"success": False, "message": "FAIL", "data": data})

    def _ok(self, **fields: Any) -> web.Response:
        """A success, in the reference's envelope or in the one seen in production."""
        if self.envelope == "code":
            return web.json_response({"code": 200, "message": "Thành công", **fields})
        return web.json_response({"success": True, "message": "OK", **fields})

    async def _login(self, request: web.Request) -> web.Response:
        body = await request.json()
        wanted = {
            "username": self.username,
            "password": self.password,
            "applicationCode": self.application_code,
            "otp": None,
            "twoFactorProvider": None,
            "typeObjs": [0, 1],
        }
        if request.query.get("allow_anonymous") != "true" or body != wanted:
            return web.json_response(
                {"success": False, "message": "Sai tên đăng nhập hoặc mật khẩu"}, status=401
            )
        token = f"jwt-{uuid.uuid4().hex}"
        self.tokens[token] = True
        self.logins += 1
        return self._ok(data={"token": token})

    def _checked(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not self.tokens.get(token):
            return self.unauthorised()
        system = request.headers.get("X-SystemId"), request.headers.get("X-SecretKey")
        if system != (self.systemid, self.secret):
            return self.failure("15", "Sai SystemId hoặc SecretKey")
        return None

    async def _send(self, request: web.Request) -> web.Response:
        if (refused := self._checked(request)) is not None:
            return refused
        form = await request.post()
        part, kind = form.get("edocFile"), form.get("messageType")
        if not isinstance(part, web.FileField) or kind not in ("edoc", "status"):
            return self.failure("10", "File không hợp lệ")
        doc_id = str(uuid.uuid4())
        self.sent.append(
            Sent(
                str(kind),
                part.file.read(),
                _headers(request),
                doc_id,
                filename=part.filename,
                content_type=part.content_type,
            )
        )
        return self._ok(docId=doc_id)

    async def _list(self, request: web.Request) -> web.Response:
        if (refused := self._checked(request)) is not None:
            return refused
        query = dict(request.query)
        self.list_queries.append(query)
        entries = [
            {
                "serviceType": "eDoc",
                "messageType": item.kind,
                "docId": item.doc_id,
                "from": item.sender,
                "to": item.recipient,
                "status": item.status,
                "statusDesc": item.status,
                "createdTime": "2026/03/09 10:00:00",
                "updatedTime": "2026/03/09 10:00:00",
            }
            for item in self.items
            if item.kind == query.get("messageType")
        ]
        return self._ok(count=len(entries), data=entries)

    async def _document(self, request: web.Request) -> web.Response:
        if (refused := self._checked(request)) is not None:
            return refused
        item = _find(self.items, request.query.get("docId", ""))
        if item is None:
            return self.failure("21", "Không tìm thấy văn bản")
        data: dict[str, Any] = {"docId": item.doc_id, "from": item.sender}
        if self.edxml_form == "text":
            data["edxml"] = item.data.decode("utf-8")
        elif self.edxml_form == "base64":
            data["edxml"] = base64.b64encode(item.data).decode("ascii")
        else:
            data["data"] = base64.b64encode(item.data).decode("ascii")
        if self.attachments:
            data["attachments"] = self.attachments
        return self._ok(data=data)

    async def _update(self, request: web.Request) -> web.Response:
        if (refused := self._checked(request)) is not None:
            return refused
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self.failure("10", "Dữ liệu không hợp lệ")
        doc_id, status = body.get("docId"), body.get("status")
        item = _find(self.items, str(doc_id))
        if item is None or status not in ("done", "fail", "processing"):
            return self.failure("21", "Không tìm thấy văn bản")
        item.status = status
        self.confirmed.append(Confirmed(item.doc_id, status, body.get("description")))
        return self._ok(data={"status": "OK"})

    async def _agencies(self, request: web.Request) -> web.Response:
        if (refused := self._checked(request)) is not None:
            return refused
        return self._ok(data=self.agencies)
