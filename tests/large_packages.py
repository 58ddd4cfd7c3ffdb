"""Large signed edXML packages, written to a file by streaming writes and signed on the
fly (the document digest by the streaming canonicaliser, SignedInfo by lxml, the value by
cryptography), so that neither making nor checking one holds it in memory."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from exchange.policy import C14N_EXCLUSIVE
from exchange.signing import SigningKey
from exchange.stream_c14n import C14nMethod, canonicalize
from tests.conftest import EXAMPLES

_TEMPLATE = EXAMPLES / "valid" / "document-new.edxml"
_CID = b"cid:8f0c7a2e-5b1d-4e37-9a61-0c2f3d4e5a6b"
_RAW_BLOCK = hashlib.shake_256(b"lienthong").digest(57 * 16384)
_B64_BLOCK = b"".join(
    base64.b64encode(_RAW_BLOCK[i : i + 57]) + b"\n" for i in range(0, len(_RAW_BLOCK), 57)
)


class ChunkReader:
    """A binary stream over an iterator of chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks

    def read(self, _size: int = -1) -> bytes:
        return next(self._chunks, b"")


def _parts(
    payload_bytes: int,
    attachments: int,
    sender: str | None = None,
    recipient: str | None = None,
    number: int | None = None,
) -> tuple[bytes, Iterator[bytes]]:
    template = _TEMPLATE.read_bytes()
    if number is not None:  # its own DocumentId (CodeNumber)
        template = template.replace(b"125/UBND-VP<", f"{number}/UBND-VP<".encode())
        template = template.replace(
            b"<edXML:CodeNumber>125<", f"<edXML:CodeNumber>{number}<".encode()
        )
    if recipient is not None:  # one To: this recipient
        start = template.index(b"<edXML:To>")
        end = template.rindex(b"</edXML:To>") + len(b"</edXML:To>")
        to = f"<edXML:To><edXML:OrganId>{recipient}</edXML:OrganId></edXML:To>".encode()
        template = template[:start] + to + template[end:]
    if sender is not None:
        template = template.replace(b"000.00.00.G22", sender.encode())
    head, sep, rest = template.partition(b"</edXML:edXMLHeader>")
    body = (sep + rest).partition(b"  <AttachmentEncoded>")[0]

    def suffix() -> Iterator[bytes]:
        yield body
        yield b"  <AttachmentEncoded>\n"
        each = payload_bytes // attachments // 77 * 77  # whole lines of base64
        for n in range(attachments):
            cid = _CID if n == 0 else _CID + b"-%d" % n
            yield (
                b"    <Attachment>\n      <ContentId>" + cid + b"</ContentId>\n"
                b"      <AttachmentName>big.pdf</AttachmentName>\n"
                b"      <ContentTransferEncoded>"
            )
            left = each
            while left > 0:
                block = _B64_BLOCK[: min(left, len(_B64_BLOCK))]
                left -= len(block)
                yield block
            yield b"AAAA</ContentTransferEncoded>\n    </Attachment>\n"
        yield b"  </AttachmentEncoded>\n</edXML>\n"

    return head, suffix()


def _signature(digest: bytes, key: SigningKey) -> bytes:
    rsa_key = isinstance(key.key, rsa.RSAPrivateKey)
    method = "rsa-sha256" if rsa_key else "ecdsa-sha256"
    ds = "http://www.w3.org/2000/09/xmldsig#"
    more = "http://www.w3.org/2001/04/xmldsig-more#"
    signed_info = (
        f'<SignedInfo><CanonicalizationMethod Algorithm="{C14N_EXCLUSIVE}"/>'
        f'<SignatureMethod Algorithm="{more}{method}"/><Reference URI=""><Transforms>'
        f'<Transform Algorithm="{ds}enveloped-signature"/>'
        f'<Transform Algorithm="{C14N_EXCLUSIVE}"/></Transforms>'
        '<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        f"<DigestValue>{base64.b64encode(digest).decode()}</DigestValue></Reference></SignedInfo>"
    )
    shell = etree.fromstring(f'<Signature xmlns="{ds}">{signed_info}</Signature>')
    canonical = etree.tostring(shell[0], method="c14n", exclusive=True)
    if isinstance(key.key, rsa.RSAPrivateKey):
        value = key.key.sign(canonical, padding.PKCS1v15(), hashes.SHA256())
    else:
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        r, s = decode_dss_signature(key.key.sign(canonical, ec.ECDSA(hashes.SHA256())))
        half = (key.key.curve.key_size + 7) // 8
        value = r.to_bytes(half, "big") + s.to_bytes(half, "big")
    cert = base64.b64encode(key.chain[0].public_bytes(Encoding.DER)).decode()
    return (
        f'<Signature xmlns="{ds}">{signed_info}'
        f"<SignatureValue>{base64.b64encode(value).decode()}</SignatureValue>"
        f"<KeyInfo><X509Data><X509Certificate>{cert}</X509Certificate></X509Data></KeyInfo>"
        "</Signature>"
    ).encode()


