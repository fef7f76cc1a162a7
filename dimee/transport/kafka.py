"""Kafka through kafka-python 3.x. Works against the 0.9 broker these machines carry (pin api_version to
(0, 9)) and against current brokers (auto-detect). The envelope lives in the value, so nothing needs record
headers or timestamps."""

from __future__ import annotations

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaConfigurationError, KafkaError, TopicAlreadyExistsError

from dimee.errors import DimeeError, ServiceUnavailable
from dimee.transport.base import Record


class DeliveryError(ServiceUnavailable):
    """A send was not acknowledged by the broker; the caller must not commit."""


def _unreachable(servers: str, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"cannot reach Kafka at {servers} ({type(exc).__name__}: {exc}); is the broker running?")


class KafkaTransport:
    def __init__(self, servers: str, api_version: tuple[int, ...] | None = None, client_id: str = "dimee") -> None:
        self.servers = servers
        self.api_version = api_version
        self.client_id = client_id

    def _common(self) -> dict:
        options: dict = {"bootstrap_servers": self.servers.split(","), "client_id": self.client_id}
        if self.api_version is not None:
            options["api_version"] = self.api_version
        return options

    def producer(self) -> KafkaProducerAdapter:
        try:
            return KafkaProducerAdapter(KafkaProducer(
                acks="all", retries=10, linger_ms=5, retry_backoff_ms=200, request_timeout_ms=15000,
                max_in_flight_requests_per_connection=1, **self._common(),
            ))
        except KafkaConfigurationError as exc:
            raise DimeeError(f"Kafka producer configuration rejected: {exc}") from exc
        except KafkaError as exc:
            raise _unreachable(self.servers, exc) from exc

    def consumer(self, topics: list[str], group_id: str, max_poll_interval_s: float = 300.0) -> KafkaConsumerAdapter:
        session_ms, poll_interval_ms = 10000, int(max_poll_interval_s * 1000)
        if self.api_version is not None and self.api_version < (0, 10, 1):
            # Before 0.10.1 the session timeout also bounds the time between polls; the two must be equal.
            # Stages poll every batch (well under 10 s), and a killed member is noticed within 10 s.
            poll_interval_ms = session_ms
        try:
            consumer = KafkaConsumer(
                *topics, group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
                session_timeout_ms=session_ms, heartbeat_interval_ms=2000, max_poll_interval_ms=poll_interval_ms,
                **self._common(),
            )
        except KafkaConfigurationError as exc:  # not transient: retrying cannot help
            raise DimeeError(f"Kafka consumer configuration rejected: {exc}") from exc
        except KafkaError as exc:
            raise _unreachable(self.servers, exc) from exc
        return KafkaConsumerAdapter(consumer)

    def ensure_topics(self, topics: list[str], partitions: int = 3, replication: int | None = None) -> None:
        """Create topics through the admin API where the broker has it (0.10.1+); on older brokers ask for
        their metadata, which auto-creates them with the broker's num.partitions. `replication` defaults to
        min(3, brokers in the cluster metadata): a cluster cannot hold more replicas than brokers, and with
        min.insync.replicas=2 a single-replica topic would refuse every acks=all write."""
        if self.api_version is None or self.api_version >= (0, 10, 1):
            try:
                admin = KafkaAdminClient(**self._common())
            except KafkaError as exc:
                raise _unreachable(self.servers, exc) from exc
            try:
                existing = set(admin.list_topics())
                missing = [t for t in topics if t not in existing]
                if missing:
                    if replication is None:
                        replication = max(1, min(3, len(admin.describe_cluster()["brokers"])))
                    admin.create_topics([NewTopic(t, partitions, replication) for t in missing])
                return
            except TopicAlreadyExistsError:
                return
            except KafkaError:
                pass  # fall through to auto-create
            finally:
                admin.close()
        producer = self.producer()
        try:
            for topic in topics:
                producer.producer.partitions_for(topic)
        finally:
            producer.close()

    def close(self) -> None:
        pass


class KafkaProducerAdapter:
    def __init__(self, producer: KafkaProducer) -> None:
        self.producer = producer
        self._pending: list = []

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._pending.append(self.producer.send(topic, key=key, value=value))

    def flush(self, timeout_s: float | None = 30.0) -> None:
        pending, self._pending = self._pending, []
        try:
            self.producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise DeliveryError(f"Kafka did not acknowledge the batch: {exc}") from exc
        failed = [f.exception for f in pending if not f.is_done or f.failed()]
        if failed:
            raise DeliveryError(f"Kafka did not acknowledge {len(failed)} send(s): {failed[0]}")

    def close(self) -> None:
        self.producer.close(timeout=10)


class KafkaConsumerAdapter:
    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        batches = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [Record(r.topic, r.partition, r.offset, r.key, r.value)
                for tp in sorted(batches, key=lambda tp: (tp.topic, tp.partition)) for r in batches[tp]]

    def commit(self) -> None:
        self.consumer.commit()

    def close(self) -> None:
        self.consumer.close(autocommit=False)
