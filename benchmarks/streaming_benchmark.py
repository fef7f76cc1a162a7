"""Speed of dimee on this machine (`make bench`): figures and ratios from one run; asserts nothing.

Every stream figure runs the roles as separate processes on the Kafka + Redis of deploy/local-services.sh,
each with `--threads 1` unless said, and is repeated over --rounds interleaved rounds (median and range). A
ratio is taken within each round and reported as its median and range over rounds; an in-process reference
is measured in every round right before the stream figure it divides (benchmarks/report.py says why):

  a  the pipeline (router, 3 workers, sink; exactly-once) against the in-process compute bound — the same
     routed workload through the same partitions with the machine's cores, no broker, no state store;
  b  each stage alone on a full input topic: records/s and efficiency (process time ÷ wall time), on the
     samples five times over (fresh ids): their steady rate rather than their start-up;
  c  the router in-process on one thread with its parts (adaptive, the Redis update included), and the
     router alone on Kafka (b) against it;
  d  batched early exit against the batch-1 loop, per tier (in-process);
  e  p50 / p99 produce → prediction latency at half the saturated rate, exactly-once and at-least-once;
  f  exactly-once against at-least-once throughput;
  g  scale-out: the busiest tier drained by 1 worker, 2 workers (1 thread each) and 1 worker with 2 threads;
  h  time from launch to ready and from SIGTERM to exit, per role;
  i  peak resident memory per role;
  j  one exactly-once transaction, request by request, and the broker's CONCURRENT_TRANSACTIONS answers
     (kafka-python through dimee's adapter; benchmarks/kafka_clients.py).

    python benchmarks/streaming_benchmark.py [--rounds 3] [--samples 600] [--code ../other-checkout]

`--code DIR` runs the roles of another checkout of dimee (a before/after comparison on the same machine and
workload); the in-process figures (c, d) are then skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from dimee.routers.embedding import RoutingEmbedder
from dimee.workers.tier_worker import SUB_BATCH, similar_lengths

from benchmarks import router_benchmark
from benchmarks.kafka_clients import transaction_breakdown
from benchmarks.report import headline, summarise, write_markdown
from benchmarks.stream_runs import Setup, pipeline, scale_out, stage_by_stage
from dimee.data import DatasetSpec, load_splits
from dimee.method import arithmetic
from dimee.method.tiers import TIER_NAMES as TIERS
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.model.tokenize import encode
from dimee.streaming.config import Settings
from dimee.streaming.deployment import Deployment


def batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start: start + size]


def route(texts: list[str], deployment: Deployment) -> tuple[np.ndarray, float]:
    """The router's embedding and nearest centroid (not adaptive) over the texts; the pools and seconds."""
    from dimee.streaming.messages import Sample

    cal = deployment.calibration
    embedder = RoutingEmbedder(deployment.workdir.model, raw=cal.embedding == "raw")
    started = time.perf_counter()
    rows = [embedder.embed([Sample(id="b", text=t) for t in chunk]) for chunk in batches(texts, 64)]
    pools = arithmetic.route(np.concatenate(rows), cal.centroid_arrays(), cal.pool_sizes, cal.distance, adaptive=False)
    return pools, time.perf_counter() - started


_no_early_exit = 2.0  # above any confidence: run to the cap


def compute_bound(texts: list[str], deployment: Deployment, batch: int) -> dict:
    """Router + every tier's partition over its share of the texts, in this process, with all cores: what
    the stream would do if moving records cost nothing."""
    cal, model_dir = deployment.calibration, deployment.workdir.model
    pools, seconds = route(texts, deployment)
    tokenizer = load_tokenizer(model_dir)
    thresholds = deployment.policy.served_thresholds(cal)
    per_tier = {}
    for index, (tier, cap) in enumerate(cal.plan):
        model = load_model(model_dir, cap)
        chosen = [t for t, p in zip(texts, pools, strict=True) if p == index]
        alpha = thresholds.exit[index]
        started = time.perf_counter()
        for chunk in batches(chosen, batch):
            model.early_exit(encode(tokenizer, chunk, max_length=model.spec.max_length),
                             alpha=_no_early_exit if alpha is None else alpha, cap=cap)
        per_tier[tier.value] = {"samples": len(chosen), "seconds": time.perf_counter() - started}
        seconds += per_tier[tier.value]["seconds"]
    return {"per_s": len(texts) / seconds, "seconds": seconds, "per_tier": per_tier,
            "shares": {t: float((pools == i).mean()) for i, t in enumerate(TIERS)}}


