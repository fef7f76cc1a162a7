"""The router on one thread: samples/s of the whole stage step (parse → tokenise → embed → nearest centroid →
state update → serialise), and the time of each part. Prints figures and ratios, asserts nothing.

    python benchmarks/router_benchmark.py --workdir artifacts/demo [--state redis://127.0.0.1:6379/0]

Without --state the embedded store is used; with a Redis URL the adaptive update goes to Redis (one
pipelined round trip per batch), as in production.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from dimee.routers.router import Router
from dimee.routers.strategies import CentroidRouting
from threadpoolctl import threadpool_limits

from dimee.data import DatasetSpec, load_splits
from dimee.streaming.config import Settings
from dimee.streaming.deployment import Deployment
from dimee.streaming.messages import Sample, parse
from dimee.streaming.transport.base import Record


def _records(texts: list[str], round_no: int) -> list[Record]:
    """The texts as sample records, with ids new in every round: each round moves the centroids again."""
    ids = [f"b{round_no}-{i}" for i in range(len(texts))]
    return [Record("bench.samples", 0, i, key.encode(), Sample(id=key, text=t, label=0).to_bytes())
            for i, (key, t) in enumerate(zip(ids, texts, strict=True))]


class Parts:
    """Seconds spent in each part of the router's step, summed over batches: the router's own methods,
    wrapped with a timer, so what is timed is the code that serves."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, owner: object, method: str, name: str) -> None:
        inner = getattr(owner, method)

        def timed(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

        setattr(owner, method, timed)


def instrument(router: Router) -> Parts:
    parts = Parts()
    strategy = router.strategy
    assert isinstance(strategy, CentroidRouting)
    parts.wrap(router.embedder, "tokenise", "tokenise")
    parts.wrap(router.embedder, "embed_tokens", "embed")
    parts.wrap(strategy.store, "snapshot", "state read (snapshot)")
    parts.wrap(strategy.store, "apply", "state update")
    parts.wrap(router, "_output", "serialise (Routed message + envelope)")
    return parts


def one_round(records: list[Record], router: Router, parts: Parts, batch: int) -> tuple[float, dict[str, float]]:
    """The router's parse and process over the records in batches; the time of the whole and of each part."""
    parts.seconds = {}
    started = time.perf_counter()
    for begin in range(0, len(records), batch):
        chunk = records[begin: begin + batch]
        t0 = time.perf_counter()
        valid = [(r, parse(Sample, r.value, router.parse_context())) for r in chunk]
        parts.seconds["parse"] = parts.seconds.get("parse", 0.0) + time.perf_counter() - t0
        router.process(valid)
    total = time.perf_counter() - started
    named = sum(parts.seconds.values())
    parts.seconds["distances, metrics, rest"] = total - named
    return total, parts.seconds


def measure(workdir: Path, state: str, batch: int = 64, samples: int = 2642, rounds: int = 3) -> dict:
    """The router (DIMEE-D, adaptive) on one thread over rt-sentences' test texts: samples/s per round and the
    µs per sample of each part (median over rounds)."""
    from dimee.composition import roles

    threadpool_limits(1)  # one thread: numpy's BLAS (the router imports no torch)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # and the tokenizer's pool
    texts = load_splits(DatasetSpec(name="rt-sentences"), Settings().data_dir).test.texts[:samples]
    deployment = Deployment.load(workdir, "DIMEE-D")
    settings = Settings(broker="memory://bench-router", state=state, topic_prefix="bench")
    store = roles.centroid_store(settings, deployment)
    store.seed(deployment.calibration.centroid_arrays(), deployment.calibration.pool_sizes)
    router = Router(roles.context(settings, "bench-router"), deployment, store)
    rates, all_parts, parts = [], [], instrument(router)
    for round_no in range(rounds):
        seconds, round_parts = one_round(_records(texts, round_no), router, parts, batch)
        rates.append(len(texts) / seconds)
        all_parts.append(round_parts)
    store.close()
    return {"per_s": statistics.median(rates), "rounds": rates, "state": state.split("://")[0], "batch": batch,
            "parts_us": {name: statistics.median(p[name] for p in all_parts) / len(texts) * 1e6
                         for name in all_parts[0]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("artifacts/demo"))
    parser.add_argument("--state", default="memory://bench-router")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=2642)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    figures = measure(args.workdir, args.state, args.batch, args.samples, args.rounds)
    rates = figures["rounds"]
    print(f"router, one thread, adaptive (DIMEE-D), state {figures['state']}, batch {args.batch}: "
          f"{figures['per_s']:,.0f} samples/s (median of {args.rounds}; min {min(rates):,.0f}, "
          f"max {max(rates):,.0f}); goal 10,000: {figures['per_s'] / 10_000:.2f}×")
    print("where the time goes (µs per sample, median over rounds):")
    for name, us in figures["parts_us"].items():
        print(f"  {name:<56} {us:8.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
