"""The console's sign-in: the same JWT as the API, kept in an HttpOnly cookie, and a CSRF token derived from it."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request
from starlette.responses import Response

from services.api.auth import Principal, TokenVerifier
from services.api.errors import ApiError

COOKIE = "chime_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_PATH = "/ui"


class SignInNeeded(Exception):
    """No session, or its token expired or is not valid: the console sends the browser to its sign-in page."""

    def __init__(self, next_path: str, reason: str | None = None) -> None:
        super().__init__(reason or "sign in")
        self.next_path = next_path
        self.reason = reason

    def location(self) -> str:
        location = f"{_PATH}/login?next={quote(self.next_path, safe='')}"
        return location + (f"&reason={quote(self.reason, safe='')}" if self.reason else "")


class CsrfRejected(Exception):
    """A form or request without the session's CSRF token, or sent from another origin."""


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    token: str
    principal: Principal

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)


def csrf_token(token: str) -> str:
    """Keyed by the session's own token: a page on another site can read neither, so it cannot forge this.
    Nothing is stored server-side, so every API replica accepts it."""
    return hmac.new(token.encode(), b"chime-console-csrf", hashlib.sha256).hexdigest()


def safe_next(value: str | None) -> str:
    """A path inside the console to return to after sign-in; anything else (another host) is the overview."""
    if value and value.startswith(f"{_PATH}/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{_PATH}/"


async def current_session(request: Request) -> ConsoleSession:
    token = request.cookies.get(COOKIE)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not token:
        raise SignInNeeded(here)
    verifier: TokenVerifier = request.app.state.verifier
    try:
        principal = await verifier.verify(token)
    except ApiError as exc:
        raise SignInNeeded(here, exc.detail) from exc
    return ConsoleSession(token=token, principal=principal)


def check_origin(request: Request) -> None:
    """Where the browser says where a request came from, it must be this origin."""
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise CsrfRejected(f"a request from {origin} is not accepted")


def check_csrf(request: Request, session: ConsoleSession, submitted: str | None) -> None:
    """Every state-changing request carries the token and comes from this origin. SameSite=Strict on the cookie
    is the first line; this is the second."""
    if not submitted or not hmac.compare_digest(submitted, session.csrf):
        raise CsrfRejected("the form's CSRF token is missing or wrong; reload the page and try again")
    check_origin(request)


def set_session_cookie(response: Response, request: Request, token: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=max(1, max_age),
        path=_PATH,
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="strict",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=_PATH)
