"""Form fields to API bodies and back. Inputs are named by the API's field paths (``payload.url``), so a 422's
``field`` lands beside the input it is about; what the form itself cannot read is reported the same way."""

from __future__ import annotations

import json
from typing import Any

from shared.events.calendar import WEEKDAYS
from shared.events.notifications import NotificationType
from shared.events.schedule import BackoffKind, HttpMethod, MisfirePolicy, OverlapPolicy
from shared.schedule import ScheduleType

# The choices each select offers, in the API's own spelling.
CHOICES: dict[str, list[str]] = {
    "type": [t.value for t in ScheduleType],
    "payload.method": [m.value for m in HttpMethod],
    "retry_policy.backoff": [b.value for b in BackoffKind],
    "misfire_policy": [p.value for p in MisfirePolicy],
    "overlap_policy": [p.value for p in OverlapPolicy],
    "exclude_weekdays": list(WEEKDAYS),
    "events": [t.value for t in NotificationType],
}


class FormErrors(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _str(form: dict[str, Any], name: str) -> str:
    value = form.get(name, "")
    if isinstance(value, list):
        value = value[-1] if value else ""
    return str(value).strip()


def _list(form: dict[str, Any], name: str) -> list[str]:
    value = form.get(name, [])
    values = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in values if str(v).strip()]


