"""The console at ``/ui``: server-rendered pages over the REST API, signed in with the same JWT."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from services.api.console import auth_routes, dlq_routes, overview_routes, schedule_routes, settings_routes
from services.api.console.client import ApiProblem, ConsoleApi
from services.api.console.headers import ConsoleHeaders
from services.api.console.oidc import OidcClient
from services.api.console.pages import STATIC_DIR, build_templates, render_template
from services.api.console.session import CsrfRejected, SignInNeeded
from shared.settings import Settings


def install(app: FastAPI, settings: Settings) -> ConsoleApi:
    """Routes, static files, headers and error pages; returns the in-process API client for the owner to close."""
    app.state.console_templates = build_templates()
    configured = settings.oidc_issuer and settings.oidc_client_id
    app.state.console_oidc = OidcClient(settings) if configured else None
    api = ConsoleApi(app)
    app.state.console_api = api
    app.add_middleware(ConsoleHeaders)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    for module in (auth_routes, overview_routes, schedule_routes, dlq_routes, settings_routes):
        app.include_router(module.router)

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        if request.headers.get("x-requested-with") == "fetch":
            return HTMLResponse("Signed out: sign in again.", status_code=401)
        if request.method != "GET":
            # What the form would have done is not repeated after sign-in: back to the overview instead.
            exc = SignInNeeded("/ui/", exc.reason)
        return RedirectResponse(exc.location(), status_code=303)

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, exc: CsrfRejected) -> Response:
        return _error_page(request, 403, "Request refused", str(exc))

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, exc: ApiProblem) -> Response:
        titles = {403: "Not allowed", 404: "Not found", 429: "Too many requests"}
        return _error_page(request, exc.status, titles.get(exc.status, "Something went wrong"), exc.detail)

    return api


def _error_page(request: Request, status: int, title: str, detail: str) -> Response:
    context = {"title": title, "detail": detail, "status": status, "session": None}
    return render_template(request, "error.html", context, status)
