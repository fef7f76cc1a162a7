"""The routing embedding e(x): the embedding layer's output averaged over real tokens (DESIGN.md section 1),
computed without any transformer layer. Shared by the routing strategies and the feedback applier."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dimee.messages import Sample
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.model.tokenize import encode


class RoutingEmbedder:
    def __init__(self, model_dir: Path, raw: bool = False) -> None:
        self.model = load_model(model_dir, num_layers=0)  # the embedding layer only
        self.tokenizer = load_tokenizer(model_dir)
        self.raw = raw

    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        """(N, H) float64 routing embeddings of a batch of samples."""
        pairs = [s.text_pair for s in samples] if any(s.text_pair for s in samples) else None
        inputs = encode(self.tokenizer, [s.text for s in samples], pairs, self.model.spec.max_length)
        with torch.inference_mode():
            return self.model.routing_embedding(**inputs, raw=self.raw).numpy().astype(np.float64)
