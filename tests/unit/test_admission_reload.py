"""Admission follows the directory a node keeps: after a newer one is installed, an agency
it adds may send (the adapters that run admission read the node's files again)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from cryptography import x509

from adapters.admission_pool import admission_for
from adapters.pki_files import init_pki
from adapters.sandbox_tree import load_topology, topology_file, write_tree
from exchange.directory_doc import sign_directory
from exchange.envelope import NodeKey
from exchange.errors import UnknownAgency
from exchange.policy import STRICT
from exchange.signing import SigningKey, sign
from exchange.trust import fingerprint
from tests.conftest import example

NEWCOMER = "000.24.31.H53"  # a commune that joins in version 2


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker-process"])
async def test_an_agency_added_by_a_newer_directory_may_send_once_it_is_installed(
    tmp_path: Path, workers: int
) -> None:
    topology = load_topology(topology_file(), "-r")
    files = write_tree(tmp_path, topology, "amqp://guest:guest@127.0.0.1:5672/")
    pki = tmp_path / "pki"
    content = tomllib.loads((pki / "directory.toml").read_text(encoding="utf-8"))  # v1
    init_pki(pki, [NEWCOMER], [], key_type="ec")  # the newcomer's certificate
    key = SigningKey.from_pem(
        (pki / "agencies" / f"{NEWCOMER}.key").read_bytes(),
        (pki / "agencies" / f"{NEWCOMER}.pem").read_bytes(),
    )
    package = sign(example("document-new.edxml").replace(b"000.00.00.G22", NEWCOMER.encode()), key)
    admission = admission_for(files["district-31-h53-r"], workers)
    try:
        with pytest.raises(UnknownAgency, match=NEWCOMER):
            await admission(package, STRICT)
        cert = x509.load_pem_x509_certificate((pki / "agencies" / f"{NEWCOMER}.pem").read_bytes())
        content["version"] = 2
        content["agency"].append(
            {
                "organ_id": NEWCOMER,
                "home_node": "district-31-h53-r",
                "fingerprints": [fingerprint(cert)],
            }
        )
        root = NodeKey.from_pem("central-r", (pki / "nodes" / "central-r.key").read_bytes())
        kept = files["district-31-h53-r"].parent / "directory.json"
        kept.write_bytes(sign_directory(content, root))  # as the node keeps a newer version
        await admission.reload()
        admitted = await admission(package, STRICT)
        assert admitted.package.sender.organ_id == NEWCOMER
    finally:
        await admission.aclose()
