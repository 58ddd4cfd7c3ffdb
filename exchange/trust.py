"""Certificate trust: the configured CA bundle only (never the system store), and CRLs.

Chains are built by cryptography's X.509 verifier, once per check, against a store
loaded once. Time is passed in, so a test (or an auditor re-checking an old package)
can ask "was this valid then?".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import verification as xv

from exchange.errors import (
    CertificateExpired,
    CertificateNotYetValid,
    CertificateRevoked,
    CertificateUntrusted,
    ConfigurationError,
)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _digital_signature_allowed(
    _policy: xv.Policy, _cert: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    if usage is None or not usage.digital_signature:
        raise ValueError("certificate KeyUsage does not allow digitalSignature")


@dataclass(frozen=True)
class TrustStore:
    roots: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    _store: xv.Store = field(init=False, repr=False, compare=False)
    _verifiers: list[tuple[datetime, xv.ClientVerifier]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.roots:
            raise ConfigurationError("the CA bundle holds no certificate")
        object.__setattr__(self, "_store", xv.Store(list(self.roots)))
        object.__setattr__(self, "_verifiers", [])

    @classmethod
    def from_pem(cls, bundle: bytes, crls: tuple[bytes, ...] = ()) -> TrustStore:
        try:
            roots = tuple(x509.load_pem_x509_certificates(bundle))
        except ValueError as exc:
            raise ConfigurationError(f"the CA bundle is not PEM certificates: {exc}") from exc
        loaded = []
        for blob in crls:
            try:
                loaded.append(
                    x509.load_pem_x509_crl(blob)
                    if b"-----BEGIN" in blob
                    else x509.load_der_x509_crl(blob)
                )
            except ValueError as exc:
                raise ConfigurationError(f"a CRL could not be read: {exc}") from exc
        return cls(roots, tuple(loaded))

    def _verifier(self, when: datetime) -> xv.ClientVerifier:
        """A chain verifier at ``when``, kept while the minute lasts (building one costs
        about as much as using it). The leaf's own validity is checked to the second in
        ``validate``; intermediates and roots are judged to the minute."""
        for built_at, verifier in self._verifiers:
            if built_at == when:
                return verifier
        verifier = self._build_verifier(when)
        self._verifiers[:] = [(when, verifier)]
        return verifier

    def _build_verifier(self, when: datetime) -> xv.ClientVerifier:
        ee_policy = xv.ExtensionPolicy.permit_all().require_present(
            x509.KeyUsage, xv.Criticality.AGNOSTIC, _digital_signature_allowed
        )
        return (
            xv.PolicyBuilder()
            .store(self._store)
            .time(when)
            .extension_policies(
                ee_policy=ee_policy, ca_policy=xv.ExtensionPolicy.webpki_defaults_ca()
            )
            .build_client_verifier()
        )

    def validate(
        self, leaf: x509.Certificate, intermediates: list[x509.Certificate], when: datetime
    ) -> list[x509.Certificate]:
        """The chain from leaf to a configured root, or a specific certificate error."""
        when = when.astimezone(UTC)
        if when < leaf.not_valid_before_utc:
            raise CertificateNotYetValid(
                f"the signing certificate ({leaf.subject.rfc4514_string()}) is valid only from "
                f"{leaf.not_valid_before_utc.isoformat()}"
            )
        if when > leaf.not_valid_after_utc:
            raise CertificateExpired(
                f"the signing certificate ({leaf.subject.rfc4514_string()}) expired on "
                f"{leaf.not_valid_after_utc.isoformat()}"
            )
        try:
            verified = self._verifier(when.replace(second=0, microsecond=0)).verify(
                leaf, intermediates
            )
        except xv.VerificationError as exc:
            raise CertificateUntrusted(
                f"the signing certificate ({leaf.subject.rfc4514_string()}, issued by "
                f"{leaf.issuer.rfc4514_string()}) does not chain to a configured CA: {exc}"
            ) from exc
        chain = list(verified.chain)
        self._check_revocation(chain, when)
        return chain

    def _check_revocation(self, chain: list[x509.Certificate], when: datetime) -> None:
        if not self.crls:
            return
        for cert, issuer in itertools.pairwise(chain):
            for crl in self.crls:
                if crl.issuer != issuer.subject:
                    continue
                if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                    continue
                revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
                if revoked is not None and revoked.revocation_date_utc <= when:
                    raise CertificateRevoked(
                        f"certificate {cert.subject.rfc4514_string()} "
                        f"(serial {cert.serial_number}) "
                        f"was revoked on {revoked.revocation_date_utc.isoformat()}"
                    )
