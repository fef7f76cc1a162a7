"""Each contract suite runs against the embedded implementation and the real service (Kafka, Redis) that
deploy/local-services.sh starts; the real ones are integration tests, skipped outside `make test` and
required under CI."""

from __future__ import annotations

import os
import uuid

import pytest

KAFKA = os.environ.get("DIMEE_TEST_KAFKA")
REDIS = os.environ.get("DIMEE_TEST_REDIS")
API_VERSION = os.environ.get("DIMEE_TEST_KAFKA_API_VERSION", "")


def _real(name: str, available: bool):
    marks = [pytest.mark.integration]
    if not available:
        marks.append(pytest.mark.xfail(reason="CI must run integration tests", strict=True, run=False)
                     if os.environ.get("CI") else pytest.mark.skip(reason=f"no {name}: run `make test`"))
    return pytest.param(name, marks=marks)


@pytest.fixture(params=["memory", _real("kafka", bool(KAFKA))])
def transport(request):
    if request.param == "memory":
        from dimee.transport.memory import InMemoryBroker

        return InMemoryBroker(default_partitions=1)
    from dimee.transport.kafka import KafkaTransport

    api = tuple(int(p) for p in API_VERSION.split(".")) if API_VERSION else None
    return KafkaTransport(KAFKA, api_version=api, client_id="contract")


@pytest.fixture(params=["memory", _real("redis", bool(REDIS))])
def store(request):
    if request.param == "memory":
        from state.memory import InMemoryCentroidStore

        yield InMemoryCentroidStore()
        return
    from state.redis_store import RedisCentroidStore

    store = RedisCentroidStore(REDIS, f"contract-{uuid.uuid4().hex[:8]}")
    yield store
    store.close()


@pytest.fixture
def topic() -> str:
    return f"contract-{uuid.uuid4().hex[:8]}"
