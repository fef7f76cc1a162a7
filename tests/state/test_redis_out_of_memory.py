"""The real Redis out of memory (maxmemory reached, noeviction): it refuses writes, and every command queued in a
MULTI, reads included. Defect, seen in `make faults` scenario n: the router's centroid read (a MULTI of HMGETs) was
refused with an OutOfMemoryError that the store did not recognise (redis-py drops the "OOM" prefix, and a pipeline
rewrites the message), so every sample of the batch was dead-lettered as "processing failed"."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import redis
from dimee.state.base import RefusesWrites, Update, namespace
from dimee.state.redis_store import RedisCentroidStore

from tests.support.real_services import REDIS, needs

pytestmark = needs("redis", bool(REDIS))


@pytest.fixture
def out_of_memory():
    """Redis at its memory limit for the test, its settings put back after."""
    client = redis.Redis.from_url(REDIS)
    before = {key: client.config_get(key)[key] for key in ("maxmemory", "maxmemory-policy")}
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    try:
        yield
    finally:
        for key, value in before.items():
            client.config_set(key, value)
        client.close()


def test_an_out_of_memory_redis_is_read_and_refuses_writes_as_an_outage(out_of_memory):
    store = RedisCentroidStore(REDIS, namespace("oom", uuid.uuid4().hex[:8]))
    try:
        redis.Redis.from_url(REDIS).config_set("maxmemory", 0)  # seeded first, then the limit again
        store.seed([np.ones(4, dtype=np.float32), np.zeros(4, dtype=np.float32)], [3, 5])
        redis.Redis.from_url(REDIS).config_set("maxmemory", 1)
        snapshot = store.snapshot()  # routing reads on
        assert snapshot.counts == [3, 5]
        with pytest.raises(RefusesWrites):  # a wait like an outage, never a dead letter
            store.apply([Update(0, np.full(4, 2.0, dtype=np.float32), "s-1")])
    finally:
        store.close()
