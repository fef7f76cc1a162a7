"""Feeds a `LiveView` from the predictions and dead-letter topics and from the centroid store, on a thread
of its own: Kafka's poll blocks, and the page's event loop must not."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from dimee.common.errors import DimeeError
from dimee.dashboard.live import LiveView, centroid_shifts
from dimee.method.calibration import Calibration
from dimee.state import CentroidStore, NotSeeded, open_store
from dimee.streaming.config import Settings
from dimee.streaming.deployment import Deployment
from dimee.streaming.messages import Audit, DeadLetter, MessageError, Prediction, parse
from dimee.streaming.transport import open_transport
from dimee.streaming.transport.base import Consumer, Record, Topics

log = logging.getLogger(__name__)


class CentroidWatch:
    """The router's adaptive centroids as read from the store, set against calibration.json's."""

    def __init__(self, store: CentroidStore, calibration: Calibration) -> None:
        self.store, self.calibration = store, calibration
        self.calibrated = calibration.centroid_arrays()
        self.tiers = list(calibration.plan.names)

    def read(self, view: LiveView) -> None:
        try:
            snap = self.store.snapshot()
        except NotSeeded:
            view.set_centroids(None, "the store is not seeded yet (dimee seed, or dimee up --reseed)")
            return
        except DimeeError as exc:  # Redis away for a moment: keep the last picture, say why it is stale
            view.centroid_note = f"centroid store unreachable: {exc}"
            return
        shifts = centroid_shifts(snap.means, snap.counts, self.calibrated, self.calibration.pool_sizes, self.tiers)
        view.set_centroids(shifts, f"centroid version {snap.version}")
        try:
            view.control = self.store.control()
        except DimeeError:  # a damaged control key (the router serves the calibrated thresholds): no offset shown
            view.control = None

    def close(self) -> None:
        self.store.close()


class Follower:
    """Polls the topics into the view until stopped. The consumer never commits: every start replays the
    topics' retained history, so the page shows the whole run, not only what came since it opened."""

    def __init__(self, view: LiveView, consumer: Consumer, topics: Topics, centroids: CentroidWatch | None = None,
                 centroid_every_s: float = 2.0) -> None:
        self.view, self.consumer, self.topics = view, consumer, topics
        self.centroids, self.centroid_every_s = centroids, centroid_every_s
        self.lock = threading.Lock()  # the view is read by the server's event loop, written here
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dashboard-follower", daemon=True)

    def snapshot(self, clock: Callable[[], float] = time.time) -> dict:
        with self.lock:
            return self.view.snapshot(clock())

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stopping.set()
        self.thread.join(timeout_s)

    def _run(self) -> None:
        next_centroids = 0.0
        try:
            while not self.stopping.is_set():
                records = self._poll()
                with self.lock:
                    for record in records:
                        self._fold(record)
                    if self.centroids is not None and time.monotonic() >= next_centroids:
                        next_centroids = time.monotonic() + self.centroid_every_s
                        self.centroids.read(self.view)
        finally:
            self.consumer.close()
            if self.centroids is not None:
                self.centroids.close()

    def _poll(self) -> list[Record]:
        try:
            return self.consumer.poll(500, 0.5)
        except DimeeError as exc:  # the broker away for a moment: the page keeps its numbers, we try again
            log.warning("dashboard poll failed: %s", exc)
            self.stopping.wait(1.0)
            return []

    def _fold(self, record: Record) -> None:
        try:
            if record.topic == self.topics.dead_letter:
                self.view.add_dead_letter(parse(DeadLetter, record.value))
            elif record.topic == self.topics.audits:
                self.view.add_audit(parse(Audit, record.value))
            else:
                self.view.add_prediction(parse(Prediction, record.value))
        except MessageError:
            self.view.unreadable += 1  # not a message of this version: counted, never fatal to the page


def open_follower(settings: Settings, deployment: Deployment | None, group: str) -> Follower:
    """A follower of the configured broker (and, with a deployment and a shared store, its centroids). Raises
    ServiceUnavailable at once when the broker cannot be reached: the command says so in one line."""
    transport = open_transport(settings.broker, settings.api_version_tuple(), "dimee-dashboard",
                               settings.kafka_security())
    topics = Topics(settings.topic_prefix)
    wanted = [topics.predictions, topics.dead_letter, topics.audits]
    # created if absent, as every stage does: a subscription to a topic made later is seen only at the next
    # metadata refresh, minutes away, and the page would stay empty until then
    transport.ensure_topics(wanted, settings.partitions, settings.replication_factor)
    consumer = transport.consumer(wanted, group, read_committed=transport.supports_transactions)
    if deployment is None:
        return Follower(LiveView(), consumer, topics)
    calibration = deployment.calibration
    view = LiveView(cloud_only_cost=calibration.cost_model.cloud_only(calibration.num_layers))
    if settings.state.startswith("memory://"):  # an embedded store lives inside the router's own process
        view.centroid_note = "the centroids live inside the router (memory://): pass --state redis://… to see them"
        return Follower(view, consumer, topics)
    store = open_store(settings.state, deployment.state_id, settings.seen_ttl_s, pipeline=settings.topic_prefix)
    return Follower(view, consumer, topics, CentroidWatch(store, calibration))
