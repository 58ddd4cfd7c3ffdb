"""``lienthong sandbox``: a development playground on one machine.

This version prepares what every later piece stands on: a development PKI for the
sandbox topology (central; provinces H53 and H41; district 31 of H53 with communes as
agencies; one commune with its own node), signs the example packages with their
senders' keys, and admits each of them under the strict policy. Running the whole tree
of linked nodes here is the next step of the links work.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from adapters.pki_files import init_pki, load_directory
from exchange.admission import Admission, admit
from exchange.contract import schema_dir
from exchange.edxml import sender_id
from exchange.errors import LienthongError
from exchange.policy import STRICT
from exchange.signing import SigningKey, sign
from exchange.trust import TrustStore
from exchange.validation import validate
from exchange.xmlsafe import parse

AGENCIES = [
    "000.00.00.G22",  # Văn phòng Chính phủ, on the central node
    "000.00.00.H53",  # UBND tỉnh Tây Ninh
    "000.00.00.H41",  # UBND tỉnh Nghệ An
    "000.00.31.H53",  # UBND huyện Bến Cầu (district)
    "000.20.31.H53",  # UBND thị trấn Bến Cầu (commune, agency of the district node)
    "000.21.31.H53",  # UBND xã An Thạnh (commune, agency of the district node)
    "000.22.31.H53",  # a commune running its own node
]
NODES = ["central", "province-h53", "province-h41", "district-31-h53", "commune-22-31-h53"]


def run(folder: Path) -> int:
    pki = folder / "pki"
    written = init_pki(pki, AGENCIES, NODES)
    print(f"sandbox: development PKI in {pki} ({len(written)} file(s) written)")
    ctx = Admission(
        trust=TrustStore.from_pem((pki / "ca.pem").read_bytes()),
        binder=load_directory(pki / "directory.toml"),
    )
    out = folder / "signed"
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for example in sorted((schema_dir() / "examples" / "valid").glob("*.edxml")):
        data = example.read_bytes()
        report = validate(data)
        sender = sender_id(parse(data).getroot()) or ""
        try:
            key = SigningKey.from_pem(
                (pki / "agencies" / f"{sender}.key").read_bytes(),
                (pki / "agencies" / f"{sender}.pem").read_bytes(),
            )
            signed = sign(data, key)
            (out / example.name).write_bytes(signed)
            package = admit(signed, STRICT, ctx).package
            print(
                f"  {example.name}: valid={report.ok}, admitted {package.level.value} from {sender}"
            )
        except (LienthongError, OSError) as exc:
            failures += 1
            print(f"  {example.name}: FAILED {exc}")
    me = _command()
    print(
        "\nTry next:\n"
        f"  {me} inspect {out}/document-new.edxml\n"
        f"  {me} verify --ca {pki}/ca.pem --directory {pki}/directory.toml {out}/*.edxml\n"
        f"  {me} validate {schema_dir()}/examples/invalid/*.edxml\n"
        "To run a node: copy config/node.example.toml, point it at this PKI, give each agency\n"
        f"a home_node in {pki}/directory.toml, then `{me} serve --config node.toml`, and\n"
        f"`{me} send` / `{me} fetch` (README). The whole sandbox tree of nodes comes next."
    )
    return 1 if failures else 0


def _command() -> str:
    """How the person at the terminal runs lienthong (e.g. .venv/bin/lienthong)."""
    invoked = Path(sys.argv[0])
    if invoked.name == "lienthong" and invoked.exists():
        relative = os.path.relpath(invoked)
        return relative if "/" in relative else f"./{relative}"
    return "lienthong"
