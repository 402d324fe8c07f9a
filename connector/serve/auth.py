"""Who may do what: bearer tokens name principals, principals hold roles per topic and dataset.

The tokens file (JSON) stores each token's SHA-256, never the token::

    {"principals": [
        {"name": "ops", "token_sha256": "<64 hex digits>", "admin": true},
        {"name": "etl", "token_sha256": "...", "roles": {"sales-*": "editor", "ref": "reader"}},
        {"name": "lab", "token_sha256": "...", "topics": {"genome": "editor", "ref-*": "member"}}
    ]}

``roles`` maps dataset names or shell patterns (``*``, ``?``, ``[...]``, matched case-sensitively)
to a role; where several patterns match a dataset the highest role counts. Roles, as
DatasetService's (seed 002): a **reader** reads (get, ranges, download, missing ranges); an
**editor** also creates datasets and writes (upload, aggregate); an **owner** also deletes. An
**admin** is owner of every dataset.

A dataset's topic is fixed when it is created (its metadata ``topic_id``; DatasetService's
``topic_id``). ``topics`` maps topic names or patterns to a topic role: a **member** reads the
topic's datasets, an **editor** also creates datasets in it and writes them, an **owner** also
deletes them. ``topics`` is an access boundary: a principal that has it holds no role at all on a
dataset outside its topics (nor on one without a topic), whatever its ``roles`` patterns say; its
``roles`` then only grant more inside its topics. Tokens are random strings (``des serve --new-token`` makes one),
so one SHA-256 is enough to store them: nothing can be guessed from it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from connector.config import check_against, load_json_file
from connector.errors import ConfigError

ROLES = ("reader", "editor", "owner")  # each can do what the ones before it can
TOPIC_ROLES = {"member": "reader", "editor": "editor", "owner": "owner"}  # topic role -> role on its datasets

TOKENS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["principals"],
    "additionalProperties": False,
    "properties": {
        "principals": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "token_sha256"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 200},
                    "token_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "admin": {"type": "boolean"},
                    "roles": {"type": "object", "additionalProperties": {"enum": list(ROLES)}},
                    "topics": {"type": "object", "additionalProperties": {"enum": list(TOPIC_ROLES)}},
                },
            },
        },
    },
}


@dataclass(frozen=True)
class Principal:
    """Someone the server knows, and their roles."""

    name: str
    admin: bool = False
    roles: tuple[tuple[str, str], ...] = ()  # (dataset name or pattern, role)
    topics: tuple[tuple[str, str], ...] | None = None  # (topic or pattern, topic role); None: not confined

    def role_on(self, dataset: str, topic: str | None) -> str | None:
        """The highest role this principal holds on ``dataset`` of ``topic`` (``None``: no access).

        ``topic`` is the dataset's topic (``None``: it has none, or it does not exist yet).
        """
        if self.admin:
            return ROLES[-1]
        held = [ROLES.index(role) for pattern, role in self.roles if fnmatchcase(dataset, pattern)]
        if self.topics is not None:
            in_topics = [ROLES.index(TOPIC_ROLES[role]) for pattern, role in self.topics
                         if topic and fnmatchcase(topic, pattern)]
            if not in_topics:  # the boundary: nothing outside its topics
                return None
            held += in_topics
        return ROLES[max(held)] if held else None

    def may(self, dataset: str, topic: str | None, role: str) -> bool:
        """True if the principal holds ``role`` (or a higher one) on ``dataset`` of ``topic``."""
        held = self.role_on(dataset, topic)
        return held is not None and ROLES.index(held) >= ROLES.index(role)

    def denial(self, dataset: str, topic: str | None, role: str, action: str) -> str:
        """Why the principal may not ``action`` on the dataset (never saying whether it exists)."""
        held = self.role_on(dataset, topic)
        where = f" (topic {topic!r})" if topic and held else ""
        return (f"principal {self.name!r} {'has role ' + held if held else 'has no role'} on dataset "
                f"{dataset!r}{where}; to {action} takes {role}")


def topic_of(metadata: Mapping[str, Any]) -> str | None:
    """The topic a dataset's metadata names (``None``: none)."""
    topic = metadata.get("topic_id")
    return topic if isinstance(topic, str) and topic else None


ANONYMOUS_ADMIN = Principal("anonymous", admin=True)  # every request of a server run with --no-auth


class Tokens:
    """Principals by the SHA-256 of their token."""

    def __init__(self, by_hash: Mapping[str, Principal]) -> None:
        self._by_hash = dict(by_hash)

    @classmethod
    def load(cls, path: str) -> Tokens:
        """The tokens file ``path``; :class:`ConfigError` naming what is wrong in it."""
        raw = load_json_file(path, "tokens")
        try:
            check_against(TOKENS_SCHEMA, raw)
        except ConfigError as exc:
            raise ConfigError(f"tokens file {path}: {exc}") from None
        by_hash: dict[str, Principal] = {}
        names: set[str] = set()
        for entry in raw["principals"]:
            if entry["name"] in names or entry["token_sha256"] in by_hash:
                raise ConfigError(f"tokens file {path}: principal {entry['name']!r} or its token appears twice")
            names.add(entry["name"])
            topics = entry.get("topics")
            by_hash[entry["token_sha256"]] = Principal(entry["name"], bool(entry.get("admin", False)),
                                                       tuple(sorted(entry.get("roles", {}).items())),
                                                       None if topics is None else tuple(sorted(topics.items())))
        return cls(by_hash)

    def principal(self, token: str) -> Principal | None:
        """The principal whose token is ``token``, if any."""
        return self._by_hash.get(token_sha256(token))


def token_sha256(token: str) -> str:
    """What the tokens file stores of ``token``."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh random token (256 bits, URL-safe) and its SHA-256 for the tokens file. It never
    starts with ``-``: ``des --token <token>`` would take one that does for an option."""
    token = secrets.token_urlsafe(32)
    while token.startswith("-"):  # 1 in 64 of them
        token = secrets.token_urlsafe(32)
    return token, token_sha256(token)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (``None`` if absent or another scheme)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
