"""One node as its own process with all three doors open (REST, the SDK facade, AMQP), and
the callers that knock on them: legitimate agencies and attackers. Shared by
tests/integration/test_hostile_doors.py and bench/hostile.py."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from adapters.provision import _grant, _login, permissions
from adapters.sandbox_tree import free_port as sandbox_free_port
from exchange.node import Queues
from exchange.signing import SigningKey, sign
from tests.conftest import EXAMPLES, example
from tests.integration.broker import delete_queues
from tests.integration.harness import COMMUNE, G22, H53, NodeProcess

STAMP = "20112026T103000+0123"  # the SDK's timestamp, fixed for its process's life
TOKENS = {"h53": "t-rest-h53-" + "0" * 20, "g22": "t-rest-g22-" + "1" * 20}
SDK_SYSTEM, SDK_SECRET = "sys.commune", b"secret-of-the-commune-0123456789"
INVALID = sorted((EXAMPLES / "invalid").glob("*.edxml"))


def promised(path: Path) -> str:
    """The code a corpus file's name announces: ``<code>[@<element>]--<what>.edxml``."""
    return path.name.split("--", 1)[0].partition("@")[0]


def free_port() -> int:
    return sandbox_free_port()  # below the kernel's range for outgoing connections


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Door:
    """The node, its HTTP base address, and its AMQP logins: ``guest`` acts for H53 (a
    legitimate agency, a high rate); ``flood_login`` for G22, limited to ``flood_rate``."""

    node: NodeProcess
    port: int
    flood_login: str
    flood_password: str
    flood_rate: float
    numbers: list[int] = field(default_factory=lambda: [1000])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def flood_url(self) -> str:
        return f"amqp://{self.flood_login}:{self.flood_password}@127.0.0.1:5672/"

    def number(self) -> int:
        self.numbers[0] += 1
        return self.numbers[0]

    def package(self, sender: str, recipients: Sequence[str], *, extra_to: int = 0) -> bytes:
        """A fresh document from ``sender``, signed with its key; ``extra_to`` more To
        elements (the first recipient again) for a package naming a huge number."""
        number = self.number()
        data = example("document-new.edxml").replace(b"000.00.00.G22", sender.encode())
        tos = "".join(
            f"<edXML:To><edXML:OrganId>{r}</edXML:OrganId></edXML:To>"
            for r in [*recipients, *[recipients[0]] * extra_to]
        )
        start = data.index(b"<edXML:To>")
        end = data.rindex(b"</edXML:To>") + len(b"</edXML:To>")
        data = data[:start] + tos.encode() + data[end:]
        data = data.replace(b"125/UBND-VP<", f"{number}/UBND-VP<".encode())
        data = data.replace(b"<edXML:CodeNumber>125<", f"<edXML:CodeNumber>{number}<".encode())
        pki = self.node.pki / "agencies"
        key = SigningKey.from_pem(
            (pki / f"{sender}.key").read_bytes(), (pki / f"{sender}.pem").read_bytes()
        )
        return sign(data, key)

    def corpus(self, path: Path, sender: str) -> bytes:
        """A corpus file as ``sender`` would send it: those whose fault lies past the
        signature check (an attachment's) are signed by it, so that the check lets them on."""
        data = path.read_bytes()
        if not path.name.startswith("attachment."):
            return data
        data = data.replace(b"000.00.00.G22", sender.encode(), 1)  # its From
        pki = self.node.pki / "agencies"
        key = SigningKey.from_pem(
            (pki / f"{sender}.key").read_bytes(), (pki / f"{sender}.pem").read_bytes()
        )
        return sign(data, key)

    def bearer(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[who]}"}

    async def rest_submit(
        self, http: aiohttp.ClientSession, data: bytes, who: str = "h53", **headers: str
    ) -> tuple[int, dict[str, object]]:
        async with http.post(
            f"{self.base}/v1/packages",
            data=data,
            headers={**self.bearer(who), "Content-Type": "application/xml", **headers},
        ) as got:
            return got.status, await got.json(content_type=None)

    async def sdk_send(
        self, http: aiohttp.ClientSession, data: bytes, sender: str = COMMUNE, **change: str
    ) -> tuple[int, dict[str, object]]:
        headers, body = sdk_send_request(data, sender, **change)
        async with http.post(f"{self.base}/vdxp/sendEdoc", data=body, headers=headers) as got:
            return got.status, await got.json(content_type=None)


