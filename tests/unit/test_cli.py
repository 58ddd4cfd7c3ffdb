"""The ``lienthong`` command end to end, as an integrator runs it (separate processes)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.sandbox_tree import load_topology, topology_file, write_tree
from adapters.store_sqlite import MIGRATIONS, SqliteStore
from tests.conftest import EXAMPLES
from tests.contract.stores import intake

VALID = sorted((EXAMPLES / "valid").glob("*.edxml"))


def lienthong(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def sender(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index("<edXML:OrganId>") + len("<edXML:OrganId>")
    return text[start : text.index("<", start)]


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    agencies = sorted({sender(p) for p in VALID})
    args = [arg for organ in agencies for arg in ("--agency", organ)]
    result = lienthong("certs", "init", folder, *args, "--node", "central", "--key-type", "ec")
    assert result.returncode == 0, result.stderr
    assert (folder / "ca.pem").exists()
    assert (folder / "nodes" / "central.pem").exists()
    assert (folder / "directory.toml").read_text().count("[[agency]]") == len(agencies)
    return folder


def test_certs_sign_validate_verify_round_trip_every_valid_example(
    pki_dir: Path, tmp_path: Path
) -> None:
    signed = []
    for path in VALID:
        organ = sender(path)
        out = tmp_path / path.name
        result = lienthong(
            "sign",
            "--key", pki_dir / "agencies" / f"{organ}.key",
            "--cert", pki_dir / "agencies" / f"{organ}.pem",
            path, "-o", out,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        signed.append(out)
    result = lienthong("validate", *signed)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().splitlines()[-1] == f"{len(signed)} file(s) valid"
    warnings = result.stdout.strip().splitlines()[:-1]
    assert all(w.startswith("warning: ") and "input-day-month-year" in w for w in warnings)
    result = lienthong(
        "verify", "--ca", pki_dir / "ca.pem", "--directory", pki_dir / "directory.toml", *signed
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(signed)
    for line, path in zip(lines, signed, strict=True):
        assert line.startswith(f"{path}: strict: from {sender(path)}, signed by CN={sender(path)}")
        assert "directory v1: certificate fingerprint" in line


def test_verify_refuses_a_tampered_package_with_its_code(pki_dir: Path, tmp_path: Path) -> None:
    original = EXAMPLES / "valid" / "document-new.edxml"
    signed = tmp_path / "signed.edxml"
    organ = sender(original)
    lienthong(
        "sign",
        "--key", pki_dir / "agencies" / f"{organ}.key",
        "--cert", pki_dir / "agencies" / f"{organ}.pem",
        original, "-o", signed,
    )  # fmt: skip
    tampered = tmp_path / "tampered.edxml"
    tampered.write_bytes(
        signed.read_bytes().replace("Nguyễn Văn An".encode(), "Nguyễn Văn Ba".encode())
    )
    result = lienthong("verify", "--ca", pki_dir / "ca.pem", "--json", signed, tampered)
    assert result.returncode == 1
    verdicts = {Path(r["file"]).name: r for r in json.loads(result.stdout)}
    assert verdicts["signed.edxml"]["admitted"] is True
    assert verdicts["signed.edxml"]["level"] == "strict"
    assert verdicts["tampered.edxml"]["admitted"] is False
    assert verdicts["tampered.edxml"]["code"] == "signature.invalid"


def test_validate_prints_one_line_per_problem_and_fails() -> None:
    bad = EXAMPLES / "invalid" / "contract.format@PromulgationDate--iso-date.edxml"
    result = lienthong("validate", bad)
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"{bad}:33: /edXML/edXMLEnvelope/edXMLHeader/MessageHeader/PromulgationInfo/"
        "PromulgationDate: PromulgationDate is '2026-11-20'; expected yyyy/MM/dd [contract.format]"
    )
    assert "Traceback" not in result.stderr


def test_every_invalid_example_fails_without_a_traceback() -> None:
    invalid = sorted((EXAMPLES / "invalid").glob("*.edxml"))
    result = lienthong("validate", "--json", *invalid)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    reports = json.loads(result.stdout)
    assert [r["valid"] for r in reports] == [False] * len(invalid)


def test_inspect_json_describes_the_package() -> None:
    result = lienthong("inspect", "--json", EXAMPLES / "valid" / "document-update.edxml")
    assert result.returncode == 0, result.stderr
    (report,) = json.loads(result.stdout)
    package = report["inspection"]["package"]
    assert package["sender"]["organ_id"] == "000.00.00.G22"
    assert package["business"]["type"] == 2
    assert package["business"]["receivers_changed"] == [
        {"organ_id": "000.21.31.H53", "added": False},
        {"organ_id": "000.00.00.H41", "added": True},
    ]
    assert report["inspection"]["signature"]["present"] is False


def test_a_broken_directory_file_names_the_key(pki_dir: Path, tmp_path: Path) -> None:
    directory = tmp_path / "directory.toml"
    directory.write_text(
        'version = 1\n[[agency]]\norgan_id = "000.00.00.G22"\nfingerprints = "ab"\n'
    )
    result = lienthong("verify", "--ca", pki_dir / "ca.pem", "--directory", directory, VALID[0])
    assert result.returncode == 2
    assert "agency[0].fingerprints: expected a list" in result.stderr


def test_a_missing_file_is_a_clear_error() -> None:
    result = lienthong("validate", "/nonexistent/package.edxml")
    assert result.returncode == 2
    assert "/nonexistent/package.edxml: cannot read" in result.stderr


HOSTILE = {
    "xxe.edxml": b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><e>&x;</e>',
    "laughs.edxml": b'<!DOCTYPE l [<!ENTITY a "aa"><!ENTITY b "&a;&a;&a;&a;">]><l>&b;</l>',
    "deep.edxml": b"<a>" * 50_000 + b"</a>" * 50_000,
    "binary.edxml": bytes(range(256)) * 8,
    "utf16-bom-garbage.edxml": b"\xff\xfe<\x00x\x00",
}


def test_hostile_files_are_refused_by_code_without_a_traceback(
    pki_dir: Path, tmp_path: Path
) -> None:
    files = []
    for name, data in HOSTILE.items():
        (tmp_path / name).write_bytes(data)
        files.append(tmp_path / name)
    result = lienthong("verify", "--ca", pki_dir / "ca.pem", "--json", *files)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    codes = {Path(r["file"]).name: r["code"] for r in json.loads(result.stdout)}
    assert codes["xxe.edxml"] == "xml.doctype_forbidden"
    assert codes["laughs.edxml"] == "xml.doctype_forbidden"
    assert codes["deep.edxml"] == "xml.malformed"
    assert codes["binary.edxml"] == "xml.malformed"
    inspected = lienthong("inspect", *files)
    assert "Traceback" not in inspected.stderr + inspected.stdout


def test_quarantine_holds_a_package_and_says_so(pki_dir: Path) -> None:
    unsigned = EXAMPLES / "valid" / "document-new.edxml"
    result = lienthong("verify", "--ca", pki_dir / "ca.pem", "--policy", "quarantine", unsigned)
    # an unsigned package is held under that policy, and so is a bad signature
    assert result.returncode == 1
    assert ": quarantined: from 000.00.00.G22" in result.stdout
    assert "held for an operator" in result.stdout
    tampered = unsigned.read_bytes().replace(
        b"</edXML:TraceHeaderList>",
        b"</edXML:TraceHeaderList><Signature xmlns='http://www.w3.org/2000/09/xmldsig#'/>",
    )
    path = pki_dir.parent / "held.edxml"
    path.write_bytes(tampered)
    result = lienthong("verify", "--ca", pki_dir / "ca.pem", "--policy", "quarantine", path)
    assert result.returncode == 1
    assert ": quarantined: from 000.00.00.G22" in result.stdout
    assert "held for an operator" in result.stdout


def test_the_root_signs_a_new_directory_and_another_node_checks_it(tmp_path: Path) -> None:
    topology = load_topology(topology_file(), "-c")
    files = write_tree(tmp_path, topology, "amqp://guest:guest@127.0.0.1:5672/")
    root, province = files["central-c"], files["province-h41-c"]
    source = tmp_path / "pki" / "directory.toml"
    same = lienthong("directory", "sign", "--config", root, source)
    assert same.returncode == 2, same.stdout
    assert "raise its version" in same.stderr
    source.write_text(
        source.read_text(encoding="utf-8").replace("version = 1", "version = 2"), encoding="utf-8"
    )
    signed = lienthong("directory", "sign", "--config", root, source)
    assert signed.returncode == 0, signed.stderr
    assert "directory v2 signed by node central-c, 11 agencies, 5 nodes" in signed.stdout
    assert "takes it and sends it down its links within 2 s" in signed.stdout
    upcoming = root.parent / "directory.json.next"  # the root takes it on its next round
    shown = lienthong("directory", "show", "--config", province, upcoming)
    assert shown.returncode == 0, shown.stderr
    assert "directory v2, signed by central-c" in shown.stdout
    # only the root signs its next directory; a province signing one proves nothing
    not_root = lienthong("directory", "sign", "--config", files["province-h53-c"], source)
    assert not_root.returncode == 2
    assert "does not sign directories" in not_root.stderr
    forged = tmp_path / "forged.json"
    assert (
        lienthong("directory", "sign", "--config", files["province-h53-c"], source, "-o", forged)
    ).returncode == 0
    refused = lienthong("directory", "show", "--config", province, forged)
    assert refused.returncode == 1
    assert "REFUSED [directory.refused]" in refused.stdout
    assert "signed by node province-h53-c, but only central-c signs directories" in refused.stdout


def test_an_operator_tracks_each_copy_of_a_package_at_a_node(tmp_path: Path) -> None:
    files = write_tree(tmp_path, load_topology(topology_file(), "-t"), "amqp://127.0.0.1/")
    node_file = files["province-h53-t"]

    async def prepare() -> None:
        store = SqliteStore(node_file.parent / "store")
        await store.migrate()
        await store.commit_intake(
            intake(
                b"<a/>", message_id="m-7", mailboxes=("000.00.00.H53",), links=("central-t/normal",)
            )
        )
        rows = {r.target: r.id for r in await store.pending_outbox(10)}
        await store.finish_outbox([("000.00.00.H53", "m-7")], [rows["000.00.00.H53"]])
        await store.finish_outbox([], [], [(rows["central-t/normal"], "expired: waited a week")])
        await store.close()

    asyncio.run(prepare())
    shown = lienthong("ops", "track", "--config", node_file, "m-7")
    assert shown.returncode == 0, shown.stderr
    first, *steps = shown.stdout.splitlines()
    assert first.startswith("m-7: edoc from 000.00.00.G22")
    assert "at node province-h53-t" in first
    assert [line.split()[:3] for line in steps] == [
        ["mailbox", "000.00.00.H53", "delivered"],
        ["link", "central-t/normal", "failed"],
    ]
    assert steps[1].endswith(": expired: waited a week")
    missing = lienthong("ops", "track", "--config", node_file, "m-8")
    assert (missing.returncode, missing.stdout.strip()) == (1, "m-8: not at node province-h53-t")


def test_a_store_newer_than_the_code_stops_the_command_and_says_what_to_do(
    tmp_path: Path,
) -> None:
    """After a downgrade: the operator is told both versions and the two ways out."""
    files = write_tree(tmp_path, load_topology(topology_file(), "-n"), "amqp://127.0.0.1/")
    folder = files["province-h53-n"].parent / "store"
    asyncio.run(migrated(folder))
    with sqlite3.connect(folder / "lienthong.db") as db:  # what the newer release left
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS) + 1,))
    refused = lienthong("ops", "dlq", "list", "--config", files["province-h53-n"])
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr == (
        f"lienthong: the SQLite store at {folder} is at schema version {len(MIGRATIONS) + 1}, "
        f"newer than this lienthong knows (version {len(MIGRATIONS)}): run the newer "
        "lienthong, or restore the backup taken before the upgrade\n"
    )


async def migrated(folder: Path) -> None:
    store = SqliteStore(folder)
    await store.migrate()
    await store.close()
