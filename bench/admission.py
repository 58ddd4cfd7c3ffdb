"""Admission of one signed package, beside its baseline.

lienthong: ``exchange.admission.admit`` under the strict policy (size cap, hardened
parse, structural XSD, rule pass, signature shape checks, certificate chain to the
configured CA, signxml verification, signer binding, attachment decoding, the Package).

Baseline: the same work called directly, the way a hand-written gateway would do it:
lxml parse with the same hardened parser, the compiled structural XSD, base64 + unzip +
SHA-256 of each attachment, and signxml's ``XMLVerifier().verify`` with the same key type,
the certificate from KeyInfo chained by signxml to the same CA file.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import statistics
import tempfile
import zipfile
from pathlib import Path

from lxml import etree
from signxml.verifier import SignatureConfiguration, XMLVerifier

from bench.report import Headline, Section
from bench.timing import alternate, spread
from exchange.admission import Admission, admit
from exchange.contract import _schema, schema_dir
from exchange.devpki import issue, make_ca
from exchange.directory import SubjectBinding
from exchange.edxml import NS
from exchange.model import Kind, Level
from exchange.policy import STRICT
from exchange.signing import SigningKey, sign
from exchange.trust import TrustStore

SENDER = "000.00.00.G22"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def make_package(target_bytes: int, key: SigningKey, template: bytes | None = None) -> bytes:
    """A signed document of about ``target_bytes``: ``template`` (default: the example new
    document) with an incompressible attachment sized to fit."""
    if template is None:
        template = (schema_dir() / "examples" / "valid" / "document-new.edxml").read_bytes()
    root = etree.fromstring(template, _PARSER)
    payload = root.find(f".//{{{NS}}}ContentTransferEncoded")
    assert payload is not None
    overhead = len(sign(template, key)) - len(payload.text or "")
    raw_size = max(256, (target_bytes - overhead) * 3 // 4)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "scan.pdf", b"%PDF-1.4\n" + os.urandom(raw_size)
        )  # incompressible, like a scan
    payload.text = base64.encodebytes(buffer.getvalue()).decode()
    return sign(etree.tostring(root, xml_declaration=True, encoding="UTF-8"), key)


def baseline(data: bytes, ca_file: str) -> None:
    root = etree.fromstring(data, _PARSER)
    schema = _schema(Kind.EDOC, False)
    if not schema.validate(root):
        raise AssertionError("baseline: package invalid")
    for payload in root.iter(f"{{{NS}}}ContentTransferEncoded"):
        raw = base64.b64decode(payload.text or "")
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            digest = hashlib.sha256()
            with archive.open(archive.infolist()[0]) as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
    config = SignatureConfiguration(location=f"./{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader/")
    XMLVerifier().verify(root, ca_pem_file=ca_file, expect_config=config)


def run(*, rounds: int, quick: bool, repeats: int = 3) -> Section:
    del repeats
    from bench import admission_pool  # it builds on this module's package and baseline

    ca = make_ca()
    agency = issue(ca, SENDER)
    key = SigningKey(agency.key, (agency.cert,))
    ctx = Admission(trust=TrustStore.from_pem(ca.cert_pem), binder=SubjectBinding())
    headlines = []
    lines = [METHOD, "", "| package | lienthong µs/op | baseline µs/op | lienthong/baseline |"]
    lines.append("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        ca_file = str(Path(folder) / "ca.pem")
        Path(ca_file).write_bytes(ca.cert_pem)
        for label, size, iterations in (("10 KiB", 10 * 1024, 300), ("1 MiB", 1024 * 1024, 12)):
            data = make_package(size, key)
            assert admit(data, STRICT, ctx).package.level is Level.STRICT
            baseline(data, ca_file)
            pair = alternate(
                lambda d=data: admit(d, STRICT, ctx),
                lambda d=data: baseline(d, ca_file),
                rounds=rounds,
                iterations=3 if quick else iterations,
            )
            lines.append(
                f"| {label} ({len(data):,} bytes) | {spread(pair.ours_us)} "
                f"| {spread(pair.base_us)} | {spread(pair.ratios, '{:.2f}')} |"
            )
            headlines.append(
                Headline(
                    f"admission alone, one core, signed {label}, µs per package",
                    spread(pair.ours_us),
                    spread(pair.base_us),
                    spread(pair.ratios, "{:.2f}"),
                    "≤ 1.25×",
                    statistics.median(pair.ratios) <= 1.25,
                )
            )
        lines.append(f"\nMedian (min–max) over {rounds} alternating rounds in one process.")
        count = 48 if quick else 400
        measured = admission_pool.measure(Path(folder), rounds, count)
    text, ratios = admission_pool.table(measured, count, rounds)
    lines += ["", admission_pool.METHOD, text]
    pool = {name: rates for name, (rates, _) in measured.items()}
    cpu = {name: used for name, (_, used) in measured.items()}
    two_over_one = ratios["two workers / one (lienthong)"]
    ours_cpu, alone_cpu = cpu["lienthong pool, 1 worker"], cpu["in-process"]
    headlines += [
        Headline(
            "admission in the pool, signed 10 KiB, packages/s: 2 workers (baseline: 1 worker)",
            spread(pool["lienthong pool, 2 workers"]),
            spread(pool["lienthong pool, 1 worker"]),
            spread(two_over_one, "{:.2f}"),
            "≥ 1.6×",
            statistics.median(two_over_one) >= 1.6,
        ),
        Headline(
            "the pool's cost: CPU ms per package, pool of 1 (baseline: in-process)",
            spread(ours_cpu, "{:.2f}"),
            spread(alone_cpu, "{:.2f}"),
            spread([a / b for a, b in zip(ours_cpu, alone_cpu, strict=True)], "{:.2f}"),
        ),
    ]
    return Section("admission", "Admission", "\n".join(lines), headlines)


METHOD = """### Admission: one signed package (RSA-2048, SHA-256, exclusive c14n)

One signed edXML document package through admission, on one core. The attachment is
random bytes (incompressible, like a scanned PDF) in a one-entry ZIP, base64-encoded, so
the package is 10 KiB or 1 MiB in all.

- **lienthong**: `exchange.admission.admit` under the strict policy: size cap, hardened
  parse, structural XSD, rule pass, signature shape checks (one signature, its place,
  `URI=""`, transforms, algorithms), certificate validity and chain to the configured CA,
  signxml verification, the signer bound to `From/OrganId`, attachment decoding, and the
  frozen `Package` built from the verified document.
- **baseline**: the same work called directly, as a hand-written gateway would: lxml parse
  with the same hardened parser, the same compiled structural XSD, base64 + unzip + SHA-256
  of each attachment, and `signxml.XMLVerifier().verify` with the same RSA-2048 key and the
  certificate from KeyInfo chained by signxml to the same CA (its `ca_pem_file`).
- **target**: lienthong at most 1.25× its baseline.

What the extra time buys: the rule pass (cardinality and formats), the signature-wrapping
checks, the whole-input DOCTYPE search and encoding check, the refusal of comments inside
signed text, reading every KeyInfo certificate whole before trusting any, a CRL-ready chain
check, the binding of signer to sender, and a `Package` read from the verified tree rather
than the received one."""
