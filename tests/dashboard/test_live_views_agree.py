"""Issue 30 item 4: the live views agree. One count of answered samples in the sink, `dimee tail`, the dashboard
and Prometheus (repeats shown as such), a latency card over a recent window, and charts that start with the
server's recent history when a page opens. All on the embedded broker: no Kafka."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request

import pytest
import uvicorn
from dimee.predictions.sink import Sink
from dimee.predictions.tail import Tail
from prometheus_client import REGISTRY

from dimee.dashboard.follow import Follower
from dimee.dashboard.live import LiveView
from dimee.dashboard.server import bind, create_app
from dimee.streaming.messages import CostBreakdown, Prediction, Timings
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import context
from tests.support.processes import wait_for


def _prediction(sample_id: str, produced_at: float = 1.0, latency_s: float = 0.05) -> Prediction:
    return Prediction(id=sample_id, tier="edge", label_pred=1, confidence=0.9, exit_layer=3, layers_run=3,
                      cost=CostBreakdown(processing=0.1, offload=0.2, cloud=0.0, total=0.3), model="m", worker="w",
                      label=1, correct=True,
                      timings=Timings(produced_at=produced_at, routed_at=produced_at, started_at=produced_at,
                                      finished_at=produced_at + latency_s))


def _answered_metric(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"stage": "sink"}) or 0.0


def test_sink_tail_dashboard_and_prometheus_count_the_same_records_repeats_as_such(tmp_path, capsys):
    """Defect: after a repeated produce the sink, tail and dashboard said 1,506 (repeats dropped unseen) while the
    topic and Prometheus said 1,526. Now each counts every record read, a repeated id as a repeat."""
    broker, topics = InMemoryBroker(), Topics("agree")
    producer = broker.producer()
    ids = ["a", "b", "c", "d", "a", "b"]  # the first two samples produced again
    for sample_id in ids:
        producer.send(topics.predictions, sample_id.encode(), _prediction(sample_id).to_bytes())
    producer.flush()
    before = _answered_metric("dimee_answered_total"), _answered_metric("dimee_answer_repeats_total")

    out = tmp_path / "p.jsonl"
    sink = Sink(context(broker, topics), out, group_id="agree-sink")
    sink.run(idle_exit_s=0.3)
    tail = Tail(context(broker, topics), every_s=float("inf"))
    tail.run(idle_exit_s=0.3)
    follower = Follower(LiveView(), broker.consumer([topics.predictions], "agree-dashboard"), topics)
    follower.start()
    try:
        wait_for(lambda: follower.snapshot()["answered"] == len(ids), 10, "the dashboard to read every record")
        page = follower.snapshot()
    finally:
        follower.stop()
    prometheus = (_answered_metric("dimee_answered_total") - before[0],
                  _answered_metric("dimee_answer_repeats_total") - before[1])

    expected = {"answered": 6, "repeats": 2, "distinct": 4}
    assert sink.answered.summary() == tail.answered.summary() == expected
    assert {key: page[key] for key in expected} == expected
    assert prometheus == (6, 2)
    assert len(out.read_text().splitlines()) == 4  # the file still holds each sample once
    words = "6 answered, 2 repeats of 4 distinct"
    assert sink.stats.line().startswith(words) and tail.stats.line().startswith(words)
    assert page["answered_text"] == words
    assert sink.stats.summary()["count"] == 4  # accuracy, cost and latency are over the distinct samples


def test_the_latency_card_covers_the_last_minute_not_the_whole_history():
    """Defect: p50 said 73 s long after the backlog cleared: the card covered every prediction ever read."""
    view = LiveView()
    for n in range(50):  # a backlog, each sample waiting 73 s
        view.add_prediction(_prediction(f"old-{n}", produced_at=1000.0, latency_s=73.0))
    for n in range(10):  # then served in 50 ms, ten minutes later
        view.add_prediction(_prediction(f"new-{n}", produced_at=1600.0 + n, latency_s=0.05))
    now = 1600.0 + 10
    s = view.snapshot(now)
    assert s["latency_p50_ms"] == pytest.approx(50.0) and s["latency_p99_ms"] == pytest.approx(50.0)
    assert s["latency_window_s"] == view.latency_window_s
    idle = view.snapshot(now + view.latency_window_s + 1)
    assert idle["latency_p50_ms"] is None and idle["latency_p99_ms"] is None  # nothing finished in the window


class _Source:
    """Snapshots whose answered count grows by one each call, as a stream would."""

    def __init__(self) -> None:
        self.view = LiveView()
        self.calls = 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def snapshot(self) -> dict:
        self.calls += 1
        now = time.time()
        self.view.add_prediction(_prediction(f"s-{self.calls}", produced_at=now - 0.05))
        return self.view.snapshot(now)


def _serve(source: _Source, **options) -> tuple[uvicorn.Server, threading.Thread, int]:
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(source, **options), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the server to start")
    return server, thread, sock.getsockname()[1]


def _history(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/history", timeout=10) as response:
        return json.loads(response.read())


def test_the_server_keeps_a_bounded_recent_history_for_a_page_that_opens():
    """Defect: the charts started empty on every page load. The server records a chart point every interval,
    whether a page is open or not, and keeps the latest few."""
    from dimee.dashboard.live import CHART_FIELDS

    server, thread, port = _serve(_Source(), every_s=0.02, history_points=5)
    try:
        wait_for(lambda: len(_history(port)["points"]) >= 3, 10, "the server to record chart points")
        history = _history(port)
        points = history["points"]
        assert set(points[-1]) == set(CHART_FIELDS)
        assert [p["at"] for p in points] == sorted(p["at"] for p in points)  # oldest first
        assert points[-1]["latency_p50_ms"] == pytest.approx(50.0, abs=1.0)
        wait_for(lambda: _history(port)["points"][0]["at"] > points[-1]["at"], 10, "older points to be dropped")
        assert len(_history(port)["points"]) <= history["keep"]
    finally:
        server.should_exit = True
        thread.join(10)


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs chromium and chromedriver")
def test_a_page_that_opens_draws_the_recent_history_at_once():
    """The page itself (headless Chromium): its charts start with points from before it was opened, and the
    answered card shows the repeats in the sink's words."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a dev dependency: pip install -e .[dev]")
    from selenium.webdriver.chrome.service import Service

    source = _Source()
    source.view.add_prediction(_prediction("s-1"))  # read before: the source's first own "s-1" is a repeat
    server, thread, port = _serve(source, every_s=0.5)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        wait_for(lambda: len(_history(port)["points"]) >= 2, 10, "the server to record chart points")
        opened_ms = time.time() * 1000
        browser.get(f"http://127.0.0.1:{port}/")
        times = "const c = document.getElementById('chart-latency'); return c.data ? c.data[0].x.map(Number) : [];"
        wait_for(lambda: len(browser.execute_script(times)) > 0, 20, "the latency chart")
        assert min(browser.execute_script(times)) < opened_ms  # drawn from the server's history
        wait_for(lambda: "repeat" in browser.find_element("id", "repeats").text, 20, "the answered card")
        assert "1 repeat of" in browser.find_element("id", "repeats").text
        assert "last 60 s" in browser.find_element("id", "latency-window").text
    finally:
        browser.quit()
        server.should_exit = True
        thread.join(10)


def test_a_repeated_produce_shows_as_throughput_and_latency():
    """Seen on the local cluster: 600 repeats answered at 15/s while the page showed 0.0/s and no latency."""
    view, now = LiveView(), 1_000.0
    ids = [f"s-{i}" for i in range(20)]
    for sample_id in ids:
        view.add_prediction(_prediction(sample_id, produced_at=now - 500.0))
    for sample_id in ids:  # the same ids answered again within the last ten seconds
        view.add_prediction(_prediction(sample_id, produced_at=now - 5.0))
    snap = view.snapshot(now)
    assert (snap["answered"], snap["repeats"], snap["distinct"]) == (40, 20, 20)
    assert snap["throughput_per_s"] == 20 / 10.0 and snap["latency_p50_ms"] == pytest.approx(50.0)
