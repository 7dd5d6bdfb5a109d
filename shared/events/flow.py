"""Flow limits as they reach executors, on the compacted ``chime.flow-limits`` topic."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field

from shared.events.schedule import FLOW_KEY_MAX


class FlowLimitData(BaseModel):
    """One tenant's limit on one flow; the newest record per key wins, and ``deleted`` ends the limit."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tenant_id: str
    flow_key: str = Field(min_length=1, max_length=FLOW_KEY_MAX)
    version: int = Field(ge=1)
    max_concurrency: int = Field(ge=1)
    max_per_second: float | None = Field(default=None, gt=0)
    deleted: bool = False


def flow_record_key(tenant: str, flow_key: str) -> bytes:
    """The Kafka key of a flow, on ``chime.flow-limits`` and ``chime.runs.flow``: unambiguous for any strings."""
    return json.dumps([tenant, flow_key], separators=(",", ":")).encode()
