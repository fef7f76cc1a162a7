"""Integration tests need the real Kafka broker and Redis server that deploy/local-services.sh starts
(`make test` does it). Outside `make test` they are skipped; under CI they must run."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.support.processes import Processes
from tests.support.real_services import API_VERSION, KAFKA, REDIS, needs


def pytest_configure(config):
    config.addinivalue_line("markers", "smoke: the end-to-end test `make test` repeats on the legacy Kafka 0.9")


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            for mark in needs("Kafka/Redis", bool(KAFKA and REDIS)):
                item.add_marker(mark)


@pytest.fixture
def prefix():
    return f"it-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def env(prefix):
    values = dict(os.environ)
    values.update({"DIMEE_BROKER": f"kafka://{KAFKA}", "DIMEE_STATE": REDIS or "", "DIMEE_TOPIC_PREFIX": prefix,
                   "DIMEE_KAFKA_API_VERSION": API_VERSION, "TOKENIZERS_PARALLELISM": "false",
                   "OMP_NUM_THREADS": "1"})
    return values


@pytest.fixture
def procs(tmp_path, env):
    processes = Processes(tmp_path, env)
    yield processes
    processes.kill_all()
