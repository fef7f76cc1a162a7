"""A tier worker: holds only its partition (layers 1..cap), runs micro-batches with batched early exit at
α*, and publishes one prediction per sample with its path, exit layer, confidence, cost and timings.

With escalation on, a sample that has not reached α by the cap goes to the next tier's topic instead
(`recompute`: it starts again at layer 1; `continue`: its fp16 hidden state travels with it). With feedback
on, the worker also reports the sample's observed pool, known for free from where it exited."""

from __future__ import annotations

import base64
import os
import socket
import time
from pathlib import Path

import numpy as np
import torch

from dimee.calibration import Calibration
from dimee.escalation import EscalationMode
from dimee.messages import CostBreakdown, Feedback, Hop, Prediction, Routed, Timings
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.model.tokenize import encode
from dimee.stage import Output, Stage
from dimee.tiers import Tier
from dimee.transport.base import Record


def pack_hidden(hidden: torch.Tensor) -> str:
    return base64.b64encode(hidden.to(torch.float16).numpy().tobytes()).decode("ascii")


def unpack_hidden(blob: str, hidden_size: int) -> torch.Tensor:
    array = np.frombuffer(base64.b64decode(blob), dtype=np.float16).reshape(-1, hidden_size)
    return torch.from_numpy(array.astype(np.float32))


class TierWorker(Stage):
    message_type = Routed

    def __init__(self, *args, tier: Tier, model_dir: Path, calibration: Calibration, worker_id: str | None = None,
                 escalation: EscalationMode = "off", feedback: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tier = Tier(tier)
        self.name = f"worker-{self.tier.value}"
        self.calibration = calibration
        self.plan = calibration.tier_plan()
        self.index = [t for t, _ in self.plan].index(self.tier)
        self.cap = self.plan[self.index][1]
        self.next_tier = self.plan[self.index + 1][0] if self.index + 1 < len(self.plan) else None
        self.escalation, self.feedback = escalation, feedback
        self.model = load_model(model_dir, num_layers=self.cap)
        self.tokenizer = load_tokenizer(model_dir)
        self.model_name = f"{calibration.model_id}:{self.tier.value}:1-{self.cap}"
        self.worker_id = worker_id or f"{self.name}-{socket.gethostname()}-{os.getpid()}"

    def observed_pool(self, exit_layer: int) -> int:
        return next(i for i, (_, cap) in enumerate(self.plan) if exit_layer <= cap)

    def process(self, batch: list[tuple[Record, Routed]]) -> list[Output]:
        by_start: dict[int, list[Routed]] = {}
        for _, message in batch:
            by_start.setdefault(min(message.start_layer, self.cap - 1), []).append(message)
        outputs: list[Output] = []
        for start, messages in by_start.items():
            outputs.extend(self._run(start, messages))
        return outputs

    def _run(self, start: int, messages: list[Routed]) -> list[Output]:
        started = time.time()
        pairs = [m.text_pair for m in messages] if any(m.text_pair for m in messages) else None
        inputs = encode(self.tokenizer, [m.text for m in messages], pairs, self.model.spec.max_length)
        lengths = inputs["attention_mask"].sum(1).tolist()
        hidden = None
        if start > 0:
            width, size = inputs["input_ids"].shape[1], self.model.spec.hidden_size
            hidden = torch.zeros(len(messages), width, size)
            for row, message in enumerate(messages):
                state = unpack_hidden(message.hidden_fp16 or "", size)
                hidden[row, : state.shape[0]] = state[:width]
        carry = self.escalation == "continue" and self.next_tier is not None
        result = self.model.early_exit(**inputs, alpha=self.calibration.alpha, cap=self.cap, start_layer=start,
                                       hidden=hidden, keep_hidden=carry)
        finished = time.time()
        outputs = []
        for row, message in enumerate(messages):
            exit_layer, confidence = int(result.exit_layer[row]), float(result.confidence[row])
            run = exit_layer - start
            here = CostBreakdown(**self.calibration.cost_model.breakdown(self.tier, run))
            reached = confidence >= self.calibration.alpha
            if not reached and self.next_tier is not None and self.escalation != "off":
                hop = Hop(tier=self.tier, layers_run=run, cost=here)
                onward = message.model_copy(update={
                    "tier": self.next_tier, "hops": [*message.hops, hop],
                    "start_layer": self.cap if self.escalation == "continue" else 0,
                    "hidden_fp16": pack_hidden(result.hidden[row, : lengths[row]]) if carry else None,
                })
                outputs.append(Output(self.topics.tier(self.next_tier.value), message.id.encode(), onward.to_bytes()))
                continue
            total = here
            for hop in message.hops:
                total = total + hop.cost
            label_pred = int(result.pred[row])
            prediction = Prediction(
                id=message.id, tier=self.tier, label_pred=label_pred, confidence=confidence, exit_layer=exit_layer,
                layers_run=run + sum(h.layers_run for h in message.hops), cost=total, label=message.label,
                correct=None if message.label is None else label_pred == message.label, model=self.model_name,
                worker=self.worker_id, pool=message.pool, path=[*(h.tier for h in message.hops), self.tier],
                meta=message.meta, timings=Timings(produced_at=message.produced_at, routed_at=message.routed_at,
                                                   started_at=started, finished_at=finished),
            )
            outputs.append(Output(self.topics.predictions, message.id.encode(), prediction.to_bytes()))
            if self.feedback and (reached or self.next_tier is None):
                note = Feedback(id=message.id, text=message.text, text_pair=message.text_pair,
                                routed_pool=message.pool, observed_pool=self.observed_pool(exit_layer))
                outputs.append(Output(self.topics.feedback, message.id.encode(), note.to_bytes()))
        return outputs
