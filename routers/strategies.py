"""How the router picks a sample's start tier, one strategy per kind of routing policy:

- `CentroidRouting`: the paper's nearest pool centroid of the routing embedding, the centroids held in the
  centroid store; adaptive (DIMEE-D) moves the chosen centroid towards the sample.
- `LearnedRouting`: the cost-aware learned router of `dimee.method.learned_router`.
- `FixedTier`: every sample to one tier (e.g. the edge, with escalation behind it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from dimee.routers.embedding import RoutingEmbedder
from dimee.state.base import CentroidSnapshot, CentroidStore, RefusesWrites, Update

from dimee.common.errors import DimeeError
from dimee.method import arithmetic
from dimee.method.calibration import Calibration
from dimee.streaming import metrics
from dimee.streaming.deployment import Deployment
from dimee.streaming.health import HEALTH
from dimee.streaming.messages import Sample
from dimee.streaming.runtime import log


@dataclass(frozen=True)
class Decision:
    pool: int
    distances: list[float] = field(default_factory=list)  # to each centroid; centroid routing only
    centroid_version: int = 0


class RoutingStrategy(Protocol):
    def decide(self, samples: list[Sample]) -> list[Decision]: ...


class FixedTier:
    def __init__(self, pool: int) -> None:
        self.pool = pool

    def decide(self, samples: list[Sample]) -> list[Decision]:
        return [Decision(self.pool)] * len(samples)


class LearnedRouting:
    def __init__(self, deployment: Deployment) -> None:
        # the learned router's features need the model's embedding layer in torch (and scikit-learn): only
        # a router serving this policy imports them
        from dimee.method.learned_router import LearnedRouter
        from dimee.method.routing_features import FeatureExtractor, load_rarity
        from dimee.model.artifacts import load_model, load_tokenizer

        workdir = deployment.workdir
        if not workdir.learned_router.exists():
            raise DimeeError(f"no learned router in {workdir}: run `dimee study --workdir {workdir}` first")
        self.learned = LearnedRouter.load(workdir.learned_router)
        self.features = FeatureExtractor(load_model(workdir.model, num_layers=0), load_tokenizer(workdir.model),
                                         load_rarity(workdir.rarity))

    def decide(self, samples: list[Sample]) -> list[Decision]:
        pairs = [s.text_pair for s in samples] if any(s.text_pair for s in samples) else None
        proba = self.learned.predict_proba(self.features.extract([s.text for s in samples], pairs))
        return [Decision(int(pool)) for pool in self.learned.decide(proba)]


class CentroidRouting:
    def __init__(self, calibration: Calibration, embedder: RoutingEmbedder, store: CentroidStore,
                 adaptive: bool) -> None:
        self.distance = calibration.distance
        self.embedder, self.store, self.adaptive = embedder, store, adaptive
        # the centroids as this router last saw them (after its own updates of the batch), for the metrics
        self.seen: tuple[list[np.ndarray | None], list[int]] | None = None
        self.embedded: np.ndarray | None = None  # the last batch's routing embeddings, for the drift score
        self.refusal: str | None = None  # why the store last refused this router's updates, until it takes one
        if adaptive:
            HEALTH.needs("centroid updates", self._refusing)

    def decide(self, samples: list[Sample]) -> list[Decision]:
        embeddings = self.embedded = self.embedder.embed(samples)
        snapshot = self.store.snapshot()
        # The batch in order, each sample seeing the moves before it (as in a sequential stream); the store
        # then makes the same moves, atomically and once per sample id (a replay changes nothing).
        routed = arithmetic.route_batch(embeddings, snapshot.means, snapshot.counts, self.distance, self.adaptive)
        if self.adaptive:
            self._adapt([Update(int(pool), embedding, sample.id) for sample, embedding, pool
                         in zip(samples, embeddings, routed.pools, strict=True)
                         if snapshot.means[pool] is not None], snapshot)
        self.seen = (routed.means, routed.counts)
        distances = np.where(np.isfinite(routed.distances), routed.distances, np.nan).tolist()
        return [Decision(int(pool), [None if d != d else d for d in row], snapshot.version)  # NaN: no centroid
                for pool, row in zip(routed.pools, distances, strict=True)]

    def _adapt(self, updates: list[Update], snapshot: CentroidSnapshot) -> None:
        """The batch's moves, written once per id. A store refusing writes (out of memory, a read-only replica)
        leaves the centroids where they are and the batch routed: a log line when it starts and ends,
        dimee_centroid_updates_skipped_total and a /readyz reason meanwhile."""
        try:
            self.store.apply(updates, read=snapshot)
        except RefusesWrites as exc:
            metrics.CENTROID_UPDATES_SKIPPED.inc(len(updates))
            if self.refusal is None:
                log.warning("centroids not moved: the store refuses writes; routing goes on", error=str(exc))
            self.refusal = str(exc)
            return
        if self.refusal is not None:
            log.info("centroids move again: the store takes writes")
            self.refusal = None

    def _refusing(self) -> str | None:
        return None if self.refusal is None else f"refused, routing without adapting ({self.refusal})"


def strategy_for(deployment: Deployment, embedder: RoutingEmbedder, store: CentroidStore) -> RoutingStrategy:
    """The strategy of the deployment's routing policy."""
    kind, calibration = deployment.policy.router, deployment.calibration
    if kind == "centroid":
        return CentroidRouting(calibration, embedder, store, deployment.policy.adaptive)
    if kind == "learned":
        return LearnedRouting(deployment)
    return FixedTier(calibration.plan.index(kind))
