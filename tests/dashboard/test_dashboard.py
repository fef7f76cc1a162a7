"""`dimee dashboard` without Kafka: the numbers it folds from hand-made messages, the follower on the embedded
broker and store, the real HTTP server (page, scripts, snapshots, server-sent events), one-line errors."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest
import uvicorn
from dimee.state.memory import InMemoryCentroidStore

from dimee.dashboard.follow import CentroidWatch, Follower
from dimee.dashboard.live import LiveView, centroid_shifts
from dimee.dashboard.server import bind, create_app
from dimee.streaming.messages import CostBreakdown, DeadLetter, Prediction, Timings
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import shared_broker
from tests.cli.test_cli import _one_line_error
from tests.support.processes import wait_for


def _prediction(sample_id: str, path: list[str], cost: float, latency_s: float, correct: bool | None) -> Prediction:
    label = None if correct is None else 1
    return Prediction(id=sample_id, tier=path[-1], label_pred=1 if correct in (True, None) else 0, confidence=0.9,
                      exit_layer=3, layers_run=3, model="m", worker="w", path=path, label=label, correct=correct,
                      cost=CostBreakdown(processing=cost, offload=0.0, cloud=0.0, total=cost),
                      timings=Timings(produced_at=100.0, routed_at=100.0, started_at=100.0,
                                      finished_at=100.0 + latency_s))


HAND = [  # tier shares 2/4 mobile, 1/4 edge, 1/4 cloud; mean cost (0.2 + 0.2 + 0.5 + 1.1) / 4 = 0.5
    _prediction("a", ["mobile"], 0.2, 0.1, True),
    _prediction("b", ["mobile"], 0.2, 0.2, False),
    _prediction("c", ["mobile", "edge"], 0.5, 0.3, True),
    _prediction("d", ["mobile", "edge", "cloud"], 1.1, 0.4, None),
]


def _dead_letter(stage: str, error: str) -> DeadLetter:
    return DeadLetter(stage=stage, topic="x", partition=0, offset=1, error=error, payload="{")


def test_live_view_folds_hand_worked_numbers():
    view = LiveView(cloud_only_cost=2.0, window_s=10.0)
    for prediction in [*HAND, HAND[0]]:  # the redelivered "a": one more record read, a repeat, one sample
        view.add_prediction(prediction)
    view.add_dead_letter(_dead_letter("router", "invalid JSON: EOF while parsing"))
    view.add_dead_letter(_dead_letter("router", "invalid JSON: trailing characters"))
    view.add_dead_letter(_dead_letter("worker-edge", "the record has no value (a tombstone)"))
    s = view.snapshot(now=100.45)
    assert (s["answered"], s["repeats"], s["distinct"]) == (5, 1, 4)
    assert s["answered_text"] == "5 answered, 1 repeat of 4 distinct"
    assert s["tier_shares"] == {"mobile": 0.5, "edge": 0.25, "cloud": 0.25}
    assert s["mean_cost"] == pytest.approx(0.5) and s["cost_vs_cloud"] == pytest.approx(0.25)  # 0.5 / 2.0
    assert s["accuracy"] == pytest.approx(2 / 3) and s["labelled"] == 3
    # Throughput and latency count every record read, as dimee_answered_total does: a's 100 ms twice.
    assert s["latency_p50_ms"] == pytest.approx(200.0) and s["latency_p99_ms"] == pytest.approx(396.0)
    assert s["throughput_per_s"] == pytest.approx(0.5)  # 5 records finished in the last 10 s
    assert view.snapshot(now=110.25)["throughput_per_s"] == pytest.approx(0.2)  # 100.3 and 100.4 still inside
    assert s["escalations"] == 2
    assert s["escalation_paths"] == {"mobile → edge": 1, "mobile → edge → cloud": 1}
    assert s["dead_letters"] == 3
    assert s["dead_letter_reasons"] == {"router: invalid-json": 2, "worker-edge: tombstone": 1}


def test_an_empty_view_is_valid_json():
    s = LiveView().snapshot(now=0.0)
    assert json.loads(json.dumps(s, allow_nan=False))["answered"] == 0
    assert s["mean_cost"] is None and s["latency_p50_ms"] is None and s["accuracy"] is None


def test_centroid_shift_is_the_distance_from_calibration():
    shifts = centroid_shifts([np.array([3.0, 4.0]), np.zeros(2), None], [12, 5, 0],
                             [np.zeros(2), np.zeros(2), np.ones(2)], [10, 5, 0], ["mobile", "edge", "cloud"])
    assert [(p.tier, p.shift, p.adapted) for p in shifts] == [("mobile", 5.0, 2), ("edge", 0.0, 0), ("cloud", None, 0)]


class _Calibration:
    """The three things CentroidWatch reads from a calibration."""

    pool_sizes = (10, 5)

    def centroid_arrays(self) -> list[np.ndarray]:
        return [np.zeros(2), np.zeros(2)]

    @property
    def plan(self):
        from dimee.method.tiers import TierPlan

        return TierPlan.of([("mobile", 2), ("cloud", 6)])


def test_follower_reads_predictions_dead_letters_audits_centroids_and_the_live_offset():
    from dimee.state.base import Verdict

    from dimee.method.control import ControlRule
    from dimee.streaming.messages import Audit, CostBreakdown

    broker, topics = shared_broker(f"memory://dashboard-{time.monotonic_ns()}"), Topics("dash")
    producer = broker.producer()
    for prediction in HAND:
        producer.send(topics.predictions, prediction.id.encode(), prediction.to_bytes())
    producer.send(topics.predictions, None, b"not json")
    producer.send(topics.dead_letter, None, _dead_letter("sink", "processing failed: boom").to_bytes())
    cost = CostBreakdown(processing=0.0, offload=0.5, cloud=0.5, total=1.0)
    for i, agree in enumerate([True, False, True, True, True]):  # the fourth twice: a redelivery, counted once
        audit = Audit(id=f"a-{min(i, 3)}", tier="edge", label_pred=1, full_pred=1 if agree else 0, agree=agree,
                      cost=cost, worker="w")
        producer.send(topics.audits, audit.id.encode(), audit.to_bytes())
    producer.flush()
    store = InMemoryCentroidStore()
    watch = CentroidWatch(store, _Calibration())  # type: ignore[arg-type]
    follower = Follower(LiveView(), broker.consumer([topics.predictions, topics.dead_letter, topics.audits], "g"),
                        topics, watch)
    follower.start()
    try:
        wait_for(lambda: follower.snapshot()["answered"] == 4 and follower.snapshot()["dead_letters"] == 1
                 and sum(a["audits"] for a in follower.snapshot()["audits"].values()) == 4, 10,
                 "the follower to fold the records")
        s = follower.snapshot()
        assert s["unreadable"] == 1 and s["dead_letter_reasons"] == {"sink: processing": 1}
        assert s["centroids"] is None and "not seeded" in s["centroid_note"]
        audits = s["audits"]["edge"]
        assert (audits["audits"], audits["disagreements"], s["audit_cost"]) == (4, 1, 4.0)
        store.seed([np.array([0.6, 0.8]), np.zeros(2)], [11, 5])
        store.mark_audit_copies({"x": "edge:1"})  # the copy a worker made: the audit counts against it
        store.apply_control([Verdict("x", "edge:1", True)], ControlRule(target=0.0, step=0.25))
        follower.centroid_every_s = 0.0
        wait_for(lambda: follower.snapshot()["centroids"] is not None, 10, "the centroids")
        pools = follower.snapshot()["centroids"]
        assert [(p["tier"], p["shift"], p["adapted"]) for p in pools] == [("mobile", 1.0, 1), ("cloud", 0.0, 0)]
        assert (follower.snapshot()["threshold_offset"], follower.snapshot()["threshold_version"]) == (0.25, 1)
    finally:
        follower.stop()
    assert not follower.thread.is_alive()


def test_a_damaged_control_key_shows_no_offset_and_keeps_the_follower_alive():
    """Issue 28: a stored control that is not one raised out of the follower's thread, which then stopped."""
    store = InMemoryCentroidStore()
    store.seed([np.array([0.6, 0.8]), np.zeros(2)], [11, 5])
    store._control = {"offset": "garbage", "version": "1", "anchor": "0"}
    view = LiveView()
    CentroidWatch(store, _Calibration()).read(view)  # type: ignore[arg-type]
    assert view.control is None and view.shifts is not None


