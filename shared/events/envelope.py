"""CloudEvents 1.0 structured-mode envelope (``application/cloudevents+json``)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.types import Instant

CONTENT_TYPE = "application/cloudevents+json"
SOURCE = "urn:chime"


class Envelope(BaseModel):
    """Fields every Chime event shares. Subclasses pin ``type`` to a literal and give ``data`` its model."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str = SOURCE
    type: str
    subject: str = Field(description="The schedule id; also the Kafka key.")
    time: Instant
    datacontenttype: Literal["application/json"] = "application/json"
    tenant: str = Field(description="Extension attribute: the owning tenant.")
