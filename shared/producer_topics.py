"""A producer whose metadata requests always name every topic it has produced to.

aiokafka's client asks the broker for the topics in its ``_topics`` set, or for every topic while that set is
empty. A send only adds its topic to the set when the topic is missing from the metadata the client holds, so
a topic the client learnt from an all-topics answer (at bootstrap, or while the set was empty) is never added.
Once any other topic is added, later answers leave the untracked topic out, the client forgets its partitions,
and a batch already queued for it finds no leader: the sender then asks for metadata again and again, with no
pause, until the batch expires. The planner (whose changelog topics appear while it starts, and whose Faust
producer expires batches after 20 minutes) spent most of a core and a quarter of the broker's that way, with a
schedule change unpublished.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient


class _TopicTrackingClient(AIOKafkaClient):  # type: ignore[misc]
    async def _wait_on_metadata(self, topic: str) -> Any:
        if topic not in self._topics:
            # Refreshes in the background when the topic is new to the set; the partitions known now serve this send.
            self.add_topic(topic)
        return await super()._wait_on_metadata(topic)


def track_produced_topics(producer: AIOKafkaProducer) -> AIOKafkaProducer:
    """Make ``producer`` keep each topic it sends to in its metadata requests (before it starts)."""
    # The client is built by the producer's constructor; only its class changes, not its state.
    producer.client.__class__ = _TopicTrackingClient
    return producer
