"""Authentication of the standalone parcel API: bearer tokens and HTTP basic users.

* Tokens: ``CBM_API_TOKENS`` (comma-separated), every AOI.
* Users (:mod:`cbm_ops.users`): a JRC-format users file (``CBM_API_USERS_FILE``; PBKDF2
  keys and per-user AOIs, ``admin`` = all, as the JRC RESTful API keeps them) and/or
  ``CBM_API_USERS`` (``user:pbkdf2_sha256$...`` records or ``user:password``; every AOI).

Every comparison is constant-time. A request without valid credentials gets 401 with a
``WWW-Authenticate: Basic`` challenge; a request for an AOI the user may not read gets 403
(the JRC: 401 "Not authorized for this dataset"). The login and the AOIs it may read are
kept in ``request.state.cbm_readable`` (None: all) for the routes without an ``aoi``.
"""

import binascii
import secrets
from base64 import b64decode
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from cbm_ops.users import User, load_users_file, new_user, parse_env_users


def credentials_from_env() -> tuple[list[str], dict[str, User]]:
    """(tokens, users by name) from ``CBM_API_TOKENS``, ``CBM_API_USERS`` and ``CBM_API_USERS_FILE``.

    Raises
    ------
    cbm_ops.errors.ConfigError
        An entry of ``CBM_API_USERS`` that is not ``user:password`` or a hashed record, or an
        unreadable users file.
    """
    import os

    tokens = [t.strip() for t in os.environ.get("CBM_API_TOKENS", "").split(",") if t.strip()]
    users = parse_env_users(os.environ.get("CBM_API_USERS", ""))
    if os.environ.get("CBM_API_USERS_FILE"):
        users = {**load_users_file(os.environ["CBM_API_USERS_FILE"]), **users}
    return tokens, users


def as_users(users: dict[str, str] | dict[str, User] | None) -> dict[str, User]:
    """Users by lower-case name; plain passwords are hashed (PBKDF2) here."""
    return {k.lower(): v if isinstance(v, User) else new_user(k, v) for k, v in (users or {}).items()}


_UNKNOWN: list[User] = []


def _unknown() -> User:
    if not _UNKNOWN:
        _UNKNOWN.append(new_user("unknown", secrets.token_hex(16)))
    return _UNKNOWN[0]


def _aoi_of(request: Request) -> str | None:
    """The AOI a request names (query ``aoi``, lower-cased as the JRC does, or ``/aois/{name}``)."""
    aoi = request.query_params.get("aoi")
    if aoi:
        return aoi.lower()
    parts = request.url.path.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "aois":
        return parts[-1]
    return None


def _unauthorized() -> HTTPException:
    # Basic alone: browsers (the viewer page) show their login dialog only for a challenge they
    # can parse ("Basic realm=..., Bearer" is not one); bearer tokens are still accepted
    return HTTPException(status_code=401, detail="authentication required: a bearer token or HTTP basic login",
                         headers={"WWW-Authenticate": 'Basic realm="cbm"'})


class Basic(HTTPBasic):
    """HTTP basic credentials in UTF-8 (RFC 7617 ``charset="UTF-8"``), else Latin-1 (what
    ``requests``, the ``cbm`` client's library, sends); FastAPI's own decodes ASCII only."""

    async def __call__(self, request: Request) -> HTTPBasicCredentials | None:  # type: ignore[override]
        scheme, _, param = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            raw = b64decode(param, validate=True)
        except (binascii.Error, ValueError):
            raise _unauthorized() from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        username, sep, password = text.partition(":")
        if not sep:
            raise _unauthorized()
        return HTTPBasicCredentials(username=username, password=password)


def standalone_auth(tokens: list[str], users: dict[str, User]):
    """Dependency: a bearer token of ``tokens`` or HTTP basic credentials of ``users`` (else 401),
    and the right to read the AOI the request names (else 403)."""
    basic = Basic(auto_error=False, realm="cbm", description="a user of CBM_API_USERS or CBM_API_USERS_FILE")
    bearer = HTTPBearer(auto_error=False, description="a token of CBM_API_TOKENS")

    def check(request: Request, token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
              login: Annotated[HTTPBasicCredentials | None, Depends(basic)]) -> None:
        readable: frozenset[str] | None = None
        ok = False
        if token is not None:
            ok = any([secrets.compare_digest(token.credentials.encode(), t.encode()) for t in tokens])
        elif login is not None:
            user = users.get(login.username.lower())
            if user is None:            # the same PBKDF2 work: the answer time does not tell which names exist
                _unknown().verify(login.password)
            else:
                ok, readable = user.verify(login.password), user.readable
        if not ok:
            raise _unauthorized()
        request.state.cbm_readable = readable
        aoi = _aoi_of(request)
        if aoi is not None and readable is not None and aoi not in readable:
            raise HTTPException(status_code=403, detail=f"not allowed to read AOI {aoi!r}: "
                                "ask the administrator to add it to your user (CBM_API_USERS_FILE)")

    return check
