"""What reading the PDF signatures costs a package admitted below strict.

lienthong: ``exchange.admission.admit`` under the ``legacy`` policy of a package signed with
RSA-SHA1 whose attachment is a PAdES-signed PDF (one signature, RSA-2048), with the node's
``pdf_check`` (pyHanko, offline: integrity, the CMS signature, the chain to the CA).

Baseline: the same admission of the same bytes without ``pdf_check`` (what the node did
before it looked at PDFs). The ratio is what the PDF report adds; a strict package pays
nothing (it is not looked at).
"""

from __future__ import annotations

import base64
import warnings

from lxml import etree

from adapters.devpdf import blank_pdf, sign_pdf
from adapters.pades_pyhanko import pdf_check_for
from bench.timing import alternate, spread
from exchange.admission import Admission, admit
from exchange.attachments import pack_zip
from exchange.contract import schema_dir
from exchange.devpki import issue, make_ca
from exchange.directory import SubjectBinding
from exchange.model import Level
from exchange.policy import LEGACY
from exchange.signing import SigningKey, sign
from exchange.trust import TrustStore
from exchange.xmlsafe import parse

SENDER = "000.00.00.G22"


def legacy_package_with(pdf: bytes, key: SigningKey) -> bytes:
    data = (schema_dir() / "examples" / "valid" / "document-new.edxml").read_bytes()
    root = parse(data).getroot()
    holder = root.find(".//{*}ContentTransferEncoded")
    assert holder is not None
    holder.text = base64.b64encode(pack_zip("quyet-dinh.pdf", pdf)).decode()
    return sign(etree.tostring(root, xml_declaration=True, encoding="UTF-8"), key, legacy=True)


def run(*, rounds: int, quick: bool, repeats: int = 3) -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # signxml on SHA-1
    ca = make_ca()
    agency = issue(ca, SENDER)
    key = SigningKey(agency.key, (agency.cert,))
    trust = TrustStore.from_pem(ca.cert_pem)
    plain = Admission(trust=trust, binder=SubjectBinding())
    looking = Admission(trust=trust, binder=SubjectBinding(), pdf_check=pdf_check_for(trust.roots))
    data = legacy_package_with(sign_pdf(blank_pdf(), agency, ca), key)
    package = admit(data, LEGACY, looking).package
    assert package.level is Level.LEGACY
    assert [s.valid for s in package.pdf_signatures] == [True]
    assert admit(data, LEGACY, plain).package.pdf_signatures == ()
    pair = alternate(
        lambda: admit(data, LEGACY, looking),
        lambda: admit(data, LEGACY, plain),
        rounds=rounds,
        iterations=3 if quick else 40,
    )
    print("\n### PDF signatures: admission below strict, with and without reading them\n")
    print("| package | with PDF check µs/op | without µs/op | ratio with/without |")
    print("|---|---|---|---|")
    print(
        f"| legacy, one signed PDF ({len(data):,} bytes) | {spread(pair.ours_us)} "
        f"| {spread(pair.base_us)} | {spread(pair.ratios, '{:.2f}')} |"
    )
    print(f"\nMedian (min–max) over {rounds} alternating rounds in one process, one core.")
