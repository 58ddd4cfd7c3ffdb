"""Certificate trust: the configured CA bundle only (never the system store), and CRLs.

Chains are built by cryptography's X.509 verifier, once per check, against a store
loaded once. Time is passed in, so a test (or an auditor re-checking an old package)
can ask "was this valid then?".
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import verification as xv

from exchange.errors import (
    CertificateExpired,
    CertificateNotYetValid,
    CertificateRevoked,
    CertificateUntrusted,
    ConfigurationError,
    RevocationUnknown,
)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


@dataclass(frozen=True)
class Chain:
    certificates: tuple[x509.Certificate, ...]  # leaf first, configured root last
    legacy: bool  # checked under a SHA-1 tolerant policy


def _signed_with_sha1(cert: x509.Certificate) -> bool:
    return isinstance(cert.signature_hash_algorithm, hashes.SHA1)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Is ``cert`` signed by ``issuer``'s key (RSA PKCS#1 v1.5 or ECDSA, any hash)?"""
    key = issuer.public_key()
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return True


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
    _lock: threading.Lock = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.roots:
            raise ConfigurationError("the CA bundle holds no certificate")
        object.__setattr__(self, "_store", xv.Store(list(self.roots)))
        object.__setattr__(self, "_verifiers", [])
        object.__setattr__(self, "_lock", threading.Lock())

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
        for crl in loaded:
            issuers = [c for c in roots if c.subject == crl.issuer]
            if not any(crl.is_signature_valid(c.public_key()) for c in issuers):  # type: ignore[arg-type]
                raise ConfigurationError(
                    f"the CRL of {crl.issuer.rfc4514_string()} is not signed by a configured CA; "
                    "it is refused rather than trusted"
                )
        return cls(roots, tuple(loaded))

    def _verifier(self, when: datetime) -> xv.ClientVerifier:
        """A chain verifier at ``when``, kept while the minute lasts (building one costs
        about as much as using it). The leaf's own validity is checked to the second in
        ``validate``; intermediates and roots are judged to the minute."""
        with self._lock:  # admission runs in a pool of threads
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
        self,
        leaf: x509.Certificate,
        intermediates: list[x509.Certificate],
        when: datetime,
        *,
        allow_sha1: bool = False,
    ) -> Chain:
        """The chain from leaf to a configured root, or a specific certificate error.

        Today's national CA certificates are still signed with SHA-1, which the X.509
        verifier refuses outright. Under a policy that allows SHA-1, such a chain is
        checked link by link here instead, and the result says it is legacy."""
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
        except (xv.VerificationError, ValueError) as exc:
            sha1 = [c for c in [leaf, *intermediates] if _signed_with_sha1(c)]
            if sha1 and allow_sha1:
                chain = self._legacy_chain(leaf, intermediates, when)
                self._check_revocation(chain, when)
                return Chain(tuple(chain), legacy=True)
            if sha1:
                raise CertificateUntrusted(
                    f"the certificate {sha1[0].subject.rfc4514_string()} is signed with SHA-1, "
                    "which only a legacy policy accepts"
                ) from exc
            raise CertificateUntrusted(
                f"the signing certificate ({leaf.subject.rfc4514_string()}, issued by "
                f"{leaf.issuer.rfc4514_string()}) does not chain to a configured CA: {exc}"
            ) from exc
        chain = list(verified.chain)
        self._check_revocation(chain, when)
        return Chain(tuple(chain), legacy=False)

    def _legacy_chain(
        self, leaf: x509.Certificate, intermediates: list[x509.Certificate], when: datetime
    ) -> list[x509.Certificate]:
        """Issuer by issuer up to a configured root: names, signatures, CA flags, validity."""
        roots = {fingerprint(r): r for r in self.roots}
        chain, current = [leaf], leaf
        for _ in range(8):
            if fingerprint(current) in roots:
                return chain
            issuers = [c for c in [*intermediates, *self.roots] if c.subject == current.issuer]
            issuer = next((c for c in issuers if _issued(current, c)), None)
            if issuer is None:
                raise CertificateUntrusted(
                    f"{current.subject.rfc4514_string()} is not signed by any configured CA "
                    "or supplied intermediate"
                )
            if (
                not _is_ca(issuer)
                or not issuer.not_valid_before_utc <= when <= issuer.not_valid_after_utc
            ):
                raise CertificateUntrusted(
                    f"{issuer.subject.rfc4514_string()} is not a CA valid at {when.isoformat()}"
                )
            chain.append(issuer)
            if fingerprint(issuer) in roots:
                return chain
            current = issuer
        raise CertificateUntrusted("the certificate chain is longer than 8")

    def _check_revocation(self, chain: list[x509.Certificate], when: datetime) -> None:
        """Once any CRL is configured, every issuer in the chain needs a current one:
        revocation that cannot be checked is not taken as "not revoked"."""
        if not self.crls:
            return
        for cert, issuer in itertools.pairwise(chain):
            name = issuer.subject.rfc4514_string()
            own = [
                crl
                for crl in self.crls
                if crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
            ]
            if not own:
                raise RevocationUnknown(
                    f"no CRL of {name} is configured; revocation cannot be checked"
                )
            crl = max(own, key=lambda c: c.last_update_utc)
            if crl.next_update_utc is not None and crl.next_update_utc < when:
                raise RevocationUnknown(
                    f"the CRL of {name} was due for renewal on {crl.next_update_utc.isoformat()}; "
                    "revocation cannot be checked until a current CRL is installed"
                )
            revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if revoked is not None and revoked.revocation_date_utc <= when:
                raise CertificateRevoked(
                    f"certificate {cert.subject.rfc4514_string()} (serial {cert.serial_number}) "
                    f"was revoked on {revoked.revocation_date_utc.isoformat()}"
                )
