"""Latency: each tier's partition timed per layer on this machine, as its worker runs it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dimee.common.workdir import Workdir
from dimee.method.tiers import Tier, TierPlan
from dimee.offline.costs.inputs import Texts

if TYPE_CHECKING:
    import torch

    from dimee.model.early_exit import EarlyExitEncoder


@dataclass(frozen=True)
class MeasureConfig:
    """How to measure: texts per batch, timed repeats (the median is kept) after one warm-up pass, torch threads,
    and where to say what is being done (None: quietly)."""

    batch_size: int = 32
    repeats: int = 5
    threads: int = 1
    progress: Callable[[str], None] | None = None

    def say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)


@dataclass(frozen=True)
class PartitionTimes:
    """ms per sample: the embedding layer, and each layer run with its exit head (what a served layer costs)."""

    embedding_ms: float
    layer_ms: list[float]

    @property
    def ms_per_layer(self) -> float:
        return statistics.fmean(self.layer_ms)


def _time_pass(model: EarlyExitEncoder, batches: list[dict[str, torch.Tensor]]) -> list[float]:
    """Seconds of one pass over every batch: in the embedding layer ([0]) and in each layer with its head
    ([i+1]), every sample through every layer of the partition."""
    seconds = [0.0] * (model.num_layers + 1)
    for inputs in batches:
        mask = inputs["attention_mask"]
        start = time.perf_counter()
        hidden = model.embed(inputs["input_ids"], inputs.get("token_type_ids"))
        seconds[0] += time.perf_counter() - start
        for i in range(model.num_layers):
            start = time.perf_counter()
            hidden = model.run_layer(i, hidden, mask)
            model.heads[i](hidden, mask).softmax(-1).max(-1)  # early exit reads the head after every layer
            seconds[i + 1] += time.perf_counter() - start
    return seconds


def _medians(runs: list[list[float]], samples: int) -> PartitionTimes:
    """Per position, the median over the timed passes, in ms per sample."""
    medians = [1000.0 * statistics.median(column) / samples for column in zip(*runs, strict=True)]
    return PartitionTimes(embedding_ms=medians[0], layer_ms=medians[1:])


def time_partitions(workdir: Workdir, plan: TierPlan, texts: Texts,
                    config: MeasureConfig) -> dict[Tier, PartitionTimes]:
    """Each tier's partition, loaded as its worker loads it (layers 1..cap only), timed on `texts` batched as a
    worker batches them (padded to the longest sample). The partitions take turns within every repeat, so a
    machine busy for a while slows them alike; the first round warms caches and is dropped."""
    import torch

    from dimee.model.artifacts import load_model, load_tokenizer
    from dimee.model.tokenize import encode

    models = {tier: load_model(workdir.model, cap) for tier, cap in plan}
    tokenizer, max_length = load_tokenizer(workdir.model), next(iter(models.values())).spec.max_length
    batches = [encode(tokenizer, chunk, pairs, max_length) for chunk, pairs in texts.batches(config.batch_size)]
    runs: dict[Tier, list[list[float]]] = {tier: [] for tier in models}
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with torch.inference_mode():
            for repeat in range(config.repeats + 1):
                config.say("warm-up round" if repeat == 0 else f"timed round {repeat}/{config.repeats}")
                for tier, model in models.items():
                    seconds = _time_pass(model, batches)
                    runs[tier].extend([seconds] if repeat else [])
    finally:
        torch.set_num_threads(threads)  # a process-wide setting: leave it as found
    return {tier: _medians(runs[tier], len(texts)) for tier in models}