class _Reader:
    """Collects every unreadable field, so the form shows them all at once."""

    def __init__(self, form: dict[str, Any]) -> None:
        self.form = form
        self.errors: dict[str, str] = {}

    def text(self, name: str) -> str | None:
        return _str(self.form, name) or None

    def number(self, name: str, kind: type[int] | type[float] = int) -> int | float | None:
        raw = _str(self.form, name)
        if not raw:
            return None
        try:
            return kind(raw)
        except ValueError:
            self.errors[name] = "enter a whole number" if kind is int else "enter a number"
            return None

    def pairs(self, name: str, separator: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for number, line in enumerate(_str(self.form, name).splitlines(), start=1):
            if not line.strip():
                continue
            key, sep, value = line.partition(separator)
            if not sep or not key.strip():
                self.errors[name] = f"line {number}: write it as name{separator}value"
                continue
            found[key.strip()] = value.strip()
        return found

    def json_value(self, name: str) -> Any:
        raw = _str(self.form, name)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            self.errors[name] = f"not valid JSON: {exc}"
            return None

    def done(self) -> None:
        if self.errors:
            raise FormErrors(self.errors)


def _set(body: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        body[key] = value


def schedule_body(form: dict[str, Any]) -> dict[str, Any]:
    """``POST/PUT /api/schedules`` from the schedule form. Empty inputs are left out, so the API's defaults apply."""
    read = _Reader(form)
    kind = read.text("type") or "cron"
    body: dict[str, Any] = {"name": read.text("name") or "", "type": kind}
    _set(body, "description", read.text("description"))
    body["labels"] = read.pairs("labels", "=")
    if kind == "cron":
        _set(body, "cron_expr", read.text("cron_expr"))
    elif kind == "interval":
        _set(body, "interval_seconds", read.number("interval_seconds"))
    else:
        _set(body, "run_at", read.text("run_at"))
    _set(body, "timezone", read.text("timezone"))
    for name in ("start_at", "end_at"):
        _set(body, name, read.text(name))
    for name in ("max_runs", "jitter_seconds", "misfire_grace_seconds"):
        _set(body, name, read.number(name))
    for name in ("misfire_policy", "overlap_policy"):
        _set(body, name, read.text(name))
    body["alert_after_failures"] = read.number("alert_after_failures")
    body["auto_pause_after_failures"] = read.number("auto_pause_after_failures")
    body["calendar_ids"] = _list(form, "calendar_ids")
    payload: dict[str, Any] = {"url": read.text("payload.url") or ""}
    _set(payload, "method", read.text("payload.method"))
    payload["headers"] = read.pairs("payload.headers", ":")
    _set(payload, "body", read.json_value("payload.body"))
    _set(payload, "timeout_seconds", read.number("payload.timeout_seconds", float))
    _set(payload, "flow_key", read.text("payload.flow_key"))
    body["payload"] = payload
    retry: dict[str, Any] = {}
    _set(retry, "max_attempts", read.number("retry_policy.max_attempts"))
    _set(retry, "backoff", read.text("retry_policy.backoff"))
    for name in ("initial_delay_seconds", "max_delay_seconds"):
        _set(retry, name, read.number(f"retry_policy.{name}", float))
    _set(retry, "max_event_age_seconds", read.number("retry_policy.max_event_age_seconds"))
    if retry:
        body["retry_policy"] = retry
    read.done()
    return body


def schedule_form(schedule: dict[str, Any]) -> dict[str, str | list[str]]:
    """The form's values for a schedule the API returned (the edit page)."""
    payload = schedule.get("payload") or {}
    retry = schedule.get("retry_policy") or {}
    values: dict[str, str | list[str]] = {
        key: "" if schedule.get(key) is None else str(schedule[key])
        for key in (
            "name",
            "description",
            "type",
            "cron_expr",
            "interval_seconds",
            "run_at",
            "timezone",
            "start_at",
            "end_at",
            "max_runs",
            "jitter_seconds",
            "misfire_policy",
            "misfire_grace_seconds",
            "overlap_policy",
            "alert_after_failures",
            "auto_pause_after_failures",
        )
    }
    values["labels"] = "\n".join(f"{k}={v}" for k, v in (schedule.get("labels") or {}).items())
    values["calendar_ids"] = [str(c) for c in schedule.get("calendar_ids") or []]
    for key in ("url", "method", "timeout_seconds", "flow_key"):
        values[f"payload.{key}"] = "" if payload.get(key) is None else str(payload[key])
    values["payload.headers"] = "\n".join(f"{k}: {v}" for k, v in (payload.get("headers") or {}).items())
    body = payload.get("body")
    values["payload.body"] = "" if body is None else json.dumps(body, indent=2)
    for key in ("max_attempts", "backoff", "initial_delay_seconds", "max_delay_seconds", "max_event_age_seconds"):
        values[f"retry_policy.{key}"] = "" if retry.get(key) is None else str(retry[key])
    return values


def calendar_body(form: dict[str, Any]) -> dict[str, Any]:
    read = _Reader(form)
    body: dict[str, Any] = {"name": read.text("name") or ""}
    _set(body, "timezone", read.text("timezone"))
    body["exclude_dates"] = [
        d.strip() for d in _str(form, "exclude_dates").replace(",", "\n").splitlines() if d.strip()
    ]
    body["exclude_weekdays"] = _list(form, "exclude_weekdays")
    ranges = []
    for number, line in enumerate(_str(form, "exclude_ranges").splitlines(), start=1):
        if not line.strip():
            continue
        start, sep, end = line.partition("/")
        if not sep:
            read.errors["exclude_ranges"] = f"line {number}: write it as from/to (RFC 3339 times)"
            continue
        ranges.append({"from": start.strip(), "to": end.strip()})
    body["exclude_ranges"] = ranges
    read.done()
    return body


def calendar_form(calendar: dict[str, Any]) -> dict[str, str | list[str]]:
    return {
        "name": str(calendar.get("name", "")),
        "timezone": str(calendar.get("timezone", "UTC")),
        "exclude_dates": "\n".join(calendar.get("exclude_dates") or []),
        "exclude_weekdays": list(calendar.get("exclude_weekdays") or []),
        "exclude_ranges": "\n".join(f"{r['from']}/{r['to']}" for r in calendar.get("exclude_ranges") or []),
    }


def endpoint_body(form: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"url": _str(form, "url"), "events": _list(form, "events")}
    description = _str(form, "description")
    if description:
        body["description"] = description
    return body


def flow_limit_body(form: dict[str, Any]) -> dict[str, Any]:
    read = _Reader(form)
    body: dict[str, Any] = {}
    _set(body, "max_concurrency", read.number("max_concurrency"))
    _set(body, "max_per_second", read.number("max_per_second", float))
    read.done()
    return body


def dlq_filter(form: dict[str, Any]) -> dict[str, Any]:
    """The DLQ list's filter inputs, as the API's query (and bulk-replay) names them."""
    read = _Reader(form)
    found: dict[str, Any] = {}
    _set(found, "schedule_id", read.text("schedule_id"))
    _set(found, "http_status", read.number("http_status"))
    _set(found, "from", read.text("from"))
    _set(found, "to", read.text("to"))
    read.done()
    return found
