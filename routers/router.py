"""The router: decides each sample's start tier before any transformer layer runs, with the strategy of
its routing policy (`routers.strategies`), and publishes the routed sample to that tier's topic."""

from __future__ import annotations

from collections import Counter

import numpy as np
from dimee.routers.controller import LiveControl
from dimee.routers.embedding import RoutingEmbedder
from dimee.routers.strategies import CentroidRouting, Decision, strategy_for
from dimee.state.base import RESTORE_HINT, CentroidStore, NotSeeded, Update

from dimee import __version__
from dimee.method import arithmetic
from dimee.method.control import Control
from dimee.streaming import metrics
from dimee.streaming.config import redact
from dimee.streaming.deployment import Deployment
from dimee.streaming.drift import DriftWatch
from dimee.streaming.health import HEALTH
from dimee.streaming.messages import Feedback, Routed, Sample
from dimee.streaming.runtime import log
from dimee.streaming.stage import Output, Stage, StageContext
from dimee.streaming.transport.base import Record


class Router(Stage):
    name = "router"
    message_type = Sample

    def __init__(self, context: StageContext, deployment: Deployment, store: CentroidStore,
                 group_id: str | None = None) -> None:
        super().__init__(context, [context.topics.samples], group_id or context.topics.router_group)
        HEALTH.expect(self.name, "loading its model")
        self.plan = deployment.calibration.plan
        metrics.start_router([tier.value for tier in self.plan.tiers])
        self.store = store
        self.router_id = context.instance("router")
        self.embedder = RoutingEmbedder(deployment.workdir.model, raw=deployment.calibration.embedding == "raw")
        self.strategy = strategy_for(deployment, self.embedder, store)
        self.num_labels = deployment.calibration.num_labels
        self.policy = deployment.policy
        # an offset only matters where samples go up; none stamped (calibrated thresholds) while the stored one is bad
        self.control = LiveControl(store, self.name) if deployment.policy.escalation != "off" else None
        self.calibrated = deployment.calibration.centroid_arrays()
        self.distance = deployment.calibration.distance
        described = deployment.describe()
        metrics.DEPLOYMENT.info({"role": self.name, "version": __version__, "state_id": deployment.state_id,
                                 **{k: str(v) for k, v in described.items()}})
        log.info("serving", stage=self.name, **described)
        if deployment.policy.router == "centroid":
            where = getattr(store, "url", None)  # Redis's address, for /readyz to name the service it waits on
            HEALTH.needs(f"centroid store ({redact(where)})" if where else "centroid store",
                         lambda: _missing_centroids(store))
        quantiles = deployment.calibration.nearest_centroid_quantiles
        self.drift = DriftWatch("nearest_centroid", np.array(quantiles), sum(deployment.calibration.pool_sizes)) \
            if quantiles else None

    def parse_context(self) -> dict:
        return {**super().parse_context(), "num_labels": self.num_labels}

    def process(self, batch: list[tuple[Record, Sample]]) -> list[Output]:
        samples = [message for _, message in batch]
        decisions = self.strategy.decide(samples)
        control = self.control.read() if self.control is not None else None
        outputs = [self._output(s, d, control) for s, d in zip(samples, decisions, strict=True)]
        for pool, routed in Counter(d.pool for d in decisions).items():  # per batch: label lookups cost
            metrics.ROUTED.labels(self.plan.tiers[pool].value).inc(routed)
        nearest = [min(known) for d in decisions if (known := [x for x in d.distances if x is not None])]
        for distance in nearest:  # centroid routing only: other strategies measure no distance
            metrics.NEAREST_CENTROID.observe(distance)
        if self.drift is not None:  # against calibration, never the centroids adaptive routing has moved
            self.drift.add(self._nearest_calibrated(samples))
        if isinstance(self.strategy, CentroidRouting) and self.strategy.seen is not None:
            self._report_centroids(*self.strategy.seen)
        return outputs

    def _nearest_calibrated(self, samples: list[Sample]) -> list[float]:
        """Each sample's distance to its nearest calibrated centroid, the drift score's measure whatever the
        policy: from the routing embeddings centroid routing made, else the embedding layer's (~0.1 ms a sample)."""
        embedded = self.strategy.embedded if isinstance(self.strategy, CentroidRouting) else None
        embeddings = self.embedder.embed(samples) if embedded is None else embedded
        distances = arithmetic.nearest_distances(embeddings, self.calibrated, self.distance)
        return [float(d) for d in distances if np.isfinite(d)]

    def _report_centroids(self, means: list[np.ndarray | None], counts: list[int]) -> None:
        """How far each pool's centroid has moved from calibration: the picture of drift-adaptive routing (from
        the centroids the batch was routed with: no extra round trip to the store)."""
        for pool, (now, then) in enumerate(zip(means, self.calibrated, strict=True)):
            metrics.POOL_SAMPLES.labels(str(pool)).set(counts[pool])
            if now is not None and then is not None:
                metrics.CENTROID_SHIFT.labels(str(pool)).set(float(np.linalg.norm(now - then)))

    def _output(self, sample: Sample, decision: Decision, control: Control | None) -> Output:
        tier = self.plan.tiers[decision.pool]
        # the sample's validated fields as they are (a dump per sample costs more than the rest of this)
        routed = Routed(**sample.__dict__, tier=tier, pool=decision.pool, distances=decision.distances,
                        centroid_version=decision.centroid_version, router=self.router_id,
                        digest=sample.content_digest(), policy=self.policy, control=control)
        return Output.of(self.topics.tier(tier.value), routed)


def _missing_centroids(store: CentroidStore) -> str | None:
    """What readiness says of a store that answers without the centroids (an unreachable one raises)."""
    try:
        store.snapshot()
    except NotSeeded:
        return f"holds no centroids (or not all) for this model: {RESTORE_HINT}"
    return None


class FeedbackApplier(Stage):
    """Label-free adaptation: moves the centroid of the pool each sample was *observed* in (reported by the
    workers) towards its routing embedding, once per sample id; running mean, or EMA when gamma > 0."""

    name = "feedback"
    message_type = Feedback

    def __init__(self, context: StageContext, router: Router, gamma: float = 0.0) -> None:
        super().__init__(context, [context.topics.feedback], context.topics.feedback_group)
        self.embedder, self.store, self.gamma = router.embedder, router.store, gamma

    def process(self, batch: list[tuple[Record, Feedback]]) -> list[Output]:
        notes = [note for _, note in batch]
        embeddings = self.embedder.embed([Sample(id=n.id, text=n.text, text_pair=n.text_pair) for n in notes])
        self.store.apply([Update(n.observed_pool, e, f"feedback:{n.id}", self.gamma)
                          for n, e in zip(notes, embeddings, strict=True)])
        return []
