"""Authentication of the standalone parcel API: bearer tokens and HTTP basic users.

Tokens and users come from the environment (``CBM_API_TOKENS``, ``CBM_API_USERS``: comma
separated, ``user:password`` percent-encoded) or from the caller; every comparison is
constant-time (:func:`secrets.compare_digest`).
"""

import secrets
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer


def credentials_from_env() -> tuple[list[str], dict[str, str]]:
    """(tokens, {user: password}) from ``CBM_API_TOKENS`` and ``CBM_API_USERS``.

    Raises
    ------
    RuntimeError
        If an entry of ``CBM_API_USERS`` is not ``user:password``.
    """
    import os

    tokens = [t.strip() for t in os.environ.get("CBM_API_TOKENS", "").split(",") if t.strip()]
    users = {}
    for item in os.environ.get("CBM_API_USERS", "").split(","):
        if item.strip():
            user, sep, password = item.strip().partition(":")
            if not sep or not user or not password:
                raise RuntimeError("CBM_API_USERS: expected comma-separated user:password entries")
            users[unquote(user)] = unquote(password)
    return tokens, users


def standalone_auth(tokens: list[str], users: dict[str, str]):
    """Dependency: a bearer token of ``tokens`` or HTTP basic credentials of ``users`` (else 401)."""
    basic = HTTPBasic(auto_error=False, realm="cbm", description="a user of CBM_API_USERS")
    bearer = HTTPBearer(auto_error=False, description="a token of CBM_API_TOKENS")

    def _eq(a: str, b: str) -> bool:
        return secrets.compare_digest(a.encode(), b.encode())

    def check(token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
              login: Annotated[HTTPBasicCredentials | None, Depends(basic)]) -> None:
        ok = False
        if token is not None:
            ok = any([_eq(token.credentials, t) for t in tokens])
        elif login is not None and login.username in users:
            ok = _eq(login.password, users[login.username])
        if not ok:
            raise HTTPException(status_code=401, detail="authentication required: a bearer token or HTTP basic login",
                                # Basic alone: browsers (the viewer page) show their login dialog only for
                                # a challenge they can parse ("Basic realm=..., Bearer" is not one)
                                headers={"WWW-Authenticate": 'Basic realm="cbm"'})

    return check
