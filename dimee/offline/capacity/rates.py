"""What one instance of each role computes per second, from measurements: the cost file `dimee costs` writes
(per tier, ms per sample per layer on the CPU it ran on, and every hop's message bytes), the bench's
`runs/benchmark.json` (each worker alone on Kafka, figure b; the router on one thread, figure c) where given,
and GPU rates the user measured (`benchmarks/device_benchmark.py`). Reading files and nothing else: the
arithmetic that sizes a deployment from these rates is `dimee.offline.capacity.sizing`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import ValidationError

from dimee.common.errors import DimeeError
from dimee.method.tiers import TIER_NAMES
from dimee.offline.costs.figures import Measured

# The router on one thread, adaptive, Redis included (docs/operations.md, "Sizing threads"; bench figure c):
# the figure used where no bench file says otherwise.
ROUTER_PER_THREAD = 10_000.0


@dataclass(frozen=True)
class TierRate:
    """Samples/s of one tier's worker: per CPU thread (every sample through every layer of the tier's
    partition, so early exit only makes it faster), and per GPU worker where measured."""

    cpu_per_thread: float
    gpu_per_worker: float | None = None


@dataclass(frozen=True)
class Rates:
    tiers: dict[str, TierRate]
    router_per_thread: float
    routed_bytes: float  # mean routed message (the sample and its routing), the largest record on the path
    prediction_bytes: float
    sources: tuple[str, ...]  # where each figure came from, printed with the plan

    def with_gpu(self, gpu: dict[str, float]) -> Rates:
        tiers = {tier: replace(rate, gpu_per_worker=gpu.get(tier, rate.gpu_per_worker))
                 for tier, rate in self.tiers.items()}
        named = ", ".join(f"{tier} {rate:,.0f}/s" for tier, rate in gpu.items())
        return replace(self, tiers=tiers, sources=(*self.sources, f"GPU workers as given: {named}"))


def _json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise DimeeError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise DimeeError(f"{path}: the {what} is not JSON ({exc.msg}, line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise DimeeError(f"{path}: the {what} is not a JSON object")
    return data


def from_cost_file(path: Path) -> Rates:
    """CPU rates from a `dimee costs` file: one thread does 1000 / (layers × ms per layer) samples/s on a
    tier; measured with T threads, a thread is counted as 1/T of that (threads never scale better)."""
    data = _json(path, "cost file")
    if "measured" not in data:
        raise DimeeError(f"{path}: no `measured` section: a cost file written by `dimee costs` has one (a "
                         "hand-written cost model has no timings to size a deployment with)")
    try:
        measured = Measured.model_validate(data["measured"])
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise DimeeError(f"{path}: measured.{where}: {error['msg']}") from exc
    figures = {f.tier.value: f for f in measured.tiers}
    missing = [tier for tier in TIER_NAMES if tier not in figures]
    if missing:
        raise DimeeError(f"{path}: no timing for tier(s) {', '.join(missing)}")
    threads = max(1, measured.machine.torch_threads)
    tiers = {tier: TierRate(1000.0 / (f.layers * f.ms_per_layer) / threads) for tier, f in figures.items()}
    routed = max(f.routed_bytes for f in figures.values())
    prediction = max(f.prediction_bytes for f in figures.values())
    source = (f"CPU: {path} ({measured.date}, {measured.machine.cpu}, {threads} torch thread(s), "
              f"{measured.mean_tokens:.1f} tokens a text)")
    return Rates(tiers, ROUTER_PER_THREAD, routed, prediction,
                 (source, f"router: {ROUTER_PER_THREAD:,.0f}/s a thread (docs/operations.md)"))


def _cores(machine: str) -> int:
    match = re.search(r"(\d+) cores", machine)
    return int(match.group(1)) if match else 1


def _median(figure: object) -> float | None:
    """A bench figure: a number, or a spread {median, min, max}."""
    value = figure.get("median") if isinstance(figure, dict) else figure
    return float(value) if isinstance(value, int | float) and value > 0 else None


def with_bench(rates: Rates, path: Path) -> Rates:
    """CPU rates measured by `make bench` instead: each worker alone on Kafka (figure b; it ran with every
    core of the bench machine, so a thread is counted as its share), the router on one thread (figure c).
    Those include the broker's round trips, so they are lower than compute alone."""
    data = _json(path, "bench file")
    stages = data.get("b_stages")
    if not isinstance(stages, dict):
        raise DimeeError(f"{path}: no b_stages: a runs/benchmark.json written by `make bench` has them")
    cores = _cores(str(data.get("machine", "")))
    tiers = dict(rates.tiers)
    for tier in TIER_NAMES:
        per_s = _median(stages.get(f"worker-{tier}", {}).get("per_s"))
        if per_s is not None:
            tiers[tier] = replace(tiers[tier], cpu_per_thread=per_s / cores)
    router = _median(data.get("router", {}).get("per_s"))
    sources = tuple(s for s in rates.sources if router is None or not s.startswith("router:"))
    return replace(rates, tiers=tiers, router_per_thread=router or rates.router_per_thread,
                   sources=(*sources, f"bench: {path} ({data.get('started', 'undated')}, {cores} cores)"))
