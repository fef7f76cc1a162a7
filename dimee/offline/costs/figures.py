"""The measured figures, and `measure`, which takes them: the latency of every partition and the bytes of every
hop, with the machine they hold for."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dimee.common.workdir import Workdir
from dimee.method.tiers import Tier, TierPlan
from dimee.offline.costs.inputs import Texts
from dimee.offline.costs.latency import MeasureConfig, time_partitions
from dimee.offline.costs.message_sizes import hop_bytes, token_counts

KB = 1000


class Machine(BaseModel):
    """Where the figures were measured: they hold for that machine only."""

    platform: str
    cpu: str
    cpu_count: int
    torch_threads: int
    torch: str
    python: str


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def this_machine(threads: int) -> Machine:
    import torch

    return Machine(platform=platform.platform(), cpu=_cpu_name(), cpu_count=os.cpu_count() or 1,
                   torch_threads=threads, torch=torch.__version__, python=platform.python_version())


class TierFigures(BaseModel):
    """One tier's measured figures: ms per sample (per layer and in the embedding layer), mean message bytes."""

    tier: Tier
    layers: int
    ms_per_layer: float
    layer_ms: list[float]
    embedding_ms: float
    routed_bytes: float
    prediction_bytes: float
    escalation_bytes: float | None = None
    hidden_bytes: float | None = None

    @property
    def link_kb(self) -> float:
        """KB moved between the mobile and this tier per sample served there: routed message up, prediction back."""
        return (self.routed_bytes + self.prediction_bytes) / KB


class Measured(BaseModel):
    """The raw figures behind a measured cost model: the file's `measured` section."""

    date: str
    machine: Machine
    model: str
    num_layers: int
    hidden_size: int
    texts: str
    samples: int
    mean_tokens: float
    batch_size: int
    repeats: int
    tiers: list[TierFigures]
    pricing: dict[str, Any] | None = None
    raw_cloud_only: float | None = None

    def tier(self, tier: Tier) -> TierFigures | None:
        return next((figures for figures in self.tiers if figures.tier is tier), None)


def measure(workdir: Workdir, plan: TierPlan, texts: Texts, config: MeasureConfig) -> Measured:
    """Latency of every partition and bytes of every hop, on this machine, for the model in WORKDIR/model."""
    from dimee.model.spec import load_spec

    spec = load_spec(workdir.model)
    times = time_partitions(workdir, plan, texts, config)
    config.say("sizing the messages of every hop")
    tokens = token_counts(workdir, texts)
    sizes = hop_bytes(plan, texts, tokens, spec.hidden_size)
    tiers = [TierFigures(tier=tier, layers=cap, ms_per_layer=times[tier].ms_per_layer, layer_ms=times[tier].layer_ms,
                         embedding_ms=times[tier].embedding_ms, routed_bytes=sizes[tier].routed,
                         prediction_bytes=sizes[tier].prediction, escalation_bytes=sizes[tier].escalation,
                         hidden_bytes=sizes[tier].hidden) for tier, cap in plan]
    return Measured(date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), machine=this_machine(config.threads),
                    model=str(workdir.model), num_layers=spec.num_layers, hidden_size=spec.hidden_size,
                    texts=texts.source, samples=len(texts), mean_tokens=statistics.fmean(tokens),
                    batch_size=config.batch_size, repeats=config.repeats, tiers=tiers)
