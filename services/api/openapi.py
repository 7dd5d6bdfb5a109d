"""The published contract (``/openapi.json``, committed as ``docs/openapi.json``).

FastAPI describes the happy path; this module adds what a client generator needs to handle the rest: a bearer
security scheme with each operation's scope, stable camelCase operation ids, and every error the API answers as
``application/problem+json`` with one ``Problem`` schema (``ValidationProblem`` adds ``errors[]`` for 422).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.routing import BaseRoute

from services.api.auth import SCOPE_ATTRIBUTE
from services.api.problems import PROBLEM_JSON

SCHEME = "bearerAuth"
COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


class FieldError(BaseModel):
    field: str = Field(description="The offending field, dotted (`payload.url`), or `body`")
    message: str
    type: str | None = Field(default=None, description="A machine-readable kind of error")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description="A URI naming the kind of problem", examples=["https://chime.dev/problems/not-found"])
    title: str
    status: int
    detail: str
    instance: str | None = Field(default=None, description="The request path")


class ValidationProblem(Problem):
    errors: list[FieldError]


def operation_id(route: APIRoute) -> str:
    """``create_schedule`` → ``createSchedule``: stable as long as the handler keeps its name."""
    head, *rest = route.name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every documented route, including those of included routers (kept as their own route lists). The console's
    pages are left out: their handlers may share a name with the API operation they call."""
    for route in routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def _scope_of(route: APIRoute) -> str | None:
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        scope = getattr(dependency.call, SCOPE_ATTRIBUTE, None)
        if scope is not None:
            return str(scope)
        pending.extend(dependency.dependencies)
    return None


def _problem(description: str, schema: str = "Problem", headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}


def _errors(method: str, path: str, operation: dict[str, Any], secured: bool) -> dict[str, Any]:
    """The problem responses an operation can answer, from what it takes."""
    errors: dict[str, Any] = {}
    if secured:
        errors["401"] = _problem("Missing, invalid or expired bearer token")
        errors["403"] = _problem("The token lacks the scope this operation needs")
    if "{" in path:
        errors["404"] = _problem("No such resource for this tenant (another tenant's answers the same)")
    takes_version = any(p.get("name") == "If-Match" for p in operation.get("parameters", []))
    if takes_version or ("{" in path and path.endswith(("/pause", "/resume", "/replay"))):
        errors["409"] = _problem("The resource is not in a state this operation applies to")
    if takes_version or (method == "delete" and path.startswith("/api/schedules/")):
        errors["412"] = _problem("`If-Match` does not name the current version")
    if "requestBody" in operation:
        errors["413"] = _problem("The request body is over 256 KiB")
    if operation.get("parameters") or "requestBody" in operation:
        errors["422"] = _problem("The request is not valid; `errors` names each field", "ValidationProblem")
    if secured:
        errors["429"] = _problem("Over the tenant's request rate, quota or fire rate", headers=_RETRY_AFTER)
        errors["503"] = _problem("The database is not reachable; try again", headers=_RETRY_AFTER)
    return errors


def build(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (FieldError, Problem, ValidationProblem):
        schemas[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    components["securitySchemes"] = {
        SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A JWT with `sub`, `tenant` and `exp` claims; `scope` lists the scopes it grants.",
        }
    }
    scopes = {operation_id(route): _scope_of(route) for route in _api_routes(app.routes)}
    for path, methods in spec.get("paths", {}).items():
        for method, operation in methods.items():
            scope = scopes[operation["operationId"]]
            secured = scope is not None
            if secured:
                operation["security"] = [{SCHEME: []}]
                note = f"Requires the `{scope}` scope (or `admin`)."
                described = operation.get("description")
                operation["description"] = f"{described}\n\n{note}" if described else note
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses.update(_errors(method, path, operation, secured))
            if path == "/health/detailed":
                ok = responses["200"]["content"]["application/json"]
                responses["503"] = {"description": "A dependency is down", "content": {"application/json": ok}}
    return spec


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render(app: FastAPI) -> str:
    """The document as committed: sorted keys, two-space indent, a final newline."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
