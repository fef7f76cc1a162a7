"""Each contract suite runs against the embedded implementation and the real service (Kafka, Redis) that
deploy/local-services.sh starts; the real ones are integration tests, skipped outside `make test` and
required under CI."""

from __future__ import annotations

import uuid

import pytest

from tests.support.real_services import KAFKA, REDIS, api_version, needs


def _real(name: str, available: bool):
    return pytest.param(name, marks=needs(name, available))


@pytest.fixture(params=["memory", _real("kafka", bool(KAFKA))])
def transport(request):
    if request.param == "memory":
        from dimee.streaming.transport.memory import InMemoryBroker

        return InMemoryBroker(default_partitions=1)
    from dimee.streaming.transport.kafka import KafkaTransport

    return KafkaTransport(KAFKA, api_version=api_version(), client_id="contract")


@pytest.fixture(params=["memory", _real("redis", bool(REDIS))])
def store(request):
    if request.param == "memory":
        from dimee.state.memory import InMemoryCentroidStore

        yield InMemoryCentroidStore()
        return
    from dimee.state.base import namespace
    from dimee.state.redis_store import RedisCentroidStore

    store = RedisCentroidStore(REDIS, namespace("contract", uuid.uuid4().hex[:8]))
    yield store
    store.close()


@pytest.fixture
def topic() -> str:
    return f"contract-{uuid.uuid4().hex[:8]}"
