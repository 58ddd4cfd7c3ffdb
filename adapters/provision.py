"""``lienthong agencies provision``: a RabbitMQ login for one agency system (or a hosted
system serving many), allowed only what it needs (DESIGN §5):

- write: the node's gate exchange, which leads to the intake and request queues only, and
  never the default exchange (which would reach every queue);
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

_LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def permissions(node_id: str, login: str, push: Sequence[str] = ()) -> tuple[str, str, str]:
    """(configure, write, read) regular expressions for the login at this node; with
    ``push``, it may also read those agencies' own mail queues."""
    own = rf"^lienthong\.reply\.{re.escape(login)}\..*$"
    read = own
    if push:
        queues = "|".join(re.escape(Queues(node_id).mailbox(organ)) for organ in push)
        read = rf"^(lienthong\.reply\.{re.escape(login)}\..*|{queues})$"
    return own, rf"^{re.escape(Queues(node_id).gate)}$", read


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        raise ConfigurationError("rabbitmqctl is not on this host: run this on the broker's host")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)


def provision(
    node_id: str, vhost: str, login: str, password: str, push: Sequence[str] = ()
) -> tuple[bool, tuple[str, str, str]]:
    """Create the login (or set its password) and its permissions; (created, permissions)."""
    if not _LOGIN.fullmatch(login):
        raise ConfigurationError(f"login {login!r}: letters, digits, '.', '_' and '-' only")
    added = _rabbitmqctl("add_user", login, password)
    created = added.returncode == 0
    if not created:
        if "already exists" not in added.stdout + added.stderr:
            raise ConfigurationError(f"rabbitmqctl add_user {login}: {added.stderr.strip()}")
        changed = _rabbitmqctl("change_password", login, password)
        if changed.returncode != 0:
            raise ConfigurationError(f"rabbitmqctl change_password: {changed.stderr.strip()}")
    rules = permissions(node_id, login, push)
    granted = _rabbitmqctl("set_permissions", "-p", vhost, login, *rules)
    if granted.returncode != 0:
        raise ConfigurationError(f"rabbitmqctl set_permissions: {granted.stderr.strip()}")
    return created, rules


def cmd_provision(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    vhost = unquote(urlsplit(config.amqp_url).path.lstrip("/")) or "/"
    target = Path(args.password_file)
    password = secrets.token_urlsafe(24)
    push = args.organ if args.push else []
    created, rules = provision(config.node_id, vhost, args.login, password, push)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(password + "\n")
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
