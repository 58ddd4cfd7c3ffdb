"""The ``lienthong`` command: the composition root for people at a terminal.

Exit codes: 0 all good; 1 at least one package refused, invalid or held (quarantined);
2 the command itself was used wrongly, a file could not be read, or its configuration is
broken (a message says which file and key).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from adapters import (
    cli_directory,
    cli_evidence,
    cli_node,
    cli_receipt,
    config_reference,
    pki_files,
    provision,
    render,
)
from adapters.pades_pyhanko import pdf_check_for
from exchange.admission import Admission, admit
from exchange.directory import Binder, SubjectBinding
from exchange.errors import ConfigurationError, LienthongError, SenderFault
from exchange.inspection import inspect_package
from exchange.model import Level
from exchange.policy import PRESETS, policy_named
from exchange.signing import SigningKey, sign
from exchange.trust import TrustStore
from exchange.validation import validate
from exchange.xmlsafe import INLINE_CAP_BYTES, ParseLimits

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror}") from exc


def _limits(args: argparse.Namespace) -> ParseLimits:
    return ParseLimits(max_bytes=args.max_bytes)


def cmd_validate(args: argparse.Namespace) -> int:
    results = []
    failed = False
    for path in args.files:
        report = validate(_read(path), strict=args.strict, parse_limits=_limits(args))
        failed |= not report.ok
        if args.json:
            results.append(
                {"file": path, "valid": report.ok, "kind": report.kind, "problems": report.problems}
            )
        else:
            for problem in report.problems:
                print(render.problem_line(path, problem))
    if args.json:
        print(render.to_json(results))
    elif not failed:
        print(f"{len(args.files)} file(s) valid")
    return EXIT_REFUSED if failed else EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    key = SigningKey.from_pem(_read(args.key), _read(args.cert))
    signed = sign(_read(args.input), key, _limits(args))
    if args.output and args.output != "-":
        Path(args.output).write_bytes(signed)
    else:
        sys.stdout.buffer.write(signed)
    return EXIT_OK


def _trust(args: argparse.Namespace) -> tuple[TrustStore, Binder]:
    trust = TrustStore.from_pem(_read(args.ca), tuple(_read(p) for p in args.crl or ()))
    binder: Binder = (
        pki_files.load_directory(args.directory) if args.directory else SubjectBinding()
    )
    return trust, binder


def cmd_verify(args: argparse.Namespace) -> int:
    trust, binder = _trust(args)
    ctx = Admission(
        trust=trust,
        binder=binder,
        parse_limits=_limits(args),
        pdf_check=pdf_check_for(trust.roots),
    )
    policy = policy_named(args.policy)
    results = []
    failed = False
    for path in args.files:
        data = _read(path)
        try:
            admitted = admit(data, policy, ctx)
        except SenderFault as exc:
            failed = True
            results.append(
                {"file": path, "admitted": False, "code": exc.code, "error": exc.message}
            )
            if not args.json:
                print(f"{path}: refused [{exc.code}] {exc.message}")
                for problem in getattr(exc, "problems", ()):
                    print("  " + render.problem_line(path, problem))
            continue
        package = admitted.package
        held = package.level is Level.QUARANTINED
        failed |= held
        results.append(
            {"file": path, "admitted": not held, "level": package.level, "package": package}
        )
        if not args.json:
            signer = package.signer
            who = (
                f"signed by {signer.subject}, bound by {signer.bound_by}" if signer else "no signer"
            )
            print(f"{path}: {package.level.value}: from {package.sender.organ_id}, {who}")
            for note in package.notes:
                print(f"  note: {note}")
            for sig in package.pdf_signatures:
                print(f"  {render.pdf_signature_line(sig)}")
    if args.json:
        print(render.to_json(results))
    return EXIT_REFUSED if failed else EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    trust, binder = _trust(args) if args.ca else (None, None)
    policy = policy_named(args.policy)
    reports = []
    for path in args.files:
        data = _read(path)
        try:
            report = inspect_package(
                data,
                policy=policy,
                trust=trust,
                binder=binder,
                when=datetime.now(UTC),
                limits=_limits(args),
            )
        except LienthongError as exc:
            print(f"{path}: cannot be read [{exc.code}] {exc.message}")
            reports.append({"file": path, "error": exc.code, "message": exc.message})
            continue
        if args.json:
            reports.append({"file": path, "inspection": report})
        else:
            print(render.inspection_text(path, report))
            print()
    if args.json:
        print(render.to_json(reports))
    return EXIT_OK if all("error" not in r for r in reports) else EXIT_REFUSED


def cmd_certs_init(args: argparse.Namespace) -> int:
    written = pki_files.init_pki(
        Path(args.dir), args.agency, args.node or [], key_type=args.key_type
    )
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"{args.dir}: nothing to do, every certificate exists")
    return EXIT_OK


def cmd_certs_tls(args: argparse.Namespace) -> int:
    written = pki_files.init_tls(
        Path(args.dir), args.node, names=tuple(args.name or ()), addresses=tuple(args.ip or ())
    )
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"{args.dir}: nothing to do, every certificate exists")
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace) -> int:
    if args.write_only:
        return _sandbox_write_only(args)
    from adapters import sandbox

    links = dict(item.split("=", 1) for item in args.parent_url or [] if "=" in item)
    if len(links) != len(args.parent_url or []):
        raise ConfigurationError("--parent-url is NODE=AMQP_URL")
    return sandbox.run(Path(args.dir), once=args.once, suffix=args.suffix, parent_urls=links)


def _sandbox_write_only(args: argparse.Namespace) -> int:
    """The tree's files for containers, checked; nothing started (docs/containers.md)."""
    from adapters.sandbox_containers import write_for_containers
    from adapters.sandbox_tree import load_topology, topology_file

    if args.once or args.parent_url:
        raise ConfigurationError(
            "--write-only starts nothing: --once and --parent-url do not apply"
        )
    folder = Path(args.dir)
    topology = load_topology(topology_file(), args.suffix)
    files = write_for_containers(folder, topology, Path(args.write_only))
    for node_id, path in files.items():
        print(f"node {node_id}: {path}")
    print(f"sandbox: {len(files)} node files, the PKI and the signed directory in {folder}")
    return EXIT_OK


