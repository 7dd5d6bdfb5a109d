"""What every console page needs: the session, the API on the user's behalf, and rendering."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from services.api.console.client import ApiProblem, ApiResult, ConsoleApi
from services.api.console.forms import FormErrors
from services.api.console.session import CSRF_FIELD, ConsoleSession, check_csrf, current_session
from shared.version import chime_version

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

# What a page says after an action redirected to it (``?done=paused``): fixed texts, so a link cannot make the
# console display words of someone else's choosing.
NOTICES = {
    "created": "Created.",
    "saved": "Saved.",
    "deleted": "Deleted.",
    "paused": "Paused.",
    "resumed": "Resumed.",
    "run-now": "Run requested; it appears in the runs below within seconds.",
    "replayed": "Replay requested.",
    "bulk": "Bulk change applied.",
    "bulk-replay": "Bulk replay requested.",
    "rotated": "A new signing key was added; the previous one keeps signing until its expiry.",
    "signed-in": "Signed in.",
    "none-selected": "Select at least one schedule first.",
}


def render_template(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.console_templates
    response: HTMLResponse = templates.TemplateResponse(request, template, context, status_code=status_code)
    return response


def build_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    templates.env.globals["chime_version"] = chime_version()
    templates.env.globals["csrf_field"] = CSRF_FIELD
    templates.env.filters["instant"] = instant
    templates.env.filters["run_lag"] = run_lag
    templates.env.globals["next_page"] = next_page
    return templates


def next_page(request: Request, cursor: str) -> str:
    """This list with the same filters, from ``cursor`` on."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("cursor", "done", "changed", "count")]
    return f"{request.url.path}?{urlencode([*kept, ('cursor', cursor)])}"


def _parse(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def instant(value: str | None) -> str:
    """An API instant as people read it: ``2026-11-28 09:00:00.123 UTC``."""
    parsed = _parse(value) if value else None
    if parsed is None:
        return value or "–"
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def run_lag(run: dict[str, Any]) -> str:
    """How late the run's first attempt started after its nominal time (jitter included)."""
    attempts = run.get("attempts") or []
    started = _parse(attempts[0].get("started_at") or "") if attempts else None
    nominal = _parse(run.get("scheduled_for") or "")
    if started is None or nominal is None:
        return "–"
    return f"{(started - nominal).total_seconds() * 1000:.0f} ms"


@dataclass(frozen=True, slots=True)
class Refused:
    """A form the API did not take: the status to answer with, and each field's message."""

    status: int
    errors: dict[str, str]


def if_match(form: dict[str, Any]) -> dict[str, str]:
    """The version the edit form was loaded at: a change made elsewhere meanwhile is a 412, not overwritten."""
    return {"If-Match": f'"{form.get("version", "")}"'}


@dataclass(frozen=True, slots=True)
class Page:
    request: Request
    session: ConsoleSession

    @property
    def api(self) -> ConsoleApi:
        api: ConsoleApi = self.request.app.state.console_api
        return api

    async def get(self, path: str, params: Any = None) -> Any:
        return (await self.api.call(self.session.token, "GET", path, params=params)).body

    async def send(
        self, method: str, path: str, *, json: Any = None, params: Any = None, headers: dict[str, str] | None = None
    ) -> ApiResult:
        return await self.api.call(self.session.token, method, path, json=json, params=params, headers=headers)

    async def submit(
        self,
        method: str,
        path: str,
        form: dict[str, Any],
        to_body: Callable[[dict[str, Any]], dict[str, Any]],
        headers: dict[str, str] | None = None,
    ) -> ApiResult | Refused:
        """Send a form to the API. What the form itself cannot read, a 422 and a 412 come back as :class:`Refused`
        for the form to show again; any other problem is raised."""
        try:
            return await self.send(method, path, json=to_body(form), headers=headers)
        except FormErrors as exc:
            return Refused(422, exc.errors)
        except ApiProblem as exc:
            if exc.status == 412:
                return Refused(412, {"": "This was changed meanwhile; reload the page to edit the current version."})
            if exc.status != 422:
                raise
            return Refused(422, exc.field_errors())

    async def act(self, method: str, path: str, then: str, done: str) -> RedirectResponse:
        """A button: the form's CSRF check, one API call, then ``then`` with the notice ``done``."""
        await self.form()
        await self.send(method, path)
        return redirect(then, done)

    async def form(self) -> dict[str, Any]:
        """The submitted form, after its CSRF check; repeated names (checkboxes) come as lists."""
        data = await self.request.form()
        check_csrf(self.request, self.session, _text(data.get(CSRF_FIELD)))
        fields: dict[str, Any] = {}
        for key in data:
            values = [v for v in data.getlist(key) if isinstance(v, str)]
            fields[key] = values if len(values) > 1 else (values[0] if values else "")
        return fields

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        done = self.request.query_params.get("done")
        context.setdefault("notice", NOTICES.get(done or ""))
        context.update(session=self.session, principal=self.session.principal, csrf=self.session.csrf)
        return render_template(self.request, template, context, status_code)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def redirect(path: str, done: str | None = None, **params: str) -> RedirectResponse:
    query = {**params, **({"done": done} if done else {})}
    return RedirectResponse(path + (f"?{urlencode(query)}" if query else ""), status_code=303)


async def console_page(request: Request) -> Page:
    return Page(request=request, session=await current_session(request))


ConsolePage = Annotated[Page, Depends(console_page)]