class _Source:
    def __init__(self) -> None:
        self.view, self.started, self.stopped = LiveView(), False, False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def snapshot(self) -> dict:
        return self.view.snapshot(time.time())


def _get(port: int, path: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.headers["content-type"], response.read()


def test_server_serves_page_scripts_snapshots_and_events():
    source = _Source()
    source.view.add_prediction(HAND[0])
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(source, every_s=0.1), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, "the server to start")
        kind, page = _get(port, "/")
        assert kind.startswith("text/html") and b'id="answered"' in page and b"/static/plotly.min.js" in page
        kind, plotly = _get(port, "/static/plotly.min.js")
        assert "javascript" in kind and len(plotly) > 1_000_000  # the whole library, served locally
        assert b"EventSource" in _get(port, "/static/dashboard.js")[1]
        assert json.loads(_get(port, "/snapshot")[1])["answered"] == 1
        assert _get(port, "/healthz")[1] == b"ok\n"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/events", timeout=10) as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            line = next(line for line in events if line.startswith(b"data:"))
        assert json.loads(line.removeprefix(b"data:"))["answered"] == 1
        assert source.started
    finally:
        server.should_exit = True
        thread.join(10)
    assert source.stopped


def test_a_busy_port_is_one_line():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        line = _one_line_error(["dashboard", "--broker", "kafka://127.0.0.1:1", "--port", str(port)])
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}")


def test_a_workdir_without_calibration_is_one_line(tmp_path):
    line = _one_line_error(["dashboard", "--broker", "kafka://127.0.0.1:1", "--workdir", str(tmp_path)])
    assert "no calibration.json" in line