def sdk_headers(fields: dict[str, str], secret: bytes = SDK_SECRET) -> dict[str, str]:
    """XroadVnpt- headers as SDKVXP signs them (docs/sdk-facade.md)."""
    fields = {"systemid": SDK_SYSTEM, "timestamp": STAMP, **fields}
    signed = {f"XroadVnpt-{name}": value for name, value in fields.items()}
    sign_header = json.dumps(signed, separators=(",", ":"), ensure_ascii=False)
    return {
        **signed,
        "XroadVnpt-sign-header-key": ";".join(fields),
        "XroadVnpt-sign-header": sign_header,
        "XroadVnpt-hash-header": hmac.new(secret, sign_header.encode(), "sha256").hexdigest(),
        "User-Agent": "JAVASDKAgent/1.0.0 XRoad/VPCP",
    }


BOUNDARY = "----SdkBoundary7MA4YWxkTrZu0gW"


def multipart(data: bytes, name: bytes = b"file_doc") -> bytes:
    head = (
        b"--" + BOUNDARY.encode() + b'\r\nContent-Disposition: form-data; name="' + name + b'"; '
        b'filename="edoc.edxml"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def sdk_send_request(
    data: bytes, sender: str = COMMUNE, *, timestamp: str = STAMP, secret: bytes = SDK_SECRET
) -> tuple[dict[str, str], bytes]:
    headers = sdk_headers(
        {
            "timestamp": timestamp,
            "servicetype": "eDoc",
            "messagetype": "edoc",
            "from": sender,
            "Content-Type": "multipart/form-data",
            "hash-file": "".join(f"{b:x}" for b in hashlib.sha256(data).digest()),
        },
        secret,
    )
    headers["Content-Type"] = f"multipart/form-data; boundary={BOUNDARY}"
    return headers, multipart(data)


def open_door(
    folder: Path,
    *,
    header_timeout_s: float = 2.0,
    body_timeout_s: float = 2.0,
    flood_rate: float = 5.0,
    rate_per_s: float = 1000.0,
) -> Door:
    """Write the node file, provision the flood login on the shared broker, start the node."""
    node = NodeProcess(folder)
    port = free_port()
    (folder / "sdk-secret").write_bytes(SDK_SECRET)
    flood_login = f"flood-{uuid.uuid4().hex[:8]}"
    flood_password = secrets.token_urlsafe(18)
    node.config.write_text(
        node.config.read_text()
        + f'\n[http]\nlisten = "127.0.0.1:{port}"\n'
        + f"header_timeout_s = {header_timeout_s}\nbody_timeout_s = {body_timeout_s}\n\n"
        + f'[http.clients.rest-h53]\ntoken_sha256 = "{_sha(TOKENS["h53"])}"\n'
        + f'organs = ["{H53}"]\nrate_per_s = {rate_per_s}\n\n'
        + f'[http.clients.rest-g22]\ntoken_sha256 = "{_sha(TOKENS["g22"])}"\n'
        + f'organs = ["{G22}"]\nrate_per_s = {rate_per_s}\n\n'
        + f'[http.clients.sdk-commune]\nsystemid = "{SDK_SYSTEM}"\n'
        + f'hmac_secret_file = "sdk-secret"\norgans = ["{COMMUNE}"]\nrate_per_s = {rate_per_s}\n\n'
        + f'[credentials.guest]\norgans = ["{H53}"]\nrate_per_s = {rate_per_s}\n\n'
        + f'[credentials.{flood_login}]\norgans = ["{G22}"]\nrate_per_s = {flood_rate}\n'
    )
    _login(flood_login, flood_password)
    _grant("/", flood_login, permissions(node.node_id, flood_login))
    node.start()
    return Door(node, port, flood_login, flood_password, flood_rate)


async def wait_open(door: Door, timeout: float = 60) -> None:
    await door.node.ready(timeout=timeout)
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", door.port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            writer.close()
            return


async def close_door(door: Door) -> None:
    await door.node.cleanup()
    own = Queues(door.node.node_id)
    await delete_queues([own.login_inbound("guest"), own.login_inbound(door.flood_login)])
    subprocess.run(
        ["rabbitmqctl", "delete_user", door.flood_login],
        capture_output=True,
        timeout=60,
        check=False,
    )
