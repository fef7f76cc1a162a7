"""The broker behind one small interface (`base`): Kafka (kafka-python) or the embedded in-memory broker.
`open_transport` picks the implementation by URL; the interface knows none of them."""

from dimee.common.errors import DimeeError
from dimee.streaming.config import redact
from dimee.streaming.transport.base import Consumer, Producer, Record, Topics, TransactionalProducer, Transport


def open_transport(url: str, api_version: tuple[int, ...] | None = None, client_id: str = "dimee",
                   security: dict | None = None) -> Transport:
    """`memory://` (the process-wide embedded broker) or `kafka://HOST:PORT[,HOST:PORT]` (with `security`,
    kafka-python's TLS/SASL options)."""
    if url.startswith("memory://"):
        from dimee.streaming.transport.memory import shared_broker

        return shared_broker(url)
    if url.startswith("kafka://"):
        from dimee.streaming.transport.kafka import KafkaTransport

        return KafkaTransport(url.removeprefix("kafka://"), api_version, client_id, security)
    raise DimeeError(f"unknown broker {redact(url)!r}: use memory:// or kafka://HOST:PORT")


__all__ = ["Consumer", "Producer", "Record", "Topics", "TransactionalProducer", "Transport", "open_transport"]