def _add_trust_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "--ca", required=required, help="PEM bundle of the CAs to trust (never the system store)"
    )
    p.add_argument("--crl", action="append", help="a CRL (PEM or DER); may repeat")
    p.add_argument(
        "--directory", help="agency directory (TOML); without it, dev binding by subject CN"
    )
    p.add_argument(
        "--policy", default="strict", choices=sorted(PRESETS), help="verification policy"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lienthong", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=INLINE_CAP_BYTES,
        help="size cap for one package (default 8 MiB)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "validate", help="check packages against the contract (XSD + rules + attachments)"
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--strict", action="store_true", help="also require the exact layout lienthong emits"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("sign", help="sign a package (enveloped XML-DSig, exclusive c14n, SHA-256)")
    p.add_argument("--key", required=True, help="PEM private key (RSA or ECDSA)")
    p.add_argument("--cert", required=True, help="PEM certificate (then any intermediates)")
    p.add_argument("input", metavar="IN")
    p.add_argument("-o", "--output", metavar="OUT")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("verify", help="admit packages: contract, signature, signer = sender")
    p.add_argument("files", nargs="+", metavar="FILE")
    _add_trust_options(p, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("inspect", help="a human summary of any edXML file, real traffic included")
    p.add_argument("files", nargs="+", metavar="FILE")
    _add_trust_options(p, required=False)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    certs = sub.add_parser("certs", help="development PKI").add_subparsers(
        dest="certs_command", required=True
    )
    p = certs.add_parser(
        "init", help="create a dev CA, agency and node certificates, and a directory"
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--agency", action="append", required=True, metavar="ORGANID")
    p.add_argument("--node", action="append", metavar="NODEID")
    p.add_argument("--key-type", choices=("rsa", "ec"), default="rsa")
    p.set_defaults(func=cmd_certs_init)
    p = certs.add_parser(
        "tls", help="a dev TLS CA and a certificate per node, for AMQPS and HTTPS (docs/tls.md)"
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--node", action="append", required=True, metavar="NODEID")
    p.add_argument("--name", action="append", metavar="DNSNAME", help="also valid for this name")
    p.add_argument("--ip", action="append", metavar="ADDRESS", help="also valid for this address")
    p.set_defaults(func=cmd_certs_tls)

    cli_node.add_commands(sub)
    cli_directory.add_commands(sub)
    cli_evidence.add_commands(sub)
    cli_receipt.add_commands(sub)
    provision.add_commands(sub)
    config_reference.add_commands(sub)

    p = sub.add_parser("sandbox", help="a development playground on this machine")
    p.add_argument("--dir", default=".sandbox", help="where the sandbox keeps its files")
    p.add_argument("--once", action="store_true", help="stop the tree after the first delivery")
    p.add_argument("--suffix", default="", help=argparse.SUPPRESS)  # node ids of a test's own
    p.add_argument(
        "--parent-url",
        action="append",
        metavar="NODE=AMQP_URL",
        help="open NODE's link to its parent through this URL (a proxy: to watch a link break)",
    )
    p.add_argument(
        "--write-only",
        metavar="FOLDER",
        help="start nothing: write the PKI, the signed directory and the node files into "
        "--dir, each completed from FOLDER/<node id>.toml (containers: docs/containers.md)",
    )
    p.set_defaults(func=cmd_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigurationError as exc:
        print(f"lienthong: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except LienthongError as exc:
        print(f"lienthong: refused [{exc.code}] {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    return code


if __name__ == "__main__":
    raise SystemExit(main())
