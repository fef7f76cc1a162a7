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
import time
from pathlib import Path

from dimee.routers.router import Router
from dimee.routers.strategies import CentroidRouting
from threadpoolctl import threadpool_limits

from benchmarks.report import router_figures
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


class InProcessRouter:
    """The router (DIMEE-D, adaptive) on one thread over rt-sentences' test texts, set up once; `round()` times
    one pass over them. `make bench` runs a round in every one of its rounds, right before the router alone on
    Kafka, so that the two are measured at the same moment."""

    def __init__(self, workdir: Path, state: str, batch: int = 64, samples: int = 2642) -> None:
        from dimee.composition import roles

        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread: the tokenizer's pool too
        self.texts = load_splits(DatasetSpec(name="rt-sentences"), Settings().data_dir).test.texts[:samples]
        self.state, self.batch, self.rounds = state.split("://")[0], batch, 0
        deployment = Deployment.load(workdir, "DIMEE-D")
        settings = Settings(broker="memory://bench-router", state=state, topic_prefix="bench")
        self.store = roles.centroid_store(settings, deployment)
        self.store.seed(deployment.calibration.centroid_arrays(), deployment.calibration.pool_sizes)
        self.router = Router(roles.context(settings, "bench-router"), deployment, self.store)
        self.parts = instrument(self.router)

    def round(self) -> dict:
        """One pass over the texts, with new ids (the centroids move again): samples/s and each part's seconds."""
        records = _records(self.texts, self.rounds)
        self.rounds += 1
        with threadpool_limits(1):  # numpy's BLAS on one thread (the router imports no torch); restored after
            seconds, parts = one_round(records, self.router, self.parts, self.batch)
        return {"per_s": len(self.texts) / seconds, "samples": len(self.texts), "parts_s": dict(parts),
                "state": self.state, "batch": self.batch}

    def close(self) -> None:
        self.store.close()


def measure(workdir: Path, state: str, batch: int = 64, samples: int = 2642, rounds: int = 3) -> dict:
    """Figure c on its own: `rounds` rounds back to back."""
    router = InProcessRouter(workdir, state, batch, samples)
    try:
        return router_figures([router.round() for _ in range(rounds)])
    finally:
        router.close()


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
    rates = figures["per_s"]
    print(f"router, one thread, adaptive (DIMEE-D), state {figures['state']}, batch {args.batch}: "
          f"{rates['median']:,.0f} samples/s (median of {args.rounds}; min {rates['min']:,.0f}, "
          f"max {rates['max']:,.0f}); goal 10,000: {rates['median'] / 10_000:.2f}×")
    print("where the time goes (µs per sample, median over rounds):")
    for name, us in figures["parts_us"].items():
        print(f"  {name:<56} {us:8.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
