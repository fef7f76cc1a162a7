"""All roles in one process (threads over one transport and state store): producer → router → three tier
workers → sink. With memory:// broker and state this is the embedded default; with kafka:// and redis://
it runs the same code against real services."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dimee.calibration import Calibration
from dimee.config import Settings
from dimee.messages import Prediction
from dimee.routing_policy import RoutingPolicy
from dimee.routing_policy import get as get_policy
from dimee.runtime import StopFlag, log
from dimee.stage import BatchLimits
from dimee.transport import Topics, open_transport
from predictions.sink import Sink
from producers.producer import produce
from routers.router import FeedbackApplier, Router
from state import open_store
from workers.tier_worker import TierWorker


@dataclass
class PipelineRun:
    predictions: dict[str, Prediction]
    summary: dict
    seconds: float
    dead_letters: int
    duplicates: int


def run_pipeline(
    records: list[dict], model_dir: Path, calibration: Calibration, settings: Settings, adaptive: bool = False,
    reseed: bool = True, limits: BatchLimits | None = None, sink_path: Path | None = None,
    timeout_s: float = 3600.0, rate: float | None = None, progress: bool = True,
    policy: RoutingPolicy | None = None,
) -> PipelineRun:
    """`policy` sets router and workers (default: the paper's DIMEE-F, or DIMEE-D with adaptive=True)."""
    policy = policy or get_policy("DIMEE-D" if adaptive else "DIMEE-F")
    topics = Topics(settings.topic_prefix)
    transport = open_transport(settings.broker, settings.api_version_tuple())
    transport.ensure_topics(topics.all())
    store = open_store(settings.state, calibration.model_id, settings.seen_ttl_s)
    if reseed:
        store.seed(calibration.centroid_arrays(), calibration.pool_sizes)
    stop = StopFlag()
    limits = limits or BatchLimits()
    common = {"stop": stop, "limits": limits, "max_text_chars": settings.max_text_chars}
    router = Router(transport, topics, [topics.samples], f"{topics.prefix}.router", model_dir=model_dir,
                    calibration=calibration, store=store, adaptive=policy.adaptive, policy=policy.router, **common)
    stages = [
        router,
        *(TierWorker(transport, topics, [topics.tier(t.value)], f"{topics.prefix}.worker.{t.value}", tier=t,
                     model_dir=model_dir, calibration=calibration, escalation=policy.escalation,
                     feedback=policy.feedback, **common)
          for t, _ in calibration.tier_plan()),
    ]
    feedback = None
    if policy.feedback:
        feedback = FeedbackApplier(transport, topics, [topics.feedback], f"{topics.prefix}.feedback", router=router,
                                   **common)
        stages.append(feedback)
    sink = Sink(transport, topics, [topics.predictions], f"{topics.prefix}.sink", path=sink_path,
                cloud_only_cost=calibration.cost_model.cloud_only(calibration.num_layers), **common)
    stages.append(sink)
    threads = [threading.Thread(target=stage.run, name=stage.name, daemon=True) for stage in stages]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    expected = {str(r["id"]) for r in records if isinstance(r, dict) and "id" in r}
    try:
        produce(transport, topics, records, rate=rate, stop=stop, progress=progress, total=len(records))
        deadline = time.monotonic() + timeout_s
        keyless = len(records) - len(expected)
        while time.monotonic() < deadline and not stop.is_set():
            dead_keys = set().union(*(s.dead_keys for s in stages))
            answered = expected <= (sink.kept.keys() | dead_keys)
            feedback_done = feedback is None or feedback.processed >= len(sink.kept)
            letters_done = sum(s.dead_letters for s in stages) - len(dead_keys & expected) >= keyless
            if answered and feedback_done and letters_done:
                break
            if not all(t.is_alive() for t in threads):
                log.error("a pipeline stage died; stopping")
                break
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        store.close()
    return PipelineRun(dict(sink.kept), sink.stats.summary(), time.perf_counter() - started,
                       sum(s.dead_letters for s in stages), sink.duplicates)

