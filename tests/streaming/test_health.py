"""/healthz, /readyz and /metrics of a role process, over real HTTP."""

from __future__ import annotations

import json
import threading
import time

import pytest
from dimee.routers.router import Router
from dimee.state.memory import InMemoryCentroidStore

from dimee.common.errors import DimeeError, ServiceUnavailable
from dimee.streaming.health import Health, serve
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import context, deployment
from tests.support.processes import http_get, wait_for


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


class HangingStore(InMemoryCentroidStore):
    """A Redis that has stopped answering (SIGSTOP): every call blocks until `resume` is set."""

    url = "redis://:secret@127.0.0.1:6379/0"

    def __init__(self) -> None:
        super().__init__()
        self.resume, self.returned, self.calls = threading.Event(), threading.Event(), 0

    def snapshot(self):
        self.calls += 1
        self.resume.wait()
        self.returned.set()
        return super().snapshot()


def test_readiness_answers_at_once_while_the_store_hangs_and_names_it(workdir, cal, monkeypatch):
    """Defect: with Redis paused (SIGSTOP) the router's /readyz did not answer: the probe ran the store's check
    itself and blocked on Redis's timeout. The check now runs on a thread of its own, one call at a time: a probe
    answers 503 while that call is still blocked, naming the store by its address, and 200 once Redis answers
    again. (How soon it answers is benchmarks/readiness.py's figure.)"""
    from dimee.routers import router as router_module

    health = Health()
    monkeypatch.setattr(router_module, "HEALTH", health)
    store = HangingStore()
    store.seed(cal.centroid_arrays(), cal.pool_sizes)
    Router(context(InMemoryBroker(), Topics("hang")), deployment(workdir, cal, "DIMEE-D"), store, "r")
    health.beat("router")  # the stage is up: only the store can keep it from ready
    health.ready_stage("router")
    server = serve("127.0.0.1", 0, health)
    try:
        for _ in range(3):  # each answers while the one call in flight is still blocked: none waits for it
            code, body = http_get(server.server_port, "/readyz")
            assert code == 503
            (reason,) = json.loads(body)["waiting_for"]
            assert reason.startswith("centroid store (redis://127.0.0.1:6379/0) not answering")
            assert "secret" not in reason
        assert store.calls == 1 and not store.returned.is_set()
        store.resume.set()
        wait_for(lambda: http_get(server.server_port, "/readyz")[0] == 200, 30, "ready once the store answered")
    finally:
        store.resume.set()
        server.shutdown()
        server.server_close()


def test_an_unavailable_service_is_named_with_what_it_said():
    health = Health()
    health.beat("router")

    def down() -> str | None:
        raise ServiceUnavailable("cannot reach Redis at redis://127.0.0.1:6379/0 (TimeoutError)")

    health.needs("centroid store", down)
    ok, detail = health.ready()
    assert not ok and detail["waiting_for"] == [
        "centroid store unreachable: cannot reach Redis at redis://127.0.0.1:6379/0 (TimeoutError)"]


def test_a_stage_waiting_for_the_broker_says_so(monkeypatch):
    """Readiness said 'loading its model' while a stage waited for Kafka (and the sink, which has no model, said it
    too): a user looked at the model, not the broker."""
    import dimee.streaming.stage as stage_module
    from dimee.streaming.messages import Sample
    from dimee.streaming.stage import Stage, StageContext

    health = Health()
    monkeypatch.setattr(stage_module, "HEALTH", health)

    class Unreachable(InMemoryBroker):
        def ensure_topics(self, *args: object, **kwargs: object) -> None:
            raise ServiceUnavailable("cannot reach Kafka at 127.0.0.1:1")

    class Sink(Stage):
        name, message_type = "sink", Sample

        def process(self, batch: list) -> list:
            return []

    stage_context = StageContext(Unreachable(), Topics("t"))
    stage = Sink(stage_context, ["t.samples"], "t.sink")
    assert health.ready()[1]["waiting_for"] == ["sink: starting"]
    opening = threading.Thread(target=stage.run)
    opening.start()
    try:
        wait_for(lambda: health.ready()[1]["waiting_for"] == ["sink: waiting for the broker"], 10,
                 "readiness to name the broker")
    finally:
        stage_context.stop.set()
        opening.join()


@pytest.mark.parametrize("role", ["sink", "tail"])
def test_the_sink_and_the_tail_never_say_they_load_a_model(role, monkeypatch):
    """Every stage said 'loading its model' while it started, the sink and the tail too, which load none: each
    reason they give from construction to a served poll names what they do (starting, the broker, the group)."""
    from dimee.predictions.sink import Sink
    from dimee.predictions.tail import Tail

    import dimee.streaming.stage as stage_module

    health = Health()
    said: list[str] = []
    expect = health.expect
    monkeypatch.setattr(health, "expect", lambda stage, what: (said.append(what), expect(stage, what)))
    monkeypatch.setattr(stage_module, "HEALTH", health)
    stage_context = context(InMemoryBroker(), Topics(role))
    stage = Sink(stage_context, None) if role == "sink" else Tail(stage_context, every_s=float("inf"))
    stage.run(idle_exit_s=0.1)
    assert said == ["starting", "waiting for the broker", "joining its consumer group"]
    assert health.ready() == (True, {"waiting_for": []})  # the poll came back: nothing pending
