"""Reading the node file and what it points to, once, at start; every mistake named."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapters.pki_files import load_directory
from exchange.config import NodeConfig, node_config_from_mapping
from exchange.directory import Directory
from exchange.directory_doc import SignedDirectory, open_directory
from exchange.envelope import KeyRing, NodeKey, PeerKey
from exchange.errors import ConfigurationError, DirectoryRefused
from exchange.receipt import ReceiptSigner
from exchange.trust import TrustStore, fingerprint


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the {what}: {exc.strerror}") from exc


def load_node_config(path: str | Path) -> NodeConfig:
    file = Path(path)
    try:
        data = tomllib.loads(_read(file, "node file").decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{file}: not valid TOML: {exc}") from exc
    return node_config_from_mapping(data, str(file), file.resolve().parent)


def load_trust(config: NodeConfig) -> TrustStore:
    crls = tuple(_read(p, "CRL") for p in config.trust.crls)
    return TrustStore.from_pem(_read(config.trust.ca, "CA bundle"), crls)


def load_directory_for(config: NodeConfig) -> Directory:
    signed = load_signed_directory(config)
    return signed.directory if signed is not None else load_directory(config.trust.directory)


def load_signed_directory(config: NodeConfig) -> SignedDirectory | None:
    """The signed directory the node keeps; None for an unsigned development directory
    (TOML, allowed only when no ``trust.directory_signer`` is configured)."""
    path, signer = config.trust.directory, config.trust.directory_signer
    if signer is None:
        if path.suffix == ".json":
            raise ConfigurationError(
                f"{config.source_file}: key 'trust.directory_signer': expected the node id "
                f"that signs directories, to check the signed directory {path}"
            )
        return None
    if path.suffix != ".json":
        raise ConfigurationError(
            f"{path}: the directory must be the signed document (lienthong directory sign), "
            f"since trust.directory_signer is set; an unsigned directory is refused"
        )
    try:
        return open_directory(_read(path, "signed directory"), load_peer_keys(config), signer)
    except DirectoryRefused as exc:
        raise ConfigurationError(f"{path}: {exc.message}") from exc


def load_directories(
    configs: Iterable[NodeConfig],
) -> dict[tuple[Path, str | None, Path], tuple[Directory, SignedDirectory | None]]:
    """Each directory file the nodes name, read (and, when signed, checked) once: nodes
    that one process runs share it (a tree of 111 nodes in 4 processes, with a directory of
    10,000 agencies, took 20 s to start reading it twice per node). Keyed by
    ``directory_key``; with the signed document it came in, if it was signed."""
    loaded: dict[tuple[Path, str | None, Path], tuple[Directory, SignedDirectory | None]] = {}
    for config in configs:
        key = directory_key(config)
        if key not in loaded:
            signed = load_signed_directory(config)
            loaded[key] = (
                (signed.directory, signed)
                if signed is not None
                else (load_directory(config.trust.directory), None)
            )
    return loaded


def directory_key(config: NodeConfig) -> tuple[Path, str | None, Path]:
    """Nodes share a directory read only when they would read and check it alike."""
    trust = config.trust
    return (trust.directory.resolve(), trust.directory_signer, trust.node_certs.resolve())


def hosted_agencies(config: NodeConfig, directory: Directory) -> frozenset[str]:
    hosted = frozenset(
        e.organ_id for e in directory.entries.values() if e.home_node == config.node_id
    )
    if not hosted:
        raise ConfigurationError(
            f"{config.trust.directory}: no agency has home_node = {config.node_id!r}; "
            "a node hosts the agencies the directory places on it"
        )
    return hosted


def load_node_key(config: NodeConfig) -> NodeKey:
    """The node's key, with the kid of its certificate (``trust.node_certs/<node id>.pem``,
    the one of this key when the file holds several) and the envelope version it writes."""
    key = NodeKey.from_pem(config.node_id, _read(config.trust.node_key, "node key"))
    own = config.trust.node_certs / f"{config.node_id}.pem"
    kid = None
    if own.exists():
        mine = key.key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        for cert in _certificates(own):
            spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            if spki == mine:
                kid = fingerprint(cert)
    if kid is None and config.wire_version >= 2:
        raise ConfigurationError(
            f"{config.trust.node_key}: no certificate of this key in {own}; envelope version 2 "
            "names it in every signature"
        )
    return replace(key, kid=kid, version=config.wire_version)


def _certificates(pem: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(_read(pem, "node certificate"))
    except ValueError as exc:
        raise ConfigurationError(f"{pem}: not a PEM certificate: {exc}") from exc


def load_peer_keys(config: NodeConfig) -> dict[str, PeerKey]:
    """Every node's pinned keys, from ``trust.node_certs/<node id>.pem``; a file may hold
    several certificates: a node's current one and those it had (docs/operations.md,
    "Rotating keys")."""
    keys: dict[str, PeerKey] = {}
    for pem in sorted(config.trust.node_certs.glob("*.pem")):
        ring = tuple(
            (fingerprint(cert), key)
            for cert in _certificates(pem)
            if isinstance(
                key := cert.public_key(), ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
            )
        )
        if ring:
            keys[pem.stem] = KeyRing(ring)
    return keys


def load_node_certs(folder: Path) -> dict[str, x509.Certificate | tuple[x509.Certificate, ...]]:
    """The node certificates pinned in ``folder`` (``<node id>.pem``), by node id; several
    in one file (a node that rotated its key) as a tuple."""
    if not folder.is_dir():
        raise ConfigurationError(f"{folder}: not a folder of node certificates (<node id>.pem)")
    certs: dict[str, x509.Certificate | tuple[x509.Certificate, ...]] = {}
    for pem in sorted(folder.glob("*.pem")):
        found = _certificates(pem)
        certs[pem.stem] = found[0] if len(found) == 1 else tuple(found)
    return certs


def load_receipt_signer(config: NodeConfig) -> ReceiptSigner:
    """The node's key and its own certificate (``trust.node_certs/<node id>.pem``), to sign
    delivery receipts with."""
    key, cert = config.trust.node_key, config.trust.node_certs / f"{config.node_id}.pem"
    key_pem, cert_pem = _read(key, "node key"), _read(cert, "node's own certificate")
    try:
        return ReceiptSigner.from_pem(config.node_id, key_pem, cert_pem)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{key}, {cert}: {exc.message}") from exc
