"""The router's /readyz on the real Redis that deploy/local-services.sh starts, while that Redis hangs."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from dimee.routers import router as router_module
from dimee.state.redis_store import RedisCentroidStore

from dimee.streaming.health import Health, serve
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import context, deployment
from tests.support.real_services import REDIS, SERVICES_SCRIPT


def _redis_pid() -> int:
    """The pid deploy/local-services.sh wrote for its Redis ($DIMEE_SERVICES_DIR/run/redis.pid)."""
    assert SERVICES_SCRIPT, "DIMEE_TEST_SERVICES_SCRIPT not set"
    services = os.environ.get("DIMEE_SERVICES_DIR") or Path(SERVICES_SCRIPT).resolve().parents[1] / ".services"
    pidfile = Path(services) / "run" / "redis.pid"
    if not pidfile.exists():
        pytest.skip(f"no Redis pid file at {pidfile}")
    return int(pidfile.read_text().strip())


def _readyz(port: int, timeout_s: float) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 60
    while (answer := _readyz(port, 2.0))[0] != 200:
        assert time.monotonic() < deadline, f"not ready: {answer}"
        time.sleep(0.2)


def test_readyz_answers_at_once_with_redis_paused_and_names_it(workdir, cal, prefix, monkeypatch):
    """Defect (issue 28): with Redis SIGSTOPped the router's /readyz did not answer, its probe blocked on the
    Redis socket timeout. Now each probe answers 503 within its 2 s client timeout, naming Redis; 200 after."""
    health = Health()
    monkeypatch.setattr(router_module, "HEALTH", health)
    store = RedisCentroidStore(REDIS, f"{prefix}-ready")
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    router_module.Router(context(InMemoryBroker(), Topics(prefix)), deployment(workdir, cal, "DIMEE-D"), store, "r")
    health.beat("router")  # the stage is up: only the store can keep it from ready
    health.ready_stage("router")
    server = serve("127.0.0.1", 0, health)
    pid = _redis_pid()
    try:
        _wait_ready(server.server_port)
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(3):  # the first while the check hangs, the others behind it
                code, body = _readyz(server.server_port, 2.0)
                assert code == 503 and any(r.startswith("centroid store (redis://") for r in body["waiting_for"])
                time.sleep(1.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        _wait_ready(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
        store.close()
