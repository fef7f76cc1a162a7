"""The broker behind one small interface: Kafka (kafka-python) or the embedded in-memory broker."""

from dimee.transport.base import Consumer, Producer, Record, Topics, Transport, open_transport

__all__ = ["Consumer", "Producer", "Record", "Topics", "Transport", "open_transport"]
