"""CloudEvents 1.0 structured-mode envelope (``application/cloudevents+json``)."""

from __future__ import annotations

import random
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.types import Instant

CONTENT_TYPE = "application/cloudevents+json"
SOURCE = "urn:chime"


# Its own generator, seeded from the OS when the process starts; not the module's, which tests may seed.
_IDS = random.Random()  # noqa: S311 - event ids must be unique, not unpredictable


def new_event_id() -> str:
    """A random (version 4) UUID for an event's ``id``. ``uuid.uuid4`` asks the kernel for its 16 bytes, a system
    call per event; the ids need to be unique, which 122 bits from a seeded generator are."""
    return str(uuid.UUID(int=_IDS.getrandbits(128), version=4))


class Envelope(BaseModel):
    """Fields every Chime event shares. Subclasses pin ``type`` to a literal and give ``data`` its model."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=new_event_id)
    source: str = SOURCE
    type: str
    subject: str = Field(description="The schedule id; also the Kafka key.")
    time: Instant
    datacontenttype: Literal["application/json"] = "application/json"
    tenant: str = Field(description="Extension attribute: the owning tenant.")
