"""Integration tests need the real Kafka broker and Redis server that deploy/local-services.sh starts
(`make test` does it). Outside `make test` they are skipped; under CI they must run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

KAFKA = os.environ.get("DIMEE_TEST_KAFKA")
REDIS = os.environ.get("DIMEE_TEST_REDIS")
API_VERSION = os.environ.get("DIMEE_TEST_KAFKA_API_VERSION", "")
SERVICES = os.environ.get("DIMEE_TEST_SERVICES_SCRIPT")
KAFKA_VERSION = os.environ.get("DIMEE_TEST_KAFKA_VERSION", "")
KAFKA_NODES = int(os.environ.get("DIMEE_TEST_KAFKA_NODES") or 1)
DIMEE = str(Path(sys.executable).parent / "dimee")


def pytest_configure(config):
    config.addinivalue_line("markers", "smoke: the end-to-end test `make test` repeats on the legacy Kafka 0.9")


def report_header() -> str:
    """Which broker the integration tests saw, for pytest's header (tests/conftest.py: pytest prints the
    header before it loads conftest files below the test root)."""
    if not (KAFKA and REDIS):
        return "kafka: none (integration tests need `make test`)"
    return (f"kafka: {KAFKA_VERSION or 'unknown version'}, {KAFKA_NODES} node{'s' * (KAFKA_NODES > 1)} at {KAFKA} "
            f"(api_version {API_VERSION or 'auto'}); redis: {REDIS}")


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if not (KAFKA and REDIS):
                if os.environ.get("CI"):
                    item.add_marker(pytest.mark.xfail(reason="CI must run integration tests", strict=True,
                                                      run=False))
                else:
                    item.add_marker(pytest.mark.skip(reason="no Kafka/Redis: run `make test`"))




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


class Processes:
    """dimee roles as real OS processes, logs kept for the failure message."""

    def __init__(self, folder: Path, env: dict) -> None:
        self.folder, self.env = folder, env
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("ab")
        proc = subprocess.Popen([DIMEE, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.running[name] = proc
        return proc

    def wait_started(self, *names: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        for name in names:
            while "stage started" not in self.log(name):
                assert self.running[name].poll() is None, f"{name} exited:\n{self.log(name)[-3000:]}"
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} did not start:\n{self.log(name)[-3000:]}")
                time.sleep(0.2)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str, timeout_s: float = 60.0) -> int:
        proc = self.running.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout_s)

    def kill(self, name: str) -> None:
        proc = self.running.pop(name)
        proc.kill()
        proc.wait()

    def stop_all(self) -> dict[str, int]:
        return {name: self.stop(name) for name in list(self.running)}


@pytest.fixture
def procs(tmp_path, env):
    processes = Processes(tmp_path, env)
    yield processes
    for proc in processes.running.values():
        proc.kill()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_sink(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def wait_for(predicate, timeout_s: float, what: str, on_timeout=lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{on_timeout()}")
        time.sleep(0.25)


def services(*command: str) -> None:
    assert SERVICES, "DIMEE_TEST_SERVICES_SCRIPT not set"
    subprocess.run(["bash", SERVICES, *command], check=True)