def early_exit_vs_batch1(texts: list[str], deployment: Deployment, batch: int) -> dict:
    """Per tier, on one thread: the batch-1 loop, one early-exit pass per micro-batch in arrival order, and
    the worker's way (each micro-batch sorted by length, run in passes of SUB_BATCH)."""
    cal, model_dir = deployment.calibration, deployment.workdir.model
    tokenizer = load_tokenizer(model_dir)
    chosen = texts[:256]
    ways = {"batch1": lambda b: [[t] for t in b], "one_pass": lambda b: [b],
            "worker": lambda b: similar_lengths(b, SUB_BATCH, len)}
    out = {}
    for tier, cap in cal.plan:
        model = load_model(model_dir, cap)
        timed = {}
        for name, passes in ways.items():
            started = time.perf_counter()
            for micro in batches(chosen, batch):
                for chunk in passes(micro):
                    model.early_exit(encode(tokenizer, chunk, max_length=model.spec.max_length), alpha=cal.alpha,
                                     cap=cap)
            timed[name] = len(chosen) / (time.perf_counter() - started)
        out[tier.value] = {f"{name}_per_s": rate for name, rate in timed.items()} | {
            f"{name}_speedup": timed[name] / timed["batch1"] for name in ("one_pass", "worker")}
    return out


def once_more_if_stalled(runs: dict, run, *args: object) -> dict:
    """A run, and once more if it stalled (a Kafka client that stopped answering: the watchdog in
    dimee/streaming/stage.py); the stalls are counted in the figures, not hidden."""
    try:
        return run(*args)
    except RuntimeError as exc:
        print(f"  stalled, run again: {exc}", flush=True)
        runs.setdefault("stalled", []).append(str(exc))
        return run(*args)


T = TypeVar("T")


def beside(reference: Callable[[], dict] | None, stream: Callable[..., T], *args: object) -> tuple[dict | None, T]:
    """An in-process reference, then at once the stream figure that is divided by it: the two halves of a ratio
    measured at the same moment (with once_more_if_stalled, a stall measures both again)."""
    measured = None if reference is None else reference()
    return measured, stream(*args)


def stream_rounds(setup: Setup, records: list[dict], deployment: Deployment, rounds: int,
                  router: router_benchmark.InProcessRouter | None = None) -> dict:
    """Interleaved rounds: the bound and right after it the pipeline exactly-once, at-least-once, the router
    in-process (figure c, without --code) and right after it the stages one by one, the scale-out."""
    texts = [r["text"] for r in records]
    runs: dict[str, list] = {k: [] for k in ("bound", "exactly_once", "at_least_once", "router", "stages",
                                             "one_worker", "two_workers", "one_worker_two_threads")}

    def bound() -> dict:
        torch.set_num_threads(os.cpu_count() or 1)
        return compute_bound(texts, deployment, setup.batch)

    for number in range(1, rounds + 1):
        print(f"round {number}/{rounds}: in-process bound, then the pipeline, exactly-once", flush=True)
        bounded, exactly_once = once_more_if_stalled(runs, beside, bound, pipeline, setup, records, "exactly-once")
        runs["bound"].append(bounded)
        runs["exactly_once"].append(exactly_once)
        print(f"round {number}/{rounds}: pipeline, at-least-once", flush=True)
        runs["at_least_once"].append(once_more_if_stalled(runs, pipeline, setup, records, "at-least-once"))
        print(f"round {number}/{rounds}: {'' if router is None else 'router in-process, then '}stage by stage",
              flush=True)
        routed, (stages, filled) = once_more_if_stalled(runs, beside, None if router is None else router.round,
                                                        stage_by_stage, setup, records)
        if routed is not None:
            runs["router"].append(routed)
        runs["stages"].append(stages)
        print(f"round {number}/{rounds}: scale-out of the {filled.busiest} tier ({filled.routed[filled.busiest]} "
              "samples)", flush=True)
        runs["one_worker"].append(scale_out(setup, filled, 1, 1))
        runs["two_workers"].append(scale_out(setup, filled, 2, 1))
        runs["one_worker_two_threads"].append(scale_out(setup, filled, 1, 2))
        runs.setdefault("busiest", []).append(filled.busiest)
    return runs


