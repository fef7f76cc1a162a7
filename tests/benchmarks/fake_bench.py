"""A fake machine for the bench's rounds: every figure it measures is a true rate divided by the machine's load
at that moment, and the load changes from round to round (busy for part of the run). No Kafka, no model."""

from __future__ import annotations

from benchmarks.stream_runs import Filled

# Samples/s on an idle machine: the pipeline at half the bound, the router alone on Kafka at a tenth of its own
# loop in-process, two workers at 1.9 times one.
TRUE = {"bound": 200.0, "exactly-once": 100.0, "at-least-once": 160.0, "router in-process": 5000.0,
        "router": 500.0, "worker-edge": 300.0, "sink": 2000.0, "1 worker": 50.0, "2 workers": 95.0,
        "1 worker, 2 threads": 70.0}


def pipeline_run(per_s: float) -> dict:
    return {"per_s": per_s, "p50_ms": 40.0, "p99_ms": 90.0, "hops": {}, "ready_s": {"router": 1.0}}


def stage_run(per_s: float) -> dict:
    return {"per_s": per_s, "efficiency": 0.9, "batch_compute_s": 0.01, "ready_s": 1.0, "exit_s": 0.5,
            "peak_rss_mb": 300.0}


def stages_run(load: float) -> dict:
    return {name: stage_run(TRUE[name] / load) for name in ("router", "worker-edge", "sink")}


class BusyMachine:
    """`loads[k]` divides every rate measured in round k + 1; a round begins with the in-process bound, its first
    measurement. `calls` is what was measured, in order."""

    def __init__(self, loads: list[float]) -> None:
        self.loads, self.round, self.calls = loads, 0, []

    @property
    def load(self) -> float:
        return self.loads[max(self.round - 1, 0)]

    def measured(self, name: str) -> float:
        self.calls.append(name)
        return TRUE[name] / self.load

    # the measurements of benchmarks/streaming_benchmark.py, with their signatures
    def compute_bound(self, texts: list[str], deployment: object, batch: int) -> dict:
        self.round += 1
        return {"per_s": self.measured("bound"), "shares": {"mobile": 0.5, "edge": 0.3, "cloud": 0.2}}

    def pipeline(self, setup: object, records: list[dict], guarantee: str = "auto",
                 rate: float | None = None) -> dict:
        return pipeline_run(self.measured(guarantee))

    def router_round(self) -> dict:
        return {"per_s": self.measured("router in-process"), "samples": 100, "parts_s": {"embed": 0.01},
                "state": "redis", "batch": 64}

    def stage_by_stage(self, setup: object, records: list[dict]) -> tuple[dict, Filled]:
        self.calls.append("stages")
        return stages_run(self.load), Filled("bench-x", {"mobile": 10, "edge": 30, "cloud": 5})

    def scale_out(self, setup: object, filled: Filled, workers: int, threads: int) -> dict:
        name = "1 worker, 2 threads" if threads == 2 else f"{workers} worker{'s' if workers > 1 else ''}"
        return {"per_s": self.measured(name), "efficiency": 0.9}


def with_paced(runs: dict) -> dict:
    """The paced runs `main` adds after the rounds."""
    return runs | {"paced": [pipeline_run(50.0) | {"samples": 500, "seconds": 10.0}],
                   "paced_at_least_once": [pipeline_run(50.0) | {"samples": 500, "seconds": 10.0}]}
