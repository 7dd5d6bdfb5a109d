"""Sign-in (paste a token, or OpenID Connect when configured) and sign-out."""

from __future__ import annotations

import json
import time
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from services.api.auth import TokenVerifier
from services.api.console.oidc import Attempt, OidcClient, OidcError
from services.api.console.pages import ConsolePage, redirect, render_template
from services.api.console.session import (
    check_origin,
    clear_session_cookie,
    safe_next,
    set_session_cookie,
)
from services.api.errors import ApiError

router = APIRouter(prefix="/ui", include_in_schema=False)

_OIDC_COOKIE = "chime_oidc"
_OIDC_COOKIE_PATH = "/ui/login"
_OIDC_ATTEMPT_S = 600


def _oidc(request: Request) -> OidcClient | None:
    client: OidcClient | None = request.app.state.console_oidc
    return client


def _login_page(request: Request, *, next_path: str, error: str | None, status_code: int = 200) -> Response:
    context = {
        "next": next_path,
        "error": error,
        "oidc": _oidc(request) is not None,
        "session": None,
        "title": "Sign in",
    }
    return render_template(request, "login.html", context, status_code)


async def _signed_in(request: Request, token: str, response: Response) -> Response:
    """``response`` with the session cookie, once the API's own verifier accepts ``token`` (else ApiError)."""
    verifier: TokenVerifier = request.app.state.verifier
    principal = await verifier.verify(token)
    set_session_cookie(response, request, token, int(principal.expires_at - time.time()))
    return response


@router.get("/login")
async def login_form(
    request: Request,
    next_path: Annotated[str | None, Query(alias="next")] = None,
    reason: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    error = f"Your session ended: {reason}" if reason else None
    return _login_page(request, next_path=safe_next(next_path), error=error)


@router.post("/login")
async def login(
    request: Request,
    token: Annotated[str, Form(max_length=16_384)] = "",
    next_path: Annotated[str, Form(alias="next", max_length=2_000)] = "/ui/",
) -> Response:
    # Sign-in has no session yet to key a CSRF token on; a browser's Origin header tells a cross-site post.
    check_origin(request)
    token = token.strip().removeprefix("Bearer ").strip()
    target = safe_next(next_path)
    if not token:
        return _login_page(request, next_path=target, error="Paste a token to sign in.", status_code=400)
    try:
        return await _signed_in(request, token, redirect(target, "signed-in"))
    except ApiError as exc:
        return _login_page(
            request, next_path=target, error=f"This token is not accepted: {exc.detail}", status_code=401
        )


@router.post("/logout")
async def logout(page: ConsolePage) -> Response:
    await page.form()
    response = redirect("/ui/login")
    clear_session_cookie(response)
    return response


def _callback_uri(request: Request) -> str:
    return str(request.url_for("oidc_callback"))


@router.get("/login/oidc")
async def oidc_start(request: Request, next_path: Annotated[str | None, Query(alias="next")] = None) -> Response:
    client = _oidc(request)
    if client is None:
        return _login_page(request, next_path=safe_next(next_path), error="OIDC is not configured.", status_code=404)
    attempt = Attempt.new(safe_next(next_path))
    try:
        location = await client.authorization_url(attempt, _callback_uri(request))
    except OidcError as exc:
        return _login_page(request, next_path=attempt.next_path, error=str(exc), status_code=502)
    response = RedirectResponse(location, status_code=303)
    # Lax, not Strict: the provider sends the browser back with a top-level GET from its own site.
    response.set_cookie(
        _OIDC_COOKIE,
        json.dumps({"state": attempt.state, "verifier": attempt.verifier, "next": attempt.next_path}),
        max_age=_OIDC_ATTEMPT_S,
        path=_OIDC_COOKIE_PATH,
        httponly=True,
        secure=request.url.scheme == "https",
        samesite="lax",
    )
    return response


@router.get("/login/callback", name="oidc_callback")
async def oidc_callback(
    request: Request,
    code: Annotated[str | None, Query(max_length=4_096)] = None,
    state: Annotated[str | None, Query(max_length=512)] = None,
    error: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    client = _oidc(request)
    try:
        saved = json.loads(request.cookies.get(_OIDC_COOKIE) or "{}")
        attempt = Attempt(state=saved["state"], verifier=saved["verifier"], next_path=safe_next(saved.get("next")))
    except (ValueError, KeyError, TypeError):
        attempt = None
    if client is None or attempt is None or not state or state != attempt.state:
        return _login_page(request, next_path="/ui/", error="This sign-in link is stale; start again.", status_code=400)
    if error or not code:
        message = f"The provider did not sign you in: {error or 'no code'}"
        return _login_page(request, next_path=attempt.next_path, error=message, status_code=401)
    try:
        token = await client.exchange(code, attempt, _callback_uri(request))
        # The session cookie is SameSite=Strict, and a redirect chain that began on the provider's site would not
        # send it: a page of ours moves the browser on instead, so the next request is same-site.
        page = render_template(
            request, "continue.html", {"next": attempt.next_path, "session": None, "title": "Signed in"}
        )
        response = await _signed_in(request, token, page)
    except OidcError as exc:
        return _login_page(request, next_path=attempt.next_path, error=str(exc), status_code=502)
    except ApiError as exc:
        message = f"The provider's token is not accepted by the API: {exc.detail}"
        return _login_page(request, next_path=attempt.next_path, error=message, status_code=401)
    response.delete_cookie(_OIDC_COOKIE, path=_OIDC_COOKIE_PATH)
    return response


@router.get("")
async def console_root() -> Response:
    return redirect("/ui/")
