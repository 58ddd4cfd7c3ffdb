"""A development PKI for tests, made once per session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from exchange.devpki import Issued, issue, make_ca
from exchange.signing import SigningKey
from exchange.trust import TrustStore

G22 = "000.00.00.G22"  # Văn phòng Chính phủ: sender of the document examples
H53 = "000.00.00.H53"  # UBND tỉnh Tây Ninh: sender of most status examples


@dataclass
class DevPki:
    ca: Issued
    agencies: dict[str, Issued]
    other_ca: Issued

    @property
    def trust(self) -> TrustStore:
        return TrustStore.from_pem(self.ca.cert_pem)

    def key(self, organ_id: str) -> SigningKey:
        issued = self.agencies[organ_id]
        return SigningKey(issued.key, (issued.cert,))

    def issued_key(self, issued: Issued) -> SigningKey:
        return SigningKey(issued.key, (issued.cert,))

    def expired(self, organ_id: str) -> Issued:
        return issue(
            self.ca, organ_id, not_before=datetime.now(UTC) - timedelta(days=800), days=365
        )

    def not_yet_valid(self, organ_id: str) -> Issued:
        return issue(self.ca, organ_id, not_before=datetime.now(UTC) + timedelta(days=10))

    def untrusted(self, organ_id: str) -> Issued:
        return issue(self.other_ca, organ_id)


def make_test_pki() -> DevPki:
    ca = make_ca()
    agencies = {
        G22: issue(ca, G22),
        H53: issue(ca, H53, key_type="ec"),
        "000.21.31.H53": issue(ca, "000.21.31.H53"),
    }
    return DevPki(ca=ca, agencies=agencies, other_ca=make_ca("an unrelated CA"))
