"""Users of the standalone parcel API, kept as the JRC server keeps them.

The JRC RESTful API's users file (ec-jrc/cbm ``api/scripts/users.py``) holds per user a
PBKDF2-HMAC-SHA256 key (100,000 iterations, 32-byte random salt, 32-byte key) and the AOIs
the user may read (``admin``: all)::

    {"ana": {"salt": "\\x8f\\x12...", "key": "\\xa1...", "aois": ["demo_flanders"]}}

``salt`` and ``key`` are the inside of Python's ``bytes`` repr (``str(b)[2:-1]``), as the
JRC's ``users.py add`` writes them; such a file is read unchanged, and ``cbm api-user add``
writes the same format. The environment variable ``CBM_API_USERS`` may hold the same
record as ``user:pbkdf2_sha256$<iterations>$<salt hex>$<key hex>`` (``cbm api-user hash``
prints it), or a plain ``user:password`` (percent-encoded), hashed when read.

Passwords are checked with :func:`hmac.compare_digest`. PBKDF2 costs about 0.1 s by design,
so a successful check is remembered for :data:`VERIFIED_TTL_S` as an HMAC of the password
under a per-process random key (never the password itself).
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from .errors import ConfigError

ITERATIONS = 100_000          # the JRC's users.py
SALT_BYTES = 32
HASH_PREFIX = "pbkdf2_sha256$"
VERIFIED_TTL_S = 300.0
ALL_AOIS = "admin"            # the JRC's marker for "every AOI"


def pbkdf2(password: str, salt: bytes, iterations: int = ITERATIONS) -> bytes:
    """PBKDF2-HMAC-SHA256 of a password (UTF-8), 32 bytes (RFC 8018, :func:`hashlib.pbkdf2_hmac`)."""
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)


def bytes_repr(b: bytes) -> str:
    """The JRC's text form of a salt or key: the inside of ``repr(b)``."""
    return repr(bytes(b))[2:-1]


def bytes_from_repr(s: str) -> bytes:
    """Inverse of :func:`bytes_repr` (the JRC's ``users.py`` decoding)."""
    return codecs.encode(s.encode().decode("unicode_escape"), "raw_unicode_escape")


_PROCESS_KEY = secrets.token_bytes(32)


@dataclass
class User:
    """One API user.

    Attributes
    ----------
    name : str
        Lower case (the JRC compares names case-insensitively).
    salt, key : bytes
        PBKDF2 salt and derived key.
    aois : tuple of str
        AOIs the user may read; ``("admin",)``: all.
    iterations : int
    """

    name: str
    salt: bytes
    key: bytes
    aois: tuple[str, ...] = (ALL_AOIS,)
    iterations: int = ITERATIONS
    _verified: tuple[float, bytes] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def verify(self, password: str) -> bool:
        """Whether ``password`` is the user's (constant-time comparison)."""
        mark = hmac.new(_PROCESS_KEY, password.encode("utf-8"), hashlib.sha256).digest()
        with self._lock:
            seen = self._verified
        if seen is not None and seen[0] > time.monotonic() and hmac.compare_digest(seen[1], mark):
            return True
        ok = hmac.compare_digest(pbkdf2(password, self.salt, self.iterations), self.key)
        if ok:
            with self._lock:
                self._verified = (time.monotonic() + VERIFIED_TTL_S, mark)
        return ok

    def may_read(self, aoi: str) -> bool:
        """Whether the user may read AOI ``aoi`` (listed, or ``admin``)."""
        return ALL_AOIS in self.aois or aoi in self.aois

    @property
    def readable(self) -> frozenset[str] | None:
        """The AOIs the user may read, None for all."""
        return None if ALL_AOIS in self.aois else frozenset(self.aois)

    def env_record(self) -> str:
        """``name:pbkdf2_sha256$<iterations>$<salt hex>$<key hex>`` for ``CBM_API_USERS``."""
        return f"{self.name}:{HASH_PREFIX}{self.iterations}${self.salt.hex()}${self.key.hex()}"


def new_user(name: str, password: str, aois: tuple[str, ...] = (ALL_AOIS,)) -> User:
    """A user with a fresh random salt.

    Raises
    ------
    ConfigError
        Empty name or password, or a name with ``:`` or ``,`` (separators of ``CBM_API_USERS``).
    """
    if not name or any(c in name for c in ":,") or not password:
        raise ConfigError("a user needs a name without ':' or ',' and a non-empty password")
    salt = secrets.token_bytes(SALT_BYTES)
    return User(name.lower(), salt, pbkdf2(password, salt), tuple(aois) or (ALL_AOIS,))


def load_users_file(path: str | Path) -> dict[str, User]:
    """Users of a JRC-format users file.

    Raises
    ------
    ConfigError
        Unreadable file, not a JSON object of users, or a user without ``salt``/``key``.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"users file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"users file {path}: expected a JSON object of users")
    users = {}
    for name, rec in data.items():
        try:
            aois = rec.get("aois") or [ALL_AOIS]
            users[name.lower()] = User(name.lower(), bytes_from_repr(rec["salt"]), bytes_from_repr(rec["key"]),
                                       tuple(str(a).lower() for a in aois), int(rec.get("iterations", ITERATIONS)))
        except (AttributeError, KeyError, TypeError, ValueError, UnicodeError) as exc:
            raise ConfigError(f"users file {path}: user {name!r}: {type(exc).__name__} {exc}") from None
    return users


def save_user(path: str | Path, user: User) -> None:
    """Add or replace ``user`` in a JRC-format users file (created with mode 600; atomic)."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    rec: dict[str, Any] = {"salt": bytes_repr(user.salt), "key": bytes_repr(user.key), "aois": list(user.aois)}
    if user.iterations != ITERATIONS:
        rec["iterations"] = user.iterations
    data[user.name] = rec
    fd, tmp = tempfile.mkstemp(prefix=".users-", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def parse_env_users(text: str) -> dict[str, User]:
    """Users of ``CBM_API_USERS``: comma-separated ``user:password`` (percent-encoded) or
    ``user:pbkdf2_sha256$<iterations>$<salt hex>$<key hex>``; every AOI readable.

    Raises
    ------
    ConfigError
        An entry that is neither.
    """
    users = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, secret = item.strip().partition(":")
        name = unquote(name).lower()
        if not sep or not name or not secret:
            raise ConfigError("CBM_API_USERS: expected comma-separated user:password entries")
        if secret.startswith(HASH_PREFIX):
            try:
                rounds, salt, key = secret[len(HASH_PREFIX):].split("$")
                users[name] = User(name, bytes.fromhex(salt), bytes.fromhex(key), iterations=int(rounds))
            except ValueError:
                raise ConfigError(f"CBM_API_USERS: user {name!r}: expected "
                                  f"{HASH_PREFIX}<iterations>$<salt hex>$<key hex>") from None
        else:
            users[name] = new_user(name, unquote(secret))
    return users