def one_transaction() -> dict:
    """Figure j, on a topic of its own."""
    from dimee.streaming.transport.kafka import KafkaTransport

    topic = f"bench-transaction-{time.strftime('%H%M%S')}"
    KafkaTransport(os.environ["DIMEE_TEST_KAFKA"]).ensure_topics([topic], partitions=1)
    return transaction_breakdown(os.environ["DIMEE_TEST_KAFKA"], topic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("artifacts/demo"))
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--policy", default="DIMEE-F", help="routing policy of the workload (default the "
                        "paper's DIMEE-F, which spreads samples over the three tiers)")
    parser.add_argument("--code", type=Path, help="run the roles of this checkout instead (before/after)")
    parser.add_argument("--json", type=Path, default=Path("runs/benchmark.json"))
    parser.add_argument("--md", type=Path, default=Path("runs/benchmark.md"))
    args = parser.parse_args()
    if "DIMEE_TEST_KAFKA" not in os.environ:
        raise SystemExit("error: no Kafka/Redis in the environment: run through `make bench`")
    deployment = Deployment.load(args.workdir, args.policy)
    records = load_splits(DatasetSpec(name="rt-sentences"), Settings().data_dir).test.records()[: args.samples]
    setup = Setup(args.workdir.resolve(), Path("runs/bench-logs").resolve(), args.policy, args.batch,
                  code=args.code.resolve() if args.code else None)
    figures: dict = {"machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
                     "code": str(args.code or "this checkout"), "samples": len(records), "batch": args.batch,
                     "policy": args.policy, "rounds": args.rounds, "started": time.strftime("%Y-%m-%d %H:%M")}
    router = None
    if args.code is None:
        router = router_benchmark.InProcessRouter(args.workdir, os.environ["DIMEE_TEST_REDIS"])  # c, in the rounds
        print("d: batched early exit against the batch-1 loop", flush=True)
        torch.set_num_threads(1)
        figures["early_exit"] = early_exit_vs_batch1([r["text"] for r in records], deployment, args.batch)
    try:
        runs = stream_rounds(setup, records, deployment, args.rounds, router)
    finally:
        if router is not None:
            router.close()
    saturated = statistics.median(r["per_s"] for r in runs["exactly_once"])
    paced = records[: max(100, len(records) // 2)]
    for guarantee, key in (("exactly-once", "paced"), ("at-least-once", "paced_at_least_once")):
        print(f"e: pipeline, {guarantee}, paced at half the exactly-once saturated rate ({saturated / 2:.0f}/s)",
              flush=True)
        runs[key] = [once_more_if_stalled(runs, pipeline, setup, paced, guarantee, saturated / 2)]
    print("j: one exactly-once transaction, request by request", flush=True)
    figures["j_transaction"] = one_transaction()
    figures |= summarise(runs)
    figures |= headline(figures)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**figures, "runs": runs}, indent=2))
    print(write_markdown(figures, args.md))
    print(f"figures: {args.json}, table: {args.md}")


if __name__ == "__main__":
    main()
