"""``lienthong agencies provision``: a RabbitMQ login for one agency system (or a hosted
system serving many), allowed only what it needs (DESIGN §5):

- write: its own gate exchange at the node, which leads to its own intake queue and the
  request queue only, and never the default exchange (which would reach every queue); the
  node declares both for every [credentials] login, so the login works once the node
  restarts with it;
- configure and read: its own reply queues, ``lienthong.reply.<login>.*``.

The broker then checks every message's ``user_id`` against the login, and the node maps
the login to the OrganIds it may send as and read for ([credentials.<login>] in the node
file, printed here to be added). It runs ``rabbitmqctl`` on the broker's host, as its
operator would (root or the rabbitmq user).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from adapters.config_files import load_node_config
from exchange.errors import ConfigurationError
from exchange.node import Queues

# no '.': a login's reply-queue pattern must not match another login's ("a" and "a.b")
_LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def permissions(node_id: str, login: str, push: Sequence[str] = ()) -> tuple[str, str, str]:
    """(configure, write, read) regular expressions for the login at this node; with
    ``push``, it may also read those agencies' own mail queues."""
    own = rf"^lienthong\.reply\.{re.escape(login)}\..*$"
    read = own
    if push:
        queues = "|".join(re.escape(Queues(node_id).mailbox(organ)) for organ in push)
        read = rf"^(lienthong\.reply\.{re.escape(login)}\..*|{queues})$"
    # write: its own gate only, so what it sends lands in its own intake queue, which the
    # node takes from in turn with every other login's: a flood waits behind itself
    return own, rf"^{re.escape(Queues(node_id).login_gate(login))}$", read


def link_permissions(parent: str, child: str) -> tuple[str, str, str]:
    """(configure, write, read) for a child's link login on its parent's broker: declare its
    link (the parent's up lanes and gate, its own down lanes), write to the gate, read its
    own down lanes; nothing else of the parent's broker."""
    p, c = re.escape(parent), re.escape(child)
    lanes = "(urgent|normal|large)"
    up, gate = rf"lienthong\.link\.{p}\.up\.{lanes}", rf"lienthong\.link\.{p}\.gate"
    down = rf"lienthong\.link\.{p}\.down\.{c}\.({lanes[1:-1]}|directory)"
    return rf"^({up}|{gate}|{down})$", rf"^({gate}|{up})$", rf"^({gate}|{down})$"


