"""Speed of dimee on this machine: prints figures and ratios, asserts nothing.

1. the in-process compute bound: the routed workload through the same partitions with the same batch sizes,
   no broker, no state store;
2. the full pipeline on Kafka + Redis with every role a separate process: throughput and the ratio to (1),
   and p50/p99 latency (produce → prediction), saturated and at a paced rate;
3. the router alone (embedding layer + nearest centroid): samples/s;
4. batched early exit against the batch-1 loop, per tier.

Needs a trained workdir (`make demo` makes artifacts/demo) and, for (2), DIMEE_TEST_KAFKA / DIMEE_TEST_REDIS
from deploy/local-services.sh: `make bench` does both.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from dimee import method
from dimee.calibration import Calibration
from dimee.config import Settings
from dimee.data import DatasetSpec, load_splits
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.model.tokenize import encode
from dimee.tiers import TIER_NAMES as TIERS
from dimee.workdir import Workdir


def batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def route_offline(texts: list[str], workdir: Path, cal: Calibration, batch: int) -> tuple[np.ndarray, float]:
    embedder, tokenizer = load_model(Workdir(workdir).model, 0), load_tokenizer(Workdir(workdir).model)
    started = time.perf_counter()
    rows = [embedder.routing_embedding(**encode(tokenizer, chunk, max_length=embedder.spec.max_length)).numpy()
            for chunk in batches(texts, batch)]
    pools = method.route(np.concatenate(rows), cal.centroid_arrays(), cal.pool_sizes, cal.distance, adaptive=False)
    return pools, time.perf_counter() - started


def compute_bound(texts: list[str], pools: np.ndarray, workdir: Path, cal: Calibration, batch: int) -> dict:
    tokenizer = load_tokenizer(Workdir(workdir).model)
    plan = cal.tier_plan()
    seconds, per_tier = 0.0, {}
    for index, (tier, cap) in enumerate(plan):
        model = load_model(Workdir(workdir).model, cap)
        chosen = [t for t, p in zip(texts, pools, strict=True) if p == index]
        started = time.perf_counter()
        for chunk in batches(chosen, batch):
            model.early_exit(encode(tokenizer, chunk, max_length=model.spec.max_length), alpha=cal.alpha, cap=cap)
        elapsed = time.perf_counter() - started
        per_tier[tier.value] = {"samples": len(chosen), "seconds": elapsed}
        seconds += elapsed
    return {"seconds": seconds, "per_tier": per_tier}


def batch_one_vs_batched(texts: list[str], pools: np.ndarray, workdir: Path, cal: Calibration, batch: int) -> dict:
    tokenizer = load_tokenizer(Workdir(workdir).model)
    out = {}
    for index, (tier, cap) in enumerate(cal.tier_plan()):
        model = load_model(Workdir(workdir).model, cap)
        chosen = [t for t, p in zip(texts, pools, strict=True) if p == index][:200]
        if not chosen:
            continue
        started = time.perf_counter()
        for text in chosen:
            model.early_exit(encode(tokenizer, [text], max_length=model.spec.max_length), alpha=cal.alpha, cap=cap)
        single = time.perf_counter() - started
        started = time.perf_counter()
        for chunk in batches(chosen, batch):
            model.early_exit(encode(tokenizer, chunk, max_length=model.spec.max_length), alpha=cal.alpha, cap=cap)
        batched = time.perf_counter() - started
        out[tier.value] = {"samples": len(chosen), "batch1_per_s": len(chosen) / single,
                           "batched_per_s": len(chosen) / batched, "speedup": single / batched}
    return out


def run_processes(records: list[dict], workdir: Path, batch: int, rate: float | None = None,
                  guarantee: str = "auto") -> dict:
    """Producer, router, three workers and sink as separate OS processes on Kafka + Redis."""
    dimee = str(Path(sys.executable).parent / "dimee")
    env = dict(os.environ, DIMEE_BROKER=f"kafka://{os.environ['DIMEE_TEST_KAFKA']}", DIMEE_GUARANTEE=guarantee,
               DIMEE_STATE=os.environ["DIMEE_TEST_REDIS"], DIMEE_TOPIC_PREFIX=f"bench-{uuid.uuid4().hex[:8]}",
               DIMEE_KAFKA_API_VERSION=os.environ.get("DIMEE_TEST_KAFKA_API_VERSION", ""),
               OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in records))
        roles = {"router": ["route", "--workdir", str(workdir), "--reseed", "--max-batch", str(batch)]}
        roles |= {t: ["work", "--tier", t, "--workdir", str(workdir), "--max-batch", str(batch)] for t in TIERS}
        roles["sink"] = ["sink", "--out", str(out)]
        procs = {name: subprocess.Popen([dimee, *args, "--log-level", "WARNING"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=(tmp_path / f"{name}.log").open("w"))
                 for name, args in roles.items()}
        try:
            time.sleep(20)  # imports and consumer-group joins, outside the measured window
            started = time.perf_counter()
            producer_args = ["produce", "--source", str(source), "--id-col", "id"]
            if rate:
                producer_args += ["--rate", str(rate)]
            subprocess.run([dimee, *producer_args], env=env, check=True, capture_output=True)
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                lines = out.read_text().splitlines() if out.exists() else []
                if len(lines) >= len(records):
                    break
                time.sleep(0.1)
            seconds = time.perf_counter() - started
        finally:
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                proc.wait(timeout=60)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    latency = np.array([r["timings"]["finished_at"] - r["timings"]["produced_at"] for r in rows]) * 1000
    return {"samples": len(rows), "seconds": seconds, "per_s": len(rows) / seconds,
            "p50_ms": float(np.percentile(latency, 50)), "p99_ms": float(np.percentile(latency, 99))}


def guarantee_cost(records: list[dict], workdir: Path, batch: int, rounds: int = 3) -> dict:
    """Saturated pipeline throughput, exactly-once against at-least-once, interleaved over `rounds`."""
    rates: dict[str, list[float]] = {"at-least-once": [], "exactly-once": []}
    for _ in range(rounds):
        for guarantee in rates:
            run = run_processes(records, workdir, batch, guarantee=guarantee)
            rates[guarantee].append(run["per_s"])
    medians = {g: float(np.median(r)) for g, r in rates.items()}
    return {"rounds": rates, "median_per_s": medians,
            "exactly_once_to_at_least_once": medians["exactly-once"] / medians["at-least-once"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("artifacts/demo"))
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--skip-kafka", action="store_true", help="only the in-process figures")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--guarantee-rounds", type=int, default=3,
                        help="rounds of exactly-once vs at-least-once (0 skips the comparison)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    cal = Calibration.load(Workdir(args.workdir).calibration)
    test = load_splits(DatasetSpec(name="rt-sentences"), Settings().data_dir).test
    records = test.records()[: args.samples]
    texts = [r["text"] for r in records]
    figures: dict = {"samples": len(records), "batch": args.batch, "threads": torch.get_num_threads()}

    pools, route_s = route_offline(texts, args.workdir, cal, 64)
    figures["router_per_s"] = len(texts) / route_s
    figures["tier_shares"] = {t: float((pools == i).mean()) for i, t in enumerate(TIERS)}
    bound = compute_bound(texts, pools, args.workdir, cal, args.batch)
    figures["compute_bound_per_s"] = len(texts) / (bound["seconds"] + route_s)
    figures["early_exit"] = batch_one_vs_batched(texts, pools, args.workdir, cal, args.batch)

    print(f"workload: {len(texts)} rt-sentences test samples, routed "
          + " / ".join(f"{t} {100 * s:.0f}%" for t, s in figures["tier_shares"].items()) + f", batch {args.batch}")
    print(f"router (embedding layer + nearest centroid): {figures['router_per_s']:.0f} samples/s")
    print(f"in-process compute bound (router + partitions, no broker): {figures['compute_bound_per_s']:.1f} samples/s")
    for tier, row in figures["early_exit"].items():
        print(f"batched early exit, {tier}: {row['batched_per_s']:.1f}/s vs batch-1 loop {row['batch1_per_s']:.1f}/s "
              f"→ {row['speedup']:.2f}x")
    if not args.skip_kafka:
        if "DIMEE_TEST_KAFKA" not in os.environ:
            sys.exit("error: no Kafka/Redis in the environment: run through `make bench` (or use --skip-kafka)")
        saturated = run_processes(records, args.workdir, args.batch)
        figures["pipeline_saturated"] = saturated
        figures["pipeline_to_bound_ratio"] = saturated["per_s"] / figures["compute_bound_per_s"]
        paced_rate = max(1.0, round(0.5 * saturated["per_s"]))
        paced = run_processes(records[: max(100, len(records) // 2)], args.workdir, args.batch, paced_rate)
        figures["pipeline_paced"] = {"rate": paced_rate, **paced}
        print(f"pipeline on Kafka + Redis, 5 processes, saturated: {saturated['per_s']:.1f} samples/s "
              f"({figures['pipeline_to_bound_ratio']:.2f}x the compute bound), "
              f"latency p50 {saturated['p50_ms']:.0f} ms "
              f"p99 {saturated['p99_ms']:.0f} ms (includes queueing: all samples produced at once)")
        print(f"pipeline paced at {paced_rate:.0f}/s (half the saturated rate): latency p50 {paced['p50_ms']:.0f} ms "
              f"p99 {paced['p99_ms']:.0f} ms")
        if args.guarantee_rounds:
            cost = figures["guarantees"] = guarantee_cost(records, args.workdir, args.batch, args.guarantee_rounds)
            spread = {g: f"{min(r):.1f}-{max(r):.1f}" for g, r in cost["rounds"].items()}
            print(f"exactly-once vs at-least-once, saturated, median of {args.guarantee_rounds} interleaved rounds: "
                  f"{cost['median_per_s']['exactly-once']:.1f} vs {cost['median_per_s']['at-least-once']:.1f} "
                  f"samples/s → {cost['exactly_once_to_at_least_once']:.2f}x (ranges {spread})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
