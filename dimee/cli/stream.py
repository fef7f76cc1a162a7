"""The stream roles that feed and serve the model: produce, seed, route, work."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from dimee.cli import options as opt
from dimee.cli.app import app
from dimee.cli.runtime import end_role, start_role
from dimee.common.errors import DimeeError
from dimee.method.tiers import Tier
from dimee.producers.producer import GIVE_UP_S
from dimee.producers.sources import SourceSpec
from dimee.streaming.config import Settings, redact
from dimee.streaming.stage import BatchLimits


@app.command("produce")
@opt.settings_options(*opt.KAFKA, "partitions")
@opt.source_options
def produce_cmd(
    settings: Settings,
    source: SourceSpec,
    count: Annotated[int | None, typer.Option(min=1, help="Send at most this many.")] = None,
    rate: Annotated[float | None, typer.Option(min=0.001, help="Messages per second (default: as fast "
                                                               "as possible).")] = None,
    workdir: Annotated[Path, typer.Option(
        help="Work folder of the model the samples are for: a file's label names are sent as its label ids "
             "(needed for a file labelled by name; integer labels are sent as they are).")] = opt.DEFAULT_WORKDIR,
    give_up_after: Annotated[float, typer.Option(
        min=1.0, help="Seconds a chunk of sends may go unacknowledged (an outage), sent again through new "
                      "connections meanwhile, before produce gives up and names what was not acknowledged.")
    ] = GIVE_UP_S,
    log_level: opt.LogOpt = "INFO",
) -> None:
    """Publish samples to the samples topic, keyed by sample id."""
    from dimee.producers.producer import ProduceOptions, produce
    from dimee.producers.sources import for_the_model, open_source
    from dimee.streaming.transport import Topics, open_transport

    stop = start_role(log_level, None)
    opened = open_source(source, settings.data_dir)
    records = for_the_model(opened, workdir)  # refused here, before anything is sent
    transport = open_transport(settings.broker, settings.api_version_tuple(), "dimee-producer",
                               settings.kafka_security())
    topics = Topics(settings.topic_prefix)
    options = ProduceOptions(rate=rate, count=count, stop=stop, total=opened.total, progress=sys.stderr.isatty(),
                             partitions=settings.partitions, replication=settings.replication_factor,
                             give_up_s=give_up_after)
    result = produce(transport, topics, records, options)
    for label, reason in result.refused[:20]:
        typer.echo(f"refused {label}: {reason}", err=True)
    typer.echo(result.summary(topics.samples))  # the result, on stdout whatever it says; refusals on stderr
    if not result.complete:
        raise typer.Exit(1)


@app.command("seed")
@opt.settings_options("state", "topic_prefix")
def seed_cmd(
    settings: Settings,
    workdir: opt.WorkdirOpt = opt.DEFAULT_WORKDIR,
    only_missing: Annotated[bool, typer.Option(
        "--only-missing", help="Write only the pools (and pool count) that are missing, keeping adapted centroids "
                               "and seen-markers that are still there, and reset a threshold control that is not "
                               "one: the way back after a Redis flush, a restart without persistence, a failover to "
                               "an empty replica or a damaged key. Routers waiting on the empty store go on by "
                               "themselves.")] = False,
) -> None:
    """Write calibration.json's centroids to the pipeline's state (--topic-prefix names the pipeline; no other
    pipeline's keys are touched): by default replacing adapted ones, resetting the threshold offset and forgetting
    seen ids; --only-missing restores what was lost and keeps the rest."""
    from dimee.composition import roles
    from dimee.streaming.deployment import Deployment

    deployment = Deployment.load(workdir)
    store = roles.centroid_store(settings, deployment)
    cal = deployment.calibration
    where = f"for {deployment.state_id!r} of pipeline {settings.topic_prefix!r} in {redact(settings.state)}"
    if only_missing:
        restored = store.restore(cal.centroid_arrays(), cal.pool_sizes)
        typer.echo(f"restored {restored} of {len(cal.centroids)} pools {where} (the others were kept)")
        if (wrong := store.repair_control()) is not None:
            typer.echo(f"reset the threshold control to the calibrated thresholds ({wrong})")
    else:
        store.seed(cal.centroid_arrays(), cal.pool_sizes)
        typer.echo(f"seeded {len(cal.centroids)} pools {where}")
    store.close()


@app.command("route")
@opt.router_options(max_batch=64)
def route_cmd(
    settings: Settings,
    limits: BatchLimits,
    policy: str,
    workdir: opt.WorkdirOpt = opt.DEFAULT_WORKDIR,
    reseed: Annotated[bool, typer.Option(help="Seed the state store from calibration.json first "
                                              "(overwrites adapted centroids).")] = False,
    group: Annotated[str | None, typer.Option(help="Consumer group (default PREFIX.router).")] = None,
    idle_exit: opt.IdleExitOpt = None, metrics_port: opt.MetricsOpt = None, log_level: opt.LogOpt = "INFO",
) -> None:
    """Pick each sample's start tier before any transformer layer runs (default: the policy `dimee study`
    chose on calibration, else the paper's nearest-centroid DIMEE-F) and publish it to that tier."""
    from dimee.composition import roles
    from dimee.streaming.deployment import Deployment

    stop = start_role(log_level, metrics_port, settings.metrics_host)
    opt.use_threads(settings.threads)
    deployment = Deployment.load(workdir, policy)
    store = roles.centroid_store(settings, deployment)
    if reseed:
        store.seed(deployment.calibration.centroid_arrays(), deployment.calibration.pool_sizes)
    elif not store.is_seeded():
        raise DimeeError(f"no centroids in {redact(settings.state)} for {deployment.state_id!r}: "
                         "run `dimee seed` (or pass --reseed) to seed them from calibration.json")
    if deployment.policy.adaptive or deployment.policy.feedback:
        store.check_not_evicting()
    ctx = roles.context(settings, "dimee-router", stop, limits)
    router = roles.router(ctx, deployment, store, group)
    typer.echo(f"routing policy: {deployment.policy.name}", err=True)
    beside = [roles.feedback(ctx, router)] if deployment.policy.feedback else []
    beside += [roles.controller(ctx, deployment, store)] if settings.control else []
    threads = [threading.Thread(target=stage.run, kwargs={"idle_exit_s": idle_exit}, daemon=True) for stage in beside]
    for thread in threads:
        thread.start()
    router.run(idle_exit_s=idle_exit)
    for thread in threads:  # they stop on the same signal: let them commit their last batch too
        thread.join(timeout=30)
    end_role()


@app.command("work")
@opt.batch_options()
@opt.settings_options(*opt.STAGE, "threads", "device", "audit_rate")
def work_cmd(
    settings: Settings,
    limits: BatchLimits,
    tier: Annotated[Tier, typer.Option(help="Which partition to serve: mobile (layers 1..m), edge (1..n) "
                                            "or cloud (1..L).")],
    workdir: opt.WorkdirOpt = opt.DEFAULT_WORKDIR,
    group: Annotated[str | None, typer.Option(help="Consumer group (default PREFIX.worker.TIER).")] = None,
    idle_exit: opt.IdleExitOpt = None,
    metrics_port: opt.MetricsOpt = None, log_level: opt.LogOpt = "INFO",
) -> None:
    """Serve one tier: batched early exit on the tier's partition under the policy the router stamped on each
    message; publish predictions (or escalate)."""
    from dimee.composition import roles
    from dimee.streaming.deployment import Deployment

    stop = start_role(log_level, metrics_port, settings.metrics_host)
    opt.use_threads(settings.threads)
    opt.device_available(settings.device)
    deployment = Deployment.load(workdir)
    ctx = roles.context(settings, f"dimee-{tier.value}", stop, limits)
    roles.worker(ctx, deployment, tier, group).run(idle_exit_s=idle_exit)
    end_role()
