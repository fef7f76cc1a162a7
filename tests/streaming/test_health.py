"""/healthz, /readyz and /metrics of a role process, over real HTTP."""

from __future__ import annotations

import json
import time

import pytest

from dimee.common.errors import DimeeError
from dimee.streaming.health import Health, serve
from tests.support.processes import http_get


def test_health_and_readiness_codes():
    health = Health(stall_s=0.3)
    server = serve("127.0.0.1", 0, health)
    port = server.server_port
    try:
        assert http_get(port, "/healthz")[0] == 200
        code, body = http_get(port, "/readyz")
        assert code == 503 and json.loads(body)["waiting_for"] == ["starting"]
        health.expect("worker-edge", "loading its model")
        code, body = http_get(port, "/readyz")
        assert code == 503 and "worker-edge: loading its model" in body
        health.beat("worker-edge")
        health.ready_stage("worker-edge")
        assert http_get(port, "/readyz")[0] == 200
        health.needs("centroid store", lambda: 1 / 0)  # type: ignore[arg-type]
        code, body = http_get(port, "/readyz")
        assert code == 503 and "centroid store unreachable" in body
        health.needs("centroid store", lambda: "empty")
        code, body = http_get(port, "/readyz")
        assert code == 503 and "centroid store empty" in body
        health.needs("centroid store", lambda: None)
        assert http_get(port, "/readyz")[0] == 200
        time.sleep(0.5)  # the loop stops turning
        code, body = http_get(port, "/healthz")
        assert code == 503 and "worker-edge" in json.loads(body)["stalled"]
        code, body = http_get(port, "/metrics")
        assert code == 200 and "# HELP" in body
        assert http_get(port, "/nope")[0] == 404
        with pytest.raises(DimeeError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            serve("127.0.0.1", port, health)
    finally:
        server.shutdown()
        server.server_close()
