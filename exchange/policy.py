"""Verification policy, given per source (an adapter credential, a link, an upstream).

A policy says which verification levels a source may produce. ``strict`` is the default.
``legacy`` admits today's SHA-1 traffic and labels it so; it never upgrades it.
"""

from __future__ import annotations

from dataclasses import dataclass

from exchange.errors import ConfigurationError

DSIG = "http://www.w3.org/2000/09/xmldsig#"
DSIG_MORE = "http://www.w3.org/2001/04/xmldsig-more#"
XMLENC = "http://www.w3.org/2001/04/xmlenc#"

C14N_INCLUSIVE = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N_INCLUSIVE_COMMENTS = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
C14N_EXCLUSIVE = "http://www.w3.org/2001/10/xml-exc-c14n#"
C14N_EXCLUSIVE_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
C14N_11 = "http://www.w3.org/2006/12/xml-c14n11"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

RSA_SHA1 = DSIG + "rsa-sha1"
SHA1 = DSIG + "sha1"
STRONG_SIGNATURES = frozenset(
    {
        DSIG_MORE + "rsa-sha256",
        DSIG_MORE + "rsa-sha384",
        DSIG_MORE + "rsa-sha512",
        DSIG_MORE + "ecdsa-sha256",
        DSIG_MORE + "ecdsa-sha384",
        DSIG_MORE + "ecdsa-sha512",
    }
)
STRONG_DIGESTS = frozenset({XMLENC + "sha256", DSIG_MORE + "sha384", XMLENC + "sha512"})
LEGACY_SIGNATURES = frozenset({RSA_SHA1})
LEGACY_DIGESTS = frozenset({SHA1})
ALL_C14N = frozenset(
    {C14N_INCLUSIVE, C14N_INCLUSIVE_COMMENTS, C14N_EXCLUSIVE, C14N_EXCLUSIVE_COMMENTS, C14N_11}
)


@dataclass(frozen=True)
class VerificationPolicy:
    name: str = "strict"
    allow_sha1: bool = False
    """Admit RSA-SHA1 / SHA-1 signatures, labelled ``legacy``."""
    allow_unsigned: bool = False
    """Admit packages with no XML-DSig signature, labelled ``unsigned``."""
    quarantine_failures: bool = False
    """Hold packages whose signature fails (labelled ``quarantined``) instead of refusing them."""
    c14n: frozenset[str] = ALL_C14N

    def allows_signature(self, uri: str) -> bool:
        return uri in STRONG_SIGNATURES or (self.allow_sha1 and uri in LEGACY_SIGNATURES)

    def allows_digest(self, uri: str) -> bool:
        return uri in STRONG_DIGESTS or (self.allow_sha1 and uri in LEGACY_DIGESTS)


STRICT = VerificationPolicy()
LEGACY = VerificationPolicy(name="legacy", allow_sha1=True)

PRESETS = {
    "strict": STRICT,
    "legacy": LEGACY,
    "legacy-or-unsigned": VerificationPolicy(
        name="legacy-or-unsigned", allow_sha1=True, allow_unsigned=True
    ),
    # an upstream's traffic we cannot vouch for: SHA-1 admitted as legacy, and a package
    # whose signature fails, or that has none, held for an operator (docs/bridge.md)
    "quarantine": VerificationPolicy(name="quarantine", allow_sha1=True, quarantine_failures=True),
}


def policy_named(name: str) -> VerificationPolicy:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown verification policy {name!r}; expected one of {', '.join(PRESETS)}"
        ) from None
