"""The tier workers' compute on an accelerator against the CPU of the same machine, in-process (a lent GPU
machine has no Kafka to stream through). Per tier, samples/s of early exit: in length-sorted passes of
SUB_BATCH; in one pass per micro-batch of 32 and of 256 in arrival order; and as the worker runs it
(`pass_size`) with micro-batches of 32 and 256. Also whether every sample exits at the same layer with the
same prediction on both, and the compute bound (router on the CPU, every tier over its routed share, the
worker's way with micro-batches of 256) on each. Asserts nothing.

    python -m benchmarks.device_benchmark --workdir artifacts/demo --texts texts.json --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from dimee.routers.embedding import RoutingEmbedder
from dimee.workers.tier_worker import SUB_BATCH, pass_size, similar_lengths

from dimee.method import arithmetic
from dimee.method.calibration import Calibration
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.model.tokenize import encode
from dimee.streaming.messages import Sample


def run(partition: tuple, texts: list[str], alpha: float, way: str) -> tuple[float, np.ndarray]:
    """Samples/s and (exit layer, prediction) per sample of the (model, tokenizer, cap) partition, in
    micro-batches of 32 (256 for one_pass_256)."""
    model, tokenizer, cap = partition
    size = 256 if way.endswith("256") else 32
    device = next(model.parameters()).device
    ways = {"passes_of_8": lambda batch: similar_lengths(batch, SUB_BATCH, len),
            "worker": lambda batch: similar_lengths(batch, pass_size(device.type, torch.get_num_threads()), len),
            "worker_256": lambda batch: similar_lengths(batch, pass_size(device.type, torch.get_num_threads()), len)}
    passes = ways.get(way, lambda batch: [batch])
    outcome = {}
    started = time.perf_counter()
    for begin in range(0, len(texts), size):
        for chunk in passes(texts[begin: begin + size]):
            inputs = {k: v.to(device) for k, v in encode(tokenizer, chunk, max_length=model.spec.max_length).items()}
            result = model.early_exit(inputs, alpha=alpha, cap=cap)
            for text, layer, pred in zip(chunk, result.exit_layer.tolist(), result.pred.tolist(), strict=True):
                outcome[text] = (layer, pred)
    seconds = time.perf_counter() - started
    return len(texts) / seconds, np.array([outcome[t] for t in texts])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("artifacts/demo"))
    parser.add_argument("--texts", type=Path, required=True, help="a JSON list of texts (the test split's)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    texts = json.loads(args.texts.read_text())[: args.samples]
    cal = Calibration.load(args.workdir / "calibration.json")
    model_dir = args.workdir / "model"
    embedder, tokenizer = RoutingEmbedder(model_dir), load_tokenizer(model_dir)
    embeddings = np.concatenate([embedder.embed([Sample(id="b", text=t) for t in texts[i: i + 64]])
                                 for i in range(0, len(texts), 64)])
    pools = arithmetic.route(embeddings, cal.centroid_arrays(), cal.pool_sizes, cal.distance, adaptive=False)
    figures: dict = {"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device,
                     "cpu_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "samples": len(texts),
                     "tiers": {}}
    bound = {"cpu": 0.0, args.device: 0.0}
    for index, (tier, cap) in enumerate(cal.plan):
        chosen = [t for t, p in zip(texts, pools, strict=True) if p == index]
        row: dict = {"routed": len(chosen), "all_samples": {}}
        outcomes = {}
        for device in ("cpu", args.device):
            partition = (load_model(model_dir, cap).to(device), tokenizer, cap)
            run(partition, texts[:64], cal.alpha, "worker")  # warm-up (kernels, allocator)
            for way in ("passes_of_8", "one_pass_32", "one_pass_256", "worker", "worker_256"):
                rate, outcome = run(partition, texts, cal.alpha, way)
                row["all_samples"][f"{device}/{way}"] = rate
                outcomes[(device, way)] = outcome
            if chosen:
                rate, _ = run(partition, chosen, cal.alpha, "worker_256")
                bound[device] += len(chosen) / rate
        cpu, accelerated = outcomes[("cpu", "worker")], outcomes[(args.device, "worker")]
        row["same_exit_and_prediction"] = float((cpu == accelerated).all(1).mean())
        row["speedup_worker"] = row["all_samples"][f"{args.device}/worker"] / row["all_samples"]["cpu/worker"]
        figures["tiers"][tier.value] = row
        print(f"{tier.value} (layers 1..{cap}): " + ", ".join(f"{k} {v:.0f}/s" for k, v in row["all_samples"].items())
              + f"; same exit and prediction on both: {100 * row['same_exit_and_prediction']:.2f}%", flush=True)
    figures["compute_bound_per_s"] = {d: len(texts) / s for d, s in bound.items() if s}
    print("compute bound (all tiers, the worker's way, micro-batches of 256): " + ", ".join(
        f"{d} {v:.0f} samples/s" for d, v in figures["compute_bound_per_s"].items()))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
