"""The router's /readyz on the real Redis that deploy/local-services.sh starts, while that Redis hangs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from dimee.routers import router as router_module
from dimee.state.redis_store import RedisCentroidStore

from dimee.streaming.health import Health, serve
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import context, deployment
from tests.support.processes import http_get, wait_for
from tests.support.real_services import REDIS, SERVICES_SCRIPT


def _redis_pid() -> int:
    """The pid deploy/local-services.sh wrote for its Redis ($DIMEE_SERVICES_DIR/run/redis.pid)."""
    assert SERVICES_SCRIPT, "DIMEE_TEST_SERVICES_SCRIPT not set"
    services = os.environ.get("DIMEE_SERVICES_DIR") or Path(SERVICES_SCRIPT).resolve().parents[1] / ".services"
    pidfile = Path(services) / "run" / "redis.pid"
    if not pidfile.exists():
        pytest.skip(f"no Redis pid file at {pidfile}")
    return int(pidfile.read_text().strip())


def test_readyz_answers_at_once_with_redis_paused_and_names_it(workdir, cal, prefix, monkeypatch):
    """Defect (issue 28): with Redis SIGSTOPped the router's /readyz did not answer, its probe blocked on the
    Redis socket timeout. Now each probe answers 503 while the check is still in flight, naming Redis; 200 after.
    (How soon it answers is benchmarks/readiness.py's figure.)"""
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
        wait_for(lambda: http_get(server.server_port, "/readyz")[0] == 200, 60, "ready before Redis is paused")
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(3):  # the first while the check hangs, the others behind it: none waits for Redis
                code, body = http_get(server.server_port, "/readyz")
                reasons = json.loads(body)["waiting_for"] if code else [body]
                assert code == 503, reasons
                assert any(r.startswith("centroid store (redis://") and "not answering" in r for r in reasons)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: http_get(server.server_port, "/readyz")[0] == 200, 60, "ready once Redis is resumed")
    finally:
        server.shutdown()
        server.server_close()
        store.close()
