"""RFC 9457 ``application/problem+json`` for every error the API answers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.errors import ApiError
from shared.errors import InvalidSchedule

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://chime.dev/problems/"


def problem(
    status: int,
    title: str,
    detail: str,
    slug: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def invalid_cursor() -> RequestValidationError:
    """A list call's ``cursor`` that this API did not hand out."""
    return RequestValidationError([{"loc": ("query", "cursor"), "msg": "invalid cursor", "type": "value_error"}])


def validation_problem(errors: list[dict[str, Any]], instance: str) -> JSONResponse:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem(422, "Validation failed", detail, "validation-failed", errors=errors, instance=instance)


def _unreachable(exc: DBAPIError) -> bool:
    """A lost or refused connection, or a server shutting down: worth retrying, not the request's fault."""
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return True
    orig = exc.orig
    cause = getattr(orig, "__cause__", None)
    return (
        isinstance(orig, OSError | TimeoutError)
        or isinstance(cause, OSError | TimeoutError)
        or (type(orig).__name__ in _UNAVAILABLE_ERRORS)
    )


# asyncpg's names for a server that is going away or not accepting connections yet (SQLSTATE 57P01-57P03, 08xxx).
_UNAVAILABLE_ERRORS = frozenset(
    {
        "AdminShutdownError",
        "CannotConnectNowError",
        "CrashShutdownError",
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "ConnectionRejectionError",
        "TooManyConnectionsError",
    }
)


def _unavailable(request: Request) -> JSONResponse:
    return problem(
        503,
        "Service unavailable",
        "the database is not reachable; try again shortly",
        "service-unavailable",
        headers={"Retry-After": "1"},
        instance=request.url.path,
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = err.get("loc", ())
            message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            if err.get("type") == "extra_forbidden":
                message = "unknown field"
            errors.append({"field": _field_path(loc), "message": message, "type": err.get("type")})
        return validation_problem(errors, request.url.path)

    @app.exception_handler(InvalidSchedule)
    async def _invalid_schedule(request: Request, exc: InvalidSchedule) -> JSONResponse:
        return validation_problem(
            [{"field": exc.field, "message": exc.message, "type": "invalid_schedule"}], request.url.path
        )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, exc.slug, headers=exc.headers, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return problem(
            exc.status_code,
            title,
            str(exc.detail),
            title.lower().replace(" ", "-"),
            headers=getattr(exc, "headers", None),
            instance=request.url.path,
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if not _unreachable(exc):
            log.exception("database error on %s %s", request.method, request.url.path)
            return problem(500, "Internal error", "an unexpected error occurred", "internal-error")
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc.orig).__name__)
        return _unavailable(request)

    @app.exception_handler(OSError)
    async def _connection(request: Request, exc: OSError) -> JSONResponse:
        # asyncpg raises the socket's own error when Postgres refuses or drops the connection.
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return _unavailable(request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "Internal error", "an unexpected error occurred", "internal-error")
