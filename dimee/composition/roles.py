"""One builder per stream role, used by the CLI, the in-process pipeline and the tests: each takes the
process's `StageContext` (transport, topics, settings, stop flag, batch limits) and what the role serves.
Together with `dimee.composition.pipeline` and `dimee.cli`, this is the only part of `dimee` that imports the role
packages (producers, routers, workers, predictions, state). Each builder imports its own role: a process
runs one role, and only a worker needs torch (seconds to import, most of a role's memory)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dimee.method.tiers import TIER_NAMES, Tier
from dimee.state import CentroidStore, open_store
from dimee.streaming.config import Settings
from dimee.streaming.deployment import Deployment
from dimee.streaming.runtime import StopFlag
from dimee.streaming.stage import BatchLimits, NoEvents, StageContext, StageEvents
from dimee.streaming.transport import Topics, open_transport

if TYPE_CHECKING:
    from dimee.predictions.sink import Sink
    from dimee.predictions.tail import Tail
    from dimee.routers.controller import ThresholdController
    from dimee.routers.router import FeedbackApplier, Router
    from dimee.workers.tier_worker import TierWorker


def context(settings: Settings, client_id: str = "dimee", stop: StopFlag | None = None,
            limits: BatchLimits | None = None, events: StageEvents | None = None) -> StageContext:
    """The shared context of a process's stages, its transport opened from the settings."""
    transport = open_transport(settings.broker, settings.api_version_tuple(), client_id, settings.kafka_security())
    return StageContext(transport, Topics(settings.topic_prefix), settings, stop or StopFlag(),
                        limits or BatchLimits(), events or NoEvents(), settings.instance_id)


def centroid_store(settings: Settings, deployment: Deployment) -> CentroidStore:
    return open_store(settings.state, deployment.state_id, settings.seen_ttl_s, pipeline=settings.topic_prefix)


def router(ctx: StageContext, deployment: Deployment, store: CentroidStore, group_id: str | None = None) -> Router:
    from dimee.routers.router import Router

    return Router(ctx, deployment, store, group_id)


def feedback(ctx: StageContext, of_router: Router) -> FeedbackApplier:
    from dimee.routers.router import FeedbackApplier

    return FeedbackApplier(ctx, of_router)


def controller(ctx: StageContext, deployment: Deployment, store: CentroidStore) -> ThresholdController:
    from dimee.routers.controller import ThresholdController, control_rule

    calibration = deployment.calibration
    return ThresholdController(ctx, store, control_rule(deployment, ctx.settings), calibration.num_labels,
                               calibration.plan)


def worker(ctx: StageContext, deployment: Deployment, tier: Tier, group_id: str | None = None) -> TierWorker:
    from dimee.workers.tier_worker import TierWorker

    return TierWorker(ctx, deployment, tier, group_id)


def workers(ctx: StageContext, deployment: Deployment) -> list[TierWorker]:
    """One worker per tier of the deployment's plan."""
    return [worker(ctx, deployment, tier) for tier in deployment.calibration.plan.tiers]


def sink(ctx: StageContext, path: Path | None, deployment: Deployment | None = None,
         group_id: str | None = None) -> Sink:
    """With a deployment, the sink's summary states cost against the deployment's cloud-only cost."""
    from dimee.predictions.sink import Sink

    return Sink(ctx, path, _cloud_only_cost(deployment), group_id)


def tail(ctx: StageContext, deployment: Deployment | None = None) -> Tail:
    from dimee.predictions.tail import Tail

    return Tail(ctx, _cloud_only_cost(deployment))


def _cloud_only_cost(deployment: Deployment | None) -> float:
    if deployment is None:
        return 1.0
    calibration = deployment.calibration
    return calibration.cost_model.cloud_only(calibration.num_layers)


def commands(workdir: Path, policy: str, out: Path, log_level: str) -> list[tuple[str, list[str]]]:
    """Every role of one stream as the `dimee` arguments that run it, in data-flow order: the router, a worker per
    tier (cheapest first), the sink. What `dimee up` supervises, each role its own process."""
    common = ["--workdir", str(workdir), "--log-level", log_level]
    return [("router", ["route", *common, "--policy", policy]),
            *((f"worker-{tier}", ["work", "--tier", tier, *common]) for tier in TIER_NAMES),
            ("sink", ["sink", "--out", str(out), "--log-level", log_level])]
