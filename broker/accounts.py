"""Broker accounts and roles for the embedded broker, read from the same sources as Mosquitto's.

`EDGEHIVE_BROKER_USERS` (`user:password[:role[:id+id…]]`) and the role blocks of `broker/acl`
are the single definition of who may write what; broker/prepare.sh renders them for Mosquitto,
and this module turns them into amqtt plugins: amqtt's own FileAuthPlugin (Argon2 hashes, as it
expects) and a topic plugin enforcing the same per-account write rules.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EdgehiveError

ACL_TEMPLATE = Path(__file__).with_name("acl")
TEMPLATE_PREFIX = "edgehive/v1"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class AccountError(EdgehiveError, ValueError):
    """An EDGEHIVE_BROKER_USERS entry that cannot be an account."""


@dataclass(frozen=True)
class Account:
    name: str
    password: str
    role: str
    ids: tuple[str, ...] = ()


def parse_users(users: str) -> list[Account]:
    """`user:password[:role[:id+id…]]` entries, comma- or space-separated, as broker/prepare.sh reads them."""
    roles = role_rules()
    accounts = []
    for entry in users.replace(",", " ").split():
        name, password, role, ids = [*entry.split(":", 3), "", "", ""][:4]
        if not name or not password:
            raise AccountError(f"EDGEHIVE_BROKER_USERS entry {name!r} is not user:password[:role[:id+id...]]")
        role = role or (name if name in ("coordinator", "sink") else "client")
        for value in (name, *filter(None, ids.split("+"))):
            if not _NAME.fullmatch(value):
                raise AccountError(f"account name {value!r} must be letters, digits, '_', '.' or '-' (it is a topic level)")
        if role not in roles:
            raise AccountError(f"account {name!r} has unknown role {role!r} (roles: {', '.join(roles)})")
        accounts.append(Account(name, password, role, tuple(filter(None, ids.split("+")))))
    return accounts


def role_rules(template: Path = ACL_TEMPLATE) -> dict[str, list[tuple[str, str]]]:
    """Role → (access, topic filter) from broker/acl's `role` blocks; key "" holds the `pattern`
    lines every account gets."""
    rules: dict[str, list[tuple[str, str]]] = {"": []}
    current = ""
    for line in template.read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "role":
            current = words[1]
            rules[current] = []
        elif words[0] in ("topic", "pattern") and len(words) == 3:
            rules[current].append((words[1], words[2]))
    return rules


def filters_for(account: Account, prefix: str, access: str) -> list[str]:
    """The topic filters `account` may use for `access` ("read" or "write")."""
    rules = role_rules()
    out = []
    for granted, pattern in rules[""] + rules[account.role]:
        if granted not in (access, "readwrite"):
            continue
        topic = pattern.replace(f"{TEMPLATE_PREFIX}/", f"{prefix.strip('/')}/")
        out += [topic.replace("%u", who) for who in (account.name, *account.ids)] if "%u" in topic else [topic]
    return out


def listens_beyond_loopback(host: str) -> bool:
    """Whether a listener on `host` can be reached from other machines."""
    if host in ("localhost", "ip6-localhost"):
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True  # "", a host name: assume it is reachable


def filter_allows(allowed: str, topic: str) -> bool:
    """Whether topic (or subscription filter) `topic` lies within the filter `allowed`."""
    want, got = allowed.split("/"), topic.split("/")
    for i, level in enumerate(want):
        if level == "#":
            return True
        if i >= len(got) or (level != "+" and level != got[i]) or (level == "+" and got[i] == "#"):
            return False
    return len(got) == len(want)


def _topic_plugin_class() -> type:
    """Imported lazily, like the broker: only the process that runs it pays for amqtt."""
    from amqtt.contexts import Action
    from amqtt.plugins.base import BaseTopicPlugin

    class RoleTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]  # amqtt has no type information: its classes are Any
        """The same per-account write and read rules as Mosquitto's ACL. A refused publish is
        dropped, as Mosquitto drops it (MQTT 3.1.1 cannot tell the client)."""

        @dataclass
        class Config:
            write: dict[str, list[str]] = field(default_factory=dict)
            read: dict[str, list[str]] = field(default_factory=dict)

        async def topic_filtering(self, *, session: Any = None, topic: str | None = None, action: Any = None) -> bool | None:
            if action == Action.RECEIVE:
                return True  # checked when subscribing
            rules = self.context.config.write if action == Action.PUBLISH else self.context.config.read
            user = getattr(session, "username", None)
            if not topic or user is None:
                return False
            return any(filter_allows(allowed, topic) for allowed in rules.get(user, ()))

    return RoleTopicPlugin


def amqtt_plugins(accounts: list[Account], prefix: str, password_file: Path) -> dict[str, Any]:
    """The amqtt `plugins` section for `accounts`: their Argon2 hashes are written to `password_file`."""
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    hasher = PasswordHash((Argon2Hasher(),))
    password_file.write_text("".join(f"{a.name}:{hasher.hash(a.password)}\n" for a in accounts))
    password_file.chmod(0o600)
    plugin = _topic_plugin_class()
    # amqtt imports plugins by dotted path: register the class where that path finds it.
    globals()["RoleTopicPlugin"] = plugin
    return {
        "amqtt.plugins.authentication.FileAuthPlugin": {"password_file": str(password_file)},
        f"{__name__}.RoleTopicPlugin": {
            "write": {a.name: filters_for(a, prefix, "write") for a in accounts},
            "read": {a.name: filters_for(a, prefix, "read") for a in accounts},
        },
    }
