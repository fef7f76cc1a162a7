"""The router: embeds each sample with the embedding layer alone, sends it to the tier of the nearest pool
centroid, and in adaptive mode (DIMEE-D) moves that centroid towards it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import torch

from dimee import method
from dimee.calibration import Calibration
from dimee.messages import Routed, Sample
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.model.tokenize import encode
from dimee.stage import Output, Stage
from dimee.transport.base import Record
from state.base import CentroidStore, Update


class Router(Stage):
    message_type = Sample

    def __init__(self, *args, model_dir: Path, calibration: Calibration, store: CentroidStore,
                 adaptive: bool = False, router_id: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.name = "router"
        self.calibration = calibration
        self.store = store
        self.adaptive = adaptive
        self.router_id = router_id or f"router-{socket.gethostname()}-{os.getpid()}"
        self.embedder = load_model(model_dir, num_layers=0)  # the embedding layer only: no transformer layer
        self.tokenizer = load_tokenizer(model_dir)
        self.plan = calibration.tier_plan()

    def embed(self, samples: list[Sample]) -> np.ndarray:
        pairs = [s.text_pair for s in samples] if any(s.text_pair for s in samples) else None
        inputs = encode(self.tokenizer, [s.text for s in samples], pairs, self.embedder.spec.max_length)
        with torch.inference_mode():
            return self.embedder.routing_embedding(**inputs, raw=self.calibration.embedding == "raw").numpy()

    def process(self, batch: list[tuple[Record, Sample]]) -> list[Output]:
        samples = [message for _, message in batch]
        embeddings = self.embed(samples).astype(np.float64)
        snapshot = self.store.snapshot()
        means, counts = snapshot.means, list(snapshot.counts)
        updates, outputs = [], []
        for sample, embedding in zip(samples, embeddings, strict=True):
            distances = method.distances(embedding, means, self.calibration.distance)
            pool = int(np.argmin(distances)) if np.isfinite(distances).any() else len(self.plan) - 1
            if self.adaptive and means[pool] is not None:
                # Mirror the server-side step so later samples of this batch see it, as in a sequential stream.
                means[pool] = means[pool] + (embedding - means[pool]) / (counts[pool] + 1)
                counts[pool] += 1
                updates.append(Update(pool, embedding, sample.id))
            tier = self.plan[pool][0]
            routed = Routed(**sample.model_dump(), tier=tier, pool=pool,
                            distances=[None if not np.isfinite(d) else float(d) for d in distances],
                            centroid_version=snapshot.version, router=self.router_id)
            outputs.append(Output(self.topics.tier(tier.value), sample.id.encode(), routed.to_bytes()))
        if updates:
            self.store.apply(updates)  # atomic and idempotent per sample id: a replay changes nothing
        return outputs
