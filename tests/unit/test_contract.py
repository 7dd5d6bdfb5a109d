"""Run ids, event envelopes, delivery-spec rules, settings and the SSRF address policy."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.api.patching import merge_patch
from shared.errors import EventDecodeError
from shared.events import ScheduleUpserted, decode_event, encode_event
from shared.events.schedule import DeliverySpec, RetryPolicy, ScheduleState
from shared.netpolicy import is_blocked_address
from shared.runid import RUN_NAMESPACE, planned_run_id
from shared.settings import load_settings


def test_run_id_is_uuid5_over_schedule_and_millisecond_utc_time() -> None:
    sid = uuid.UUID("0193a6c4-0000-7000-8000-000000000001")
    nominal = datetime(2026, 12, 1, 9, 0, 0, 123_456, tzinfo=UTC)
    expected = uuid.uuid5(RUN_NAMESPACE, f"{sid}/2026-12-01T09:00:00.123Z")
    assert planned_run_id(sid, nominal) == expected
    assert planned_run_id(sid, nominal).version == 5
    assert planned_run_id(sid, nominal.replace(microsecond=123_999)) == expected


def _state() -> ScheduleState:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return ScheduleState(
        id=uuid.uuid4(),
        tenant_id="acme",
        name="n",
        type="interval",
        interval_seconds=5,
        payload=DeliverySpec(url="https://example.com/hook"),
        status="active",
        version=3,
        created_at=now,
        updated_at=now,
    )


def test_events_round_trip_through_the_one_decoder() -> None:
    state = _state()
    event = ScheduleUpserted(subject=str(state.id), tenant="acme", time=state.updated_at, data=state)
    decoded = decode_event(encode_event(event))
    assert decoded == event
    raw = encode_event(event).decode()
    assert '"specversion":"1.0"' in raw and '"type":"dev.chime.schedule.upserted.v1"' in raw
    assert '"updated_at":"2026-01-01T00:00:00.000Z"' in raw


@pytest.mark.parametrize("raw", [b"", b"{}", b"not json", b'{"type":"dev.chime.unknown.v1"}'])
def test_undecodable_records_raise_a_decode_error(raw: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode_event(raw)


@pytest.mark.parametrize(
    "headers",
    [{"Connection": "close"}, {"Webhook-Id": "x"}, {"Chime-Attempt": "2"}, {"bad name": "x"}, {"X-A": "a\r\nb"}],
)
def test_delivery_headers_that_chime_owns_or_break_http_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        DeliverySpec(url="https://example.com", headers=headers)


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(multiplier=0.5)
    with pytest.raises(ValidationError):
        RetryPolicy(initial_delay_seconds=10, max_delay_seconds=5)


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("224.0.0.1", True),
        ("0.0.0.0", True),
        ("::1", True),
        ("fe80::1", True),
        ("fc00::1", True),
        ("::ffff:10.0.0.1", True),
        ("::ffff:127.0.0.1", True),
        ("64:ff9b::7f00:1", True),
        ("64:ff9b::a9fe:a9fe", True),
        ("2002:7f00:1::", True),
        ("64:ff9b::808:808", False),
        ("ff02::1", True),
        ("100.64.0.1", True),
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_ssrf_address_policy(address: str, blocked: bool) -> None:
    assert is_blocked_address(ipaddress.ip_address(address)) is blocked


def test_merge_patch_follows_rfc_7396() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    assert merge_patch(target, {"a": "z", "c": {"f": None}}) == {"a": "z", "c": {"d": "e"}}
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}


def test_prod_refuses_placeholder_secrets() -> None:
    with pytest.raises(ValidationError):
        load_settings(_env_file=None, env="prod")
    ok = load_settings(_env_file=None, env="prod", jwt_secret="x" * 40, master_key="y" * 40)
    assert ok.env.value == "prod"
