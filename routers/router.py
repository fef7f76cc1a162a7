"""The router: decides each sample's start tier before any transformer layer runs.

Policies: `centroid` (the paper: nearest pool centroid of the routing embedding; `adaptive` moves that
centroid towards the sample, DIMEE-D), `learned` (the cost-aware learned router of learned_router.py), or a
fixed tier (`mobile`, `edge`, `cloud`: e.g. all to the edge with escalation behind it)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from dimee import method
from dimee.calibration import Calibration
from dimee.errors import DimeeError
from dimee.learned_router import LearnedRouter
from dimee.messages import Feedback, Routed, Sample
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.model.tokenize import encode
from dimee.routing_features import FeatureExtractor, load_rarity
from dimee.stage import Output, Stage
from dimee.transport.base import Record
from state.base import CentroidStore, Update

RouterPolicy = Literal["centroid", "learned", "mobile", "edge", "cloud"]


class Router(Stage):
    message_type = Sample

    def __init__(self, *args, model_dir: Path, calibration: Calibration, store: CentroidStore,
                 adaptive: bool = False, policy: RouterPolicy = "centroid", router_id: str | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.name = "router"
        self.calibration = calibration
        self.store = store
        self.adaptive = adaptive and policy == "centroid"
        self.policy = policy
        self.router_id = router_id or f"router-{socket.gethostname()}-{os.getpid()}"
        self.embedder = load_model(model_dir, num_layers=0)  # the embedding layer only: no transformer layer
        self.tokenizer = load_tokenizer(model_dir)
        self.plan = calibration.tier_plan()
        self.learned: LearnedRouter | None = None
        if policy == "learned":
            workdir = model_dir.parent
            if not (workdir / "learned_router.json").exists():
                raise DimeeError(f"no learned router in {workdir}: run `dimee study --workdir {workdir}` first")
            self.learned = LearnedRouter.load(workdir / "learned_router.json")
            self.features = FeatureExtractor(self.embedder, self.tokenizer, load_rarity(workdir / "token_rarity.json"))

    def embed(self, samples: list[Sample]) -> np.ndarray:
        pairs = [s.text_pair for s in samples] if any(s.text_pair for s in samples) else None
        inputs = encode(self.tokenizer, [s.text for s in samples], pairs, self.embedder.spec.max_length)
        with torch.inference_mode():
            return self.embedder.routing_embedding(**inputs, raw=self.calibration.embedding == "raw").numpy()

    def _fixed_or_learned(self, samples: list[Sample]) -> list[int]:
        if self.learned is not None:
            pairs = [s.text_pair for s in samples] if any(s.text_pair for s in samples) else None
            proba = self.learned.predict_proba(self.features.extract([s.text for s in samples], pairs))
            return self.learned.decide(proba).tolist()
        index = [t.value for t, _ in self.plan].index(self.policy)
        return [index] * len(samples)

    def process(self, batch: list[tuple[Record, Sample]]) -> list[Output]:
        samples = [message for _, message in batch]
        if self.policy != "centroid":
            pools = self._fixed_or_learned(samples)
            return [self._output(s, p, [], 0) for s, p in zip(samples, pools, strict=True)]
        embeddings = self.embed(samples).astype(np.float64)
        snapshot = self.store.snapshot()
        means, counts = snapshot.means, list(snapshot.counts)
        updates, outputs = [], []
        for sample, embedding in zip(samples, embeddings, strict=True):
            distances = method.distances(embedding, means, self.calibration.distance)
            pool = int(np.argmin(distances)) if np.isfinite(distances).any() else len(self.plan) - 1
            if self.adaptive and means[pool] is not None:
                # Mirror the server-side step so later samples of this batch see it, as in a sequential stream.
                means[pool] = method.running_mean_step(means[pool], embedding, counts[pool])
                counts[pool] += 1
                updates.append(Update(pool, embedding, sample.id))
            outputs.append(self._output(sample, pool, distances.tolist(), snapshot.version))
        if updates:
            self.store.apply(updates)  # atomic and idempotent per sample id: a replay changes nothing
        return outputs

    def _output(self, sample: Sample, pool: int, distances: list[float], version: int) -> Output:
        tier = self.plan[pool][0]
        routed = Routed(**sample.model_dump(), tier=tier, pool=pool,
                        distances=[None if not np.isfinite(d) else float(d) for d in distances],
                        centroid_version=version, router=self.router_id)
        return Output(self.topics.tier(tier.value), sample.id.encode(), routed.to_bytes())


class FeedbackApplier(Stage):
    """Label-free adaptation: moves the centroid of the pool each sample was *observed* in (reported by the
    workers) towards its routing embedding, once per sample id; running mean, or EMA when gamma > 0."""

    message_type = Feedback

    def __init__(self, *args, router: Router, gamma: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.name = "feedback"
        self.router, self.gamma = router, gamma

    def process(self, batch: list[tuple[Record, Feedback]]) -> list[Output]:
        notes = [note for _, note in batch]
        samples = [Sample(id=n.id, text=n.text, text_pair=n.text_pair) for n in notes]
        embeddings = self.router.embed(samples).astype(np.float64)
        self.router.store.apply([Update(n.observed_pool, e, f"feedback:{n.id}", self.gamma)
                                 for n, e in zip(notes, embeddings, strict=True)])
        return []

