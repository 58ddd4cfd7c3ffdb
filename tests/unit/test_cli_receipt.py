"""``lienthong verify-receipt`` end to end, as an agency or an auditor runs it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509

from adapters.config_files import load_node_config, load_receipt_signer
from exchange.devpki import issue
from exchange.errors import ConfigurationError
from exchange.model import Level
from exchange.receipt import DeliveryReceipt, ReceiptRecipient, package_sha256
from exchange.trust import fingerprint
from tests.pki import DevPki

VN = timezone(timedelta(hours=7))
PACKAGE = b"<edXML>the exact bytes delivered</edXML>"
MESSAGE = "0b8e7c8e-5d0b-4c43-9a55-3f1e7a2b9c10"


def lienthong(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def pki_dir(pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node certificate folder as `lienthong certs init` lays it out, and a node file."""
    root = tmp_path_factory.mktemp("pki")
    since = datetime(2025, 1, 1, tzinfo=UTC)
    for node in ("province-h53", "central"):
        issued = issue(pki.ca, node, role="node", key_type="ec", not_before=since, days=3650)
        (root / "nodes").mkdir(exist_ok=True)
        (root / "nodes" / f"{node}.pem").write_bytes(issued.cert_pem)
        (root / "nodes" / f"{node}.key").write_bytes(issued.key_pem)
    (root / "node.toml").write_text(
        '[node]\nid = "province-h53"\nparent = "central"\n'
        '[rabbitmq]\nurl = "amqp://guest:guest@127.0.0.1:5672/"\n'
        '[store]\nkind = "sqlite"\npath = "var/store"\n'
        '[trust]\nca = "ca.pem"\ndirectory = "directory.toml"\n'
        'node_key = "nodes/province-h53.key"\nnode_certs = "nodes"\n'
    )
    return root


def receipt() -> DeliveryReceipt:
    delivered = datetime(2026, 11, 28, 9, 15, tzinfo=VN)
    return DeliveryReceipt(
        message_id=MESSAGE,
        document_id="15/2026/QĐ-UBND",
        sender="000.00.00.G22",
        node="province-h53",
        level=Level.STRICT,
        package_sha256=package_sha256(PACKAGE),
        issued_at=delivered + timedelta(seconds=1),
        recipients=(
            ReceiptRecipient("000.21.31.H53", delivered),
            ReceiptRecipient("000.22.31.H53", delivered + timedelta(milliseconds=40)),
        ),
    )


@pytest.fixture(scope="module")
def files(pki_dir: Path) -> dict[str, Path]:
    """The receipt as the node signs it (with the key its node file names), and the package."""
    signer = load_receipt_signer(load_node_config(pki_dir / "node.toml"))
    out = {"receipt": pki_dir / "receipt.xml", "package": pki_dir / "package.edxml"}
    out["receipt"].write_bytes(signer.issue(receipt()))
    out["package"].write_bytes(PACKAGE)
    return out


def test_a_receipt_verifies_and_says_what_it_binds(pki_dir: Path, files: dict[str, Path]) -> None:
    result = lienthong("verify-receipt", files["receipt"], "--node-certs", pki_dir / "nodes")
    assert result.returncode == 0, result.stderr
    cert = x509.load_pem_x509_certificate((pki_dir / "nodes" / "province-h53.pem").read_bytes())
    assert result.stdout.splitlines() == [
        f"{files['receipt']}: verified: node province-h53 delivered message {MESSAGE} "
        "to 2 agency(ies)",
        f"  message id      {MESSAGE}",
        "  document id     15/2026/QĐ-UBND",
        "  sender          000.00.00.G22",
        "  level           strict",
        f"  package sha256  {package_sha256(PACKAGE)}",
        "  issued at       2026-11-28T09:15:01+07:00",
        "  recipients      000.21.31.H53  delivered 2026-11-28T09:15:00+07:00",
        "                  000.22.31.H53  delivered 2026-11-28T09:15:00.040000+07:00",
        "  signed by       CN=province-h53,OU=node,O=lienthong development PKI,C=VN",
        f"  certificate     sha256 {fingerprint(cert)}",
    ]


def test_a_node_file_and_the_package_it_covers(pki_dir: Path, files: dict[str, Path]) -> None:
    result = lienthong(
        "verify-receipt", files["receipt"], "--config", pki_dir / "node.toml",
        "--package", files["package"],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"  package         {files['package']}: the exact bytes the receipt covers"
    )


def test_a_tampered_receipt_is_refused_in_one_line(
    pki_dir: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(files["receipt"].read_bytes().replace(b"000.22.31.H53", b"000.22.31.H54"))
    result = lienthong("verify-receipt", tampered, "--node-certs", pki_dir / "nodes")
    assert result.returncode == 1
    assert result.stdout == (
        f"{tampered}: refused [receipt.invalid] the signature does not verify: the receipt was "
        "changed after node province-h53 signed it (the digest does not match)\n"
    )
    assert "Traceback" not in result.stderr


def test_a_receipt_for_other_bytes_is_refused(
    pki_dir: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    other, other_bytes = tmp_path / "other.edxml", PACKAGE + b"\n"
    other.write_bytes(other_bytes)
    result = lienthong(
        "verify-receipt", files["receipt"], "--node-certs", pki_dir / "nodes", "--package", other
    )
    assert result.returncode == 1
    assert result.stdout == (
        f"{files['receipt']}: refused [receipt.package_mismatch] the package's SHA-256 is "
        f"{package_sha256(other_bytes)}, but the receipt of message {MESSAGE} covers "
        f"{package_sha256(PACKAGE)}\n"
    )


def test_files_that_cannot_be_read_are_usage_errors(
    pki_dir: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    missing = lienthong("verify-receipt", tmp_path / "nope.xml", "--node-certs", pki_dir / "nodes")
    assert missing.returncode == 2
    assert "nope.xml: cannot read the receipt: No such file or directory" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    no_certs = lienthong("verify-receipt", files["receipt"], "--node-certs", empty)
    assert no_certs.returncode == 2
    assert no_certs.stderr == f"lienthong: {empty}: holds no node certificates (<node id>.pem)\n"
    unsaid = lienthong("verify-receipt", files["receipt"])
    assert unsaid.returncode == 2
    assert "one of the arguments --node-certs --config is required" in unsaid.stderr


def test_a_node_file_whose_key_is_not_its_certificate_is_named(pki_dir: Path) -> None:
    wrong = pki_dir / "wrong.toml"
    wrong.write_text((pki_dir / "node.toml").read_text().replace("province-h53.key", "central.key"))
    with pytest.raises(ConfigurationError) as caught:
        load_receipt_signer(load_node_config(wrong))
    assert caught.value.message == (
        f"{pki_dir}/nodes/central.key, {pki_dir}/nodes/province-h53.pem: node province-h53: "
        "the certificate CN=province-h53,OU=node,O=lienthong development PKI,C=VN does not "
        "belong to the node key"
    )
