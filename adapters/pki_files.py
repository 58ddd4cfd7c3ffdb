"""The development PKI on disk, and the agency directory file.

Layout of a PKI folder (``lienthong certs init DIR``)::

    DIR/ca.pem  DIR/ca.key                     the development CA (key mode 0600)
    DIR/agencies/<OrganId>.pem|.key            one signing certificate per agency
    DIR/nodes/<node id>.pem|.key               one certificate per node
    DIR/directory.toml                         binds each agency to its certificate
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from exchange.devpki import Issued, issue, issue_tls, make_ca
from exchange.directory import Directory, directory_from_mapping
from exchange.errors import ConfigurationError
from exchange.organ import parse_organ_id
from exchange.trust import fingerprint


def _write(path: Path, data: bytes, *, secret: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def _load(cert_path: Path, key_path: Path) -> Issued:
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return Issued(key, cert)  # type: ignore[arg-type]


def _ensure(folder: Path, name: str, make: object) -> tuple[Issued, list[Path]]:
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    if cert_path.exists() and key_path.exists():
        return _load(cert_path, key_path), []
    issued: Issued = make()  # type: ignore[operator]
    return issued, [
        _write(key_path, issued.key_pem, secret=True),
        _write(cert_path, issued.cert_pem),
    ]


def init_pki(
    root: Path, agencies: list[str], nodes: list[str], *, key_type: str = "rsa"
) -> list[Path]:
    """Create what is missing; never replace an existing key. Returns the files written."""
    for organ_id in agencies:
        try:
            parse_organ_id(organ_id)
        except ValueError as exc:
            raise ConfigurationError(f"--agency {organ_id!r}: {exc}") from exc
    written: list[Path] = []
    ca, new = _ensure(root, "ca", lambda: make_ca(key_type=key_type))
    written += new
    for organ_id in agencies:
        _, new = _ensure(
            root / "agencies", organ_id, lambda o=organ_id: issue(ca, o, key_type=key_type)
        )
        written += new
    for node in nodes:
        # node keys sign transport envelopes: always ECDSA P-256 (docs/wire.md)
        _, new = _ensure(
            root / "nodes", node, lambda n=node: issue(ca, n, role="node", key_type="ec")
        )
        written += new
    if written:
        written.append(_write(root / "directory.toml", _directory_toml(root).encode()))
    return written


def _directory_toml(root: Path) -> str:
    lines = [
        "# Agency directory: which certificate may sign as which OrganId.",
        "# Written by `lienthong certs init`; production directories come signed from the root.",
        "version = 1",
        "",
    ]
    for cert_path in sorted((root / "agencies").glob("*.pem")):
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        lines += [
            "[[agency]]",
            f'organ_id = "{cert_path.stem}"',
            f'fingerprints = ["{fingerprint(cert)}"]',
            "",
        ]
    return "\n".join(lines)


def load_directory(path: str | Path) -> Directory:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc
    return directory_from_mapping(data, source=str(path))


def init_tls(
    root: Path, nodes: list[str], *, names: tuple[str, ...] = (), addresses: tuple[str, ...] = ()
) -> list[Path]:
    """A development TLS CA (``root/ca.pem``) and a certificate per node (``root/<node>.pem``,
    its CN the node id; ``names`` and ``addresses`` added to each subjectAltName, e.g. the
    host a broker or an HTTP face is reached at). Existing files are kept."""
    written: list[Path] = []
    ca, new = _ensure(root, "ca", lambda: make_ca("lienthong dev TLS CA", key_type="ec"))
    written += new
    for node in nodes:
        _, new = _ensure(
            root, node, lambda n=node: issue_tls(ca, n, names=names, addresses=addresses)
        )
        written += new
    return written