def _rabbitmqctl(*args: str, secret: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run rabbitmqctl; a password goes on its standard input, never on its command line
    (where the process list would show it, and where one starting with '-' is an option)."""
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        raise ConfigurationError("rabbitmqctl is not on this host: run this on the broker's host")
    return subprocess.run(
        [tool, *args],
        input=f"{secret}\n" if secret is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def provision(
    node_id: str, vhost: str, login: str, password: str, push: Sequence[str] = ()
) -> tuple[bool, tuple[str, str, str]]:
    """Create the login (or set its password) and its permissions; (created, permissions)."""
    created = _login(login, password)
    rules = permissions(node_id, login, push)
    return created, _grant(vhost, login, rules)


def provision_link(
    parent: str, vhost: str, child: str, login: str, password: str
) -> tuple[bool, tuple[str, str, str]]:
    """A child's link login on its parent's broker (``lienthong links provision``)."""
    created = _login(login, password)
    return created, _grant(vhost, login, link_permissions(parent, child))


def _login(login: str, password: str) -> bool:
    """Create the login, or give it this password; True when it was created."""
    if not _LOGIN.fullmatch(login):
        raise ConfigurationError(f"login {login!r}: letters, digits, '_' and '-' only")
    added = _rabbitmqctl("add_user", login, secret=password)
    created = added.returncode == 0
    if not created:
        if "already exists" not in added.stdout + added.stderr:
            raise ConfigurationError(f"rabbitmqctl add_user {login}: {added.stderr.strip()}")
        changed = _rabbitmqctl("change_password", login, secret=password)
        if changed.returncode != 0:
            raise ConfigurationError(f"rabbitmqctl change_password: {changed.stderr.strip()}")
    return created


def _grant(vhost: str, login: str, rules: tuple[str, str, str]) -> tuple[str, str, str]:
    granted = _rabbitmqctl("set_permissions", "-p", vhost, login, *rules)
    if granted.returncode != 0:
        raise ConfigurationError(f"rabbitmqctl set_permissions: {granted.stderr.strip()}")
    return rules


def cmd_provision(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    vhost = unquote(urlsplit(config.amqp_url).path.lstrip("/")) or "/"
    target = Path(args.password_file)
    password = secrets.token_urlsafe(24)
    push = args.organ if args.push else []
    created, rules = provision(config.node_id, vhost, args.login, password, push)
    _write_secret(target, password)
    organs = ", ".join(f'"{o}"' for o in args.organ)
    print(
        f"{'created' if created else 'updated'} RabbitMQ login {args.login} on vhost {vhost}; "
        f"its password is in {target} (mode 600)\n"
        f"  configure {rules[0]}\n  write     {rules[1]}\n  read      {rules[2]}\n"
        f"Add to {args.config}, then restart the node:\n\n"
        f'[credentials.{args.login}]\nsource = "{args.source}"\norgans = [{organs}]'
        + (f"\n\n[delivery]\npush = [{organs}]  # and any other push agencies" if push else "")
    )
    return 0


def _write_secret(target: Path, secret: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")


def cmd_provision_link(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)  # the parent's node file
    vhost = unquote(urlsplit(config.amqp_url).path.lstrip("/")) or "/"
    if args.certificate:  # logged in by its certificate's CN (EXTERNAL): no password at all
        login = args.child
        created, rules = provision_link(
            config.node_id, vhost, args.child, login, secrets.token_urlsafe(24)
        )
        cleared = _rabbitmqctl("clear_password", login)
        if cleared.returncode != 0:
            raise ConfigurationError(f"rabbitmqctl clear_password: {cleared.stderr.strip()}")
        where = "it logs in by a certificate whose CN is its node id, and has no password"
        url = "amqps://<this broker>:5671/?auth=external"
    else:
        if not args.password_file:
            raise ConfigurationError("--password-file is needed, or --certificate")
        login = args.login or f"link-{args.child}"
        password = secrets.token_urlsafe(24)
        created, rules = provision_link(config.node_id, vhost, args.child, login, password)
        _write_secret(Path(args.password_file), password)
        where = f"its password is in {args.password_file} (mode 600)"
        url = f"amqp://{login}:<password>@<this broker>:5672/"
    print(
        f"{'created' if created else 'updated'} link login {login} for child {args.child} on "
        f"node {config.node_id}'s broker (vhost {vhost}); {where}\n"
        f"  configure {rules[0]}\n  write     {rules[1]}\n  read      {rules[2]}\n"
        f'In the child\'s node file:\n\n[link]\nparent_url = "{url}"'
        + ("\n\n[link.tls]  # docs/tls.md\nca = …\ncert = …\nkey = …" if args.certificate else "")
    )
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agencies = sub.add_parser("agencies", help="agency systems' logins").add_subparsers(
        dest="agencies_command", required=True
    )
    p = agencies.add_parser("provision", help="a RabbitMQ login for an agency system")
    p.add_argument("--config", required=True, help="the node file")
    p.add_argument("--login", required=True, help="the RabbitMQ login to create or update")
    p.add_argument(
        "--organ",
        required=True,
        action="append",
        metavar="ORGANID",
        help="an agency it may send as and read for (repeat for a hosted system)",
    )
    p.add_argument("--source", default="amqp", help="the policy source its packages take")
    p.add_argument("--password-file", required=True, help="where to write its password")
    p.add_argument(
        "--push",
        action="store_true",
        help="its agencies take their mail pushed to their own queues",
    )
    p.set_defaults(func=cmd_provision)
    links = sub.add_parser("links", help="child nodes' link logins").add_subparsers(
        dest="links_command", required=True
    )
    p = links.add_parser("provision", help="a RabbitMQ login for a child node's link")
    p.add_argument("--config", required=True, help="the parent's node file")
    p.add_argument("--child", required=True, help="the child node's id")
    p.add_argument("--login", help="the login (default: link-<child>)")
    p.add_argument("--password-file", help="where to write its password")
    p.add_argument(
        "--certificate",
        action="store_true",
        help="no password: the child logs in with its TLS certificate (CN = its node id)",
    )
    p.set_defaults(func=cmd_provision_link)
