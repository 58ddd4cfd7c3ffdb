"""The agency directory: who may sign as which OrganId, and where each agency lives.

Each entry binds an agency to its signing certificates by SHA-256 fingerprint or by a
subject pattern. The directory is data (DESIGN §5): a signed, versioned document later;
here, a mapping read from a file by the caller.

Without a directory, development setups may bind by subject: the certificate's CN must
equal the OrganId (the dev PKI issues such certificates). ``SubjectBinding`` says so in
every result, so nobody mistakes it for a production binding.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509
from cryptography.x509.oid import NameOID

from exchange.errors import ConfigurationError, SignerNotSender, UnknownAgency
from exchange.topology import Topology
from exchange.trust import fingerprint


class Binder(Protocol):
    def bind(self, organ_id: str, cert: x509.Certificate) -> str:
        """How ``cert`` is bound to ``organ_id``; raise SignerNotSender or UnknownAgency."""


@dataclass(frozen=True)
class AgencyEntry:
    organ_id: str
    name: str | None = None
    home_node: str | None = None
    fingerprints: frozenset[str] = frozenset()
    subject: Mapping[str, str] = field(default_factory=dict)
    """Attribute name (CN, O, OU, C, serialNumber, UID, ...) -> regular expression that
    the certificate's one value of that attribute must match whole."""


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


@dataclass(frozen=True)
class Directory:
    version: int
    entries: Mapping[str, AgencyEntry] = field(default_factory=dict)
    nodes: Mapping[str, str | None] = field(default_factory=dict)  # node -> parent
    redirects: Mapping[str, str] = field(default_factory=dict)  # oldCode -> OrganId

    def topology(self) -> Topology:
        homes = {e.organ_id: e.home_node for e in self.entries.values() if e.home_node}
        return Topology(self.nodes, homes, self.redirects)

    def hosted_by(self, node_id: str) -> frozenset[str]:
        return frozenset(e.organ_id for e in self.entries.values() if e.home_node == node_id)

    def get(self, organ_id: str) -> AgencyEntry | None:
        return self.entries.get(organ_id)

    def bind(self, organ_id: str, cert: x509.Certificate) -> str:
        entry = self.entries.get(organ_id)
        if entry is None:
            raise UnknownAgency(
                f"agency {organ_id!r} is not in the directory (version {self.version})"
            )
        fp = fingerprint(cert)
        if fp in entry.fingerprints:
            return f"directory v{self.version}: certificate fingerprint"
        subject = _subject(cert)
        if entry.subject and _subject_matches(cert, entry.subject):
            return f"directory v{self.version}: subject attributes"
        raise SignerNotSender(
            f"the package says it is from {organ_id}, but it is signed by {subject} "
            f"(sha256 {fp[:16]}…), which the directory does not bind to {organ_id}"
        )


SUBJECT_ATTRIBUTES = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "UID": NameOID.USER_ID,
    "emailAddress": NameOID.EMAIL_ADDRESS,
}


def _subject_matches(cert: x509.Certificate, wanted: Mapping[str, str]) -> bool:
    """Each named attribute appears exactly once and matches its pattern whole. Matching
    attribute by attribute, not on the flattened subject string, means a value such as
    OU=CN=000.00.00.G22 cannot pass for a CN."""
    for name, pattern in wanted.items():
        values = cert.subject.get_attributes_for_oid(SUBJECT_ATTRIBUTES[name])
        if len(values) != 1 or not re.fullmatch(pattern, str(values[0].value)):
            return False
    return True


class SubjectBinding:
    """Development binding: the certificate's CN is the OrganId."""

    def bind(self, organ_id: str, cert: x509.Certificate) -> str:
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = str(names[0].value) if names else ""
        if common_name == organ_id:
            return "certificate subject CN (development binding, no directory)"
        raise SignerNotSender(
            f"the package says it is from {organ_id}, but it is signed by "
            f"{_subject(cert)}, whose CN is not {organ_id}"
        )


def _expect(value: object, kind: type, where: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise ConfigurationError(f"{where}: expected {what}, found {type(value).__name__}")
    return value


def directory_from_mapping(data: Mapping[str, Any], source: str = "directory") -> Directory:
    """Build a Directory from parsed TOML/JSON, with one clear message per mistake."""
    version = _expect(data.get("version"), int, f"{source}: key 'version'", "an integer")
    entries: dict[str, AgencyEntry] = {}
    agencies = _expect(data.get("agency", []), list, f"{source}: key 'agency'", "a list of tables")
    for index, item in enumerate(agencies):
        where = f"{source}: agency[{index}]"
        _expect(item, dict, where, "a table")
        organ_id = _expect(item.get("organ_id"), str, f"{where}.organ_id", "a string")
        if organ_id in entries:
            raise ConfigurationError(f"{where}.organ_id: {organ_id!r} is listed twice")
        fingerprints = _expect(
            item.get("fingerprints", []), list, f"{where}.fingerprints", "a list"
        )
        subject = _expect(item.get("subject", {}), dict, f"{where}.subject", "a table")
        for name, pattern in subject.items():
            if name not in SUBJECT_ATTRIBUTES:
                raise ConfigurationError(
                    f"{where}.subject.{name}: unknown attribute; expected one of "
                    f"{', '.join(SUBJECT_ATTRIBUTES)}"
                )
            _expect(pattern, str, f"{where}.subject.{name}", "a regular expression string")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigurationError(
                    f"{where}.subject.{name}: not a valid pattern: {exc}"
                ) from exc
        entries[organ_id] = AgencyEntry(
            organ_id=organ_id,
            name=item.get("name"),
            home_node=item.get("home_node"),
            fingerprints=frozenset(str(f).lower().replace(":", "") for f in fingerprints),
            subject=dict(subject),
        )
    nodes: dict[str, str | None] = {}
    for index, item in enumerate(
        _expect(data.get("node", []), list, f"{source}: key 'node'", "a list of tables")
    ):
        where = f"{source}: node[{index}]"
        _expect(item, dict, where, "a table")
        node_id = _expect(item.get("id"), str, f"{where}.id", "a node id")
        parent = item.get("parent")
        if parent is not None:
            _expect(parent, str, f"{where}.parent", "a node id")
        nodes[node_id] = parent
    redirects: dict[str, str] = {}
    for index, item in enumerate(agencies):
        for old in _expect(
            item.get("old_codes", []), list, f"{source}: agency[{index}].old_codes", "a list"
        ):
            redirects[str(old)] = item["organ_id"]
    directory = Directory(version=version, entries=entries, nodes=nodes, redirects=redirects)
    if nodes:
        directory.topology()  # refuses cycles, unknown parents and homes now, not at routing
    return directory
