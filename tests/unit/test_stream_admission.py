"""Stream admission against ``admit``: for the same bytes, the same Admitted (package,
level, attachments, warnings) or the same refusal with the same code and problems."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange.admission import Admission, Admitted, admit
from exchange.attachments import pack_zip
from exchange.directory import SubjectBinding
from exchange.errors import LienthongError
from exchange.model import Level
from exchange.policy import PRESETS
from exchange.signing import sign
from exchange.stream_admission import PDF_UNCHECKED, admit_stream
from exchange.xmlsafe import ParseLimits
from tests.conftest import EXAMPLES, REAL_SAMPLES
from tests.large_packages import write_signed_package
from tests.pki import G22, DevPki
from tests.unit.test_examples import sender_of

NOW = datetime.now(UTC)
FILES = sorted(EXAMPLES.glob("*/*.edxml")) + (
    sorted(REAL_SAMPLES.glob("*/*.edxml")) if REAL_SAMPLES.is_dir() else []
)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ctx(pki: DevPki) -> Admission:
    return Admission(trust=pki.trust, binder=SubjectBinding(), clock=lambda: NOW)


def outcome(run: object) -> object:
    try:
        admitted = run()  # type: ignore[operator]
    except LienthongError as exc:
        problems = getattr(exc, "problems", ())
        return exc.code, [(p.code, p.line, p.path, p.message) for p in problems]
    assert isinstance(admitted, Admitted)
    return admitted


def both(data: bytes, policy_name: str, ctx: Admission) -> tuple[object, object]:
    policy = PRESETS[policy_name]
    return (
        outcome(lambda: admit(data, policy, ctx)),
        outcome(lambda: admit_stream(io.BytesIO(data), len(data), policy, ctx)),
    )


def variants(path: Path, pki: DevPki) -> list[bytes]:
    data = path.read_bytes()
    try:
        organ = sender_of(data)
        signed = sign(data, pki.key(organ if organ in pki.agencies else G22))
    except LienthongError:
        return [data]
    changed = signed.replace(b"</edXML:OrganId>", b"!</edXML:OrganId>", 1)
    return [data, signed, changed]


@pytest.mark.parametrize("policy_name", sorted(PRESETS))
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_stream_admission_agrees_with_admit(
    path: Path, policy_name: str, pki: DevPki, ctx: Admission
) -> None:
    for data in variants(path, pki):
        mine, theirs = both(data, policy_name, ctx)
        assert theirs == mine


def test_zip_wrappers_bombs_and_bad_base64_agree(pki: DevPki, ctx: Admission) -> None:
    template = (EXAMPLES / "valid" / "document-new.edxml").read_bytes()
    start = template.index(b"<edXML:ContentTransferEncoded")
    start = template.index(b">", start) + 1
    end = template.index(b"</edXML:ContentTransferEncoded>")
    payloads = [
        pack_zip("a.pdf", b"%PDF-1.7 " * 1000),
        pack_zip("a.pdf", bytes(5_000_000)),  # inflates 5 MB from a few KB: a bomb
        b"PK\x03\x04 not really a zip",
        b"plain bytes",
        b"",
    ]
    texts = [base64.encodebytes(p) for p in payloads] + [b"!!!!", b"QUJD=QUJD", b"QQ", b" \n "]
    for text in texts:
        data = template[:start] + text + template[end:]
        for signed in (data, sign(data, pki.key(G22))):
            mine, theirs = both(signed, "strict", ctx)
            assert theirs == mine, text[:40]


def test_too_large_and_short_streams_are_refused(ctx: Admission) -> None:
    data = (EXAMPLES / "valid" / "document-new.edxml").read_bytes()
    small = replace(ctx, parse_limits=ParseLimits(max_bytes=100))
    with pytest.raises(LienthongError) as caught:
        admit_stream(io.BytesIO(data), len(data), PRESETS["strict"], small)
    assert caught.value.code == "package.too_large"
    with pytest.raises(LienthongError) as caught:
        admit_stream(io.BytesIO(data), len(data) + 1, PRESETS["strict"], ctx)
    assert caught.value.code == "xml.malformed"
    with pytest.raises(LienthongError) as caught:
        admit_stream(io.BytesIO(data), len(data) - 1, PRESETS["strict"], ctx)
    assert caught.value.code == "package.too_large"


def test_pdf_signatures_below_strict_are_said_to_be_unchecked(pki: DevPki) -> None:
    data = (EXAMPLES / "valid" / "document-new.edxml").read_bytes()
    ctx = Admission(
        trust=pki.trust, binder=SubjectBinding(), clock=lambda: NOW, pdf_check=lambda f, w: ()
    )
    admitted = admit_stream(io.BytesIO(data), len(data), PRESETS["legacy-or-unsigned"], ctx)
    assert admitted.package.level is Level.UNSIGNED
    assert PDF_UNCHECKED in admitted.warnings


_MEASURE = textwrap.dedent(
    """
    import json, sys, time
    from datetime import UTC, datetime
    from exchange.admission import Admission
    from exchange.directory import SubjectBinding
    from exchange.policy import STRICT
    from exchange.stream_admission import admit_stream
    from exchange.trust import TrustStore
    from exchange.xmlsafe import ParseLimits
    path, ca = sys.argv[1], sys.argv[2]
    ctx = Admission(trust=TrustStore.from_pem(open(ca, "rb").read()), binder=SubjectBinding(),
                    parse_limits=ParseLimits(max_bytes=2**31))
    size = int(sys.argv[3])
    started = time.perf_counter()
    with open(path, "rb") as f:
        admitted = admit_stream(f, size, STRICT, ctx)
    seconds = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries the forking parent's peak into ru_maxrss
    status = open("/proc/self/status").read()
    peak = int(status.split("VmHWM:")[1].split()[0]) * 1024
    (attachment,) = admitted.package.attachments
    print(json.dumps({"level": admitted.package.level.value, "seconds": seconds, "peak": peak,
                      "attachment": attachment.size}))
    """
)


@pytest.mark.timeout(120)
def test_admitting_200_mib_stays_under_150_mib(pki: DevPki, tmp_path: Path) -> None:
    path = tmp_path / "large.edxml"
    size = write_signed_package(path, 200 * 1024 * 1024, pki.key(G22))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca.cert_pem)
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(ca), str(size)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        cwd=ROOT,
    )
    result = json.loads(done.stdout)
    assert result["level"] == "strict"
    assert result["attachment"] > 140 * 1024 * 1024  # 3/4 of the base64
    assert result["peak"] < 150 * 1024 * 1024, result
