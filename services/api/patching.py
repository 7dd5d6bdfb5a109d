"""PATCH with a JSON merge patch (RFC 7396): merge over the stored definition, validate, and write it to the
version it was computed from, trying again on a concurrent change unless the client named the version."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from services.api.errors import VersionMismatch

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

_PATCH_RETRIES = 3


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def patched(model: type[M], base: dict[str, Any], patch: dict[str, Any]) -> M:
    """``patch`` merged over ``base``, validated as ``model``; a 422 names the fields as the request body's."""
    try:
        return model.model_validate(merge_patch(base, patch))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from exc


async def with_retries(if_match: str | None, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run ``attempt`` (read, merge, write to the version read); a version that moved meanwhile is a 412 when the
    client sent If-Match, and otherwise a fresh attempt, a few times."""
    for n in range(_PATCH_RETRIES):
        try:
            return await attempt()
        except VersionMismatch:
            if if_match is not None or n == _PATCH_RETRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