def write_signed_package(
    path: Path,
    payload_bytes: int,
    key: SigningKey,
    *,
    attachments: int = 1,
    sender: str | None = None,
    recipient: str | None = None,
    number: int | None = None,
) -> int:
    """Write a signed package carrying about ``payload_bytes`` of base64; its size. By
    default from the template's sender to its recipients; else from ``sender`` (whose key
    ``key` is) to ``recipient`` alone."""
    head, suffix = _parts(payload_bytes, attachments, sender, recipient, number)
    digest = hashlib.sha256()
    canonicalize(
        ChunkReader(_chain(head, suffix)),
        C14nMethod(exclusive=True),
        digest.update,
    )
    signature = _signature(digest.digest(), key)
    head, suffix = _parts(payload_bytes, attachments, sender, recipient, number)
    with path.open("wb") as out:
        out.write(head + signature)
        for chunk in suffix:
            out.write(chunk)
    return path.stat().st_size


def _chain(head: bytes, suffix: Iterator[bytes]) -> Iterator[bytes]:
    yield head
    yield from suffix


def flip_middle_byte(path: Path) -> None:
    """Change one base64 letter in the middle of the file (to another letter)."""
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        while True:
            at = f.tell()
            byte = f.read(1)
            if byte.isalpha():
                f.seek(at)
                f.write(b"B" if byte != b"B" else b"C")
                return


_MEASURE = """
import hashlib, json, sys, time
from datetime import UTC, datetime
from exchange.admission import Admission
from exchange.directory import SubjectBinding
from exchange.policy import STRICT
from exchange.stream_admission import admit_stream
from exchange.stream_c14n import C14nMethod, canonicalize
from exchange.stream_verify import verify_stream
from exchange.trust import TrustStore
from exchange.xmlsafe import ParseLimits
what, path, ca, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
trust = TrustStore.from_pem(open(ca, "rb").read())
started = time.perf_counter()
with open(path, "rb") as f:
    if what == "c14n+sha256":
        canonicalize(f, C14nMethod(exclusive=True), hashlib.sha256().update)
    elif what == "verify_stream":
        verify_stream(f, STRICT, trust, SubjectBinding(), when=datetime.now(UTC))
    else:
        ctx = Admission(trust=trust, binder=SubjectBinding(),
                        parse_limits=ParseLimits(max_bytes=2**40))
        admit_stream(f, size, STRICT, ctx)
seconds = time.perf_counter() - started
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) // 1024
print(f"{what:14} {size / seconds / 1e6:6.0f} MB/s  {seconds:6.2f} s  peak RSS {peak} MiB")
"""


def main() -> None:
    """``python -m tests.large_packages [MiB]``: write a signed package of that many MiB
    to a temporary file, then time c14n+digest, verify_stream and admit_stream on it,
    each in a fresh process (peak RSS is that process's VmHWM)."""
    import subprocess
    import sys
    import tempfile

    from tests.pki import G22, make_test_pki

    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    pki = make_test_pki()
    with tempfile.TemporaryDirectory() as tmp:
        path, ca = Path(tmp) / "package.edxml", Path(tmp) / "ca.pem"
        ca.write_bytes(pki.ca.cert_pem)
        size = write_signed_package(path, mib * 1024 * 1024, pki.key(G22))
        print(f"package: {size} bytes ({mib} MiB of base64)")
        for what in ("c14n+sha256", "verify_stream", "admit_stream"):
            subprocess.run(
                [sys.executable, "-c", _MEASURE, what, str(path), str(ca), str(size)], check=True
            )


if __name__ == "__main__":
    main()
