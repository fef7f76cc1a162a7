"""A tier worker: holds only its partition (layers 1..cap), runs micro-batches with batched early exit at
α*, and publishes one prediction per sample with its exit layer, confidence, cost and timings."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from dimee.calibration import Calibration
from dimee.config import Tier
from dimee.messages import CostBreakdown, Prediction, Routed, Timings
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.model.tokenize import encode
from dimee.stage import Output, Stage
from dimee.transport.base import Record


class TierWorker(Stage):
    message_type = Routed

    def __init__(self, *args, tier: Tier, model_dir: Path, calibration: Calibration,
                 worker_id: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tier = Tier(tier)
        self.name = f"worker-{self.tier.value}"
        self.calibration = calibration
        self.cap = dict(calibration.tier_plan())[self.tier]
        self.model = load_model(model_dir, num_layers=self.cap)
        self.tokenizer = load_tokenizer(model_dir)
        self.model_name = f"{calibration.model_id}:{self.tier.value}:1-{self.cap}"
        self.worker_id = worker_id or f"{self.name}-{socket.gethostname()}-{os.getpid()}"

    def process(self, batch: list[tuple[Record, Routed]]) -> list[Output]:
        started = time.time()
        routed = [message for _, message in batch]
        pairs = [r.text_pair for r in routed] if any(r.text_pair for r in routed) else None
        inputs = encode(self.tokenizer, [r.text for r in routed], pairs, self.model.spec.max_length)
        result = self.model.early_exit(**inputs, alpha=self.calibration.alpha, cap=self.cap)
        finished = time.time()
        outputs = []
        for i, message in enumerate(routed):
            layers = int(result.exit_layer[i])
            label_pred = int(result.pred[i])
            prediction = Prediction(
                id=message.id, tier=self.tier, label_pred=label_pred, confidence=float(result.confidence[i]),
                exit_layer=layers, layers_run=layers,
                cost=CostBreakdown(**self.calibration.cost_model.breakdown(self.tier, layers)),
                label=message.label, correct=None if message.label is None else label_pred == message.label,
                model=self.model_name, worker=self.worker_id, pool=message.pool, meta=message.meta,
                timings=Timings(produced_at=message.produced_at, routed_at=message.routed_at,
                                started_at=started, finished_at=finished),
            )
            outputs.append(Output(self.topics.predictions, message.id.encode(), prediction.to_bytes()))
        return outputs
