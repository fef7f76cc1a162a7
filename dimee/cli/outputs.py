"""The consumers of predictions (sink, tail) and the whole stream in one process (pipeline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dimee.cli.app import app
from dimee.cli.options import (
    DEFAULT_WORKDIR,
    AdaptiveOpt,
    ApiOpt,
    BrokerOpt,
    IdleExitOpt,
    LogOpt,
    MaxBatchOpt,
    MaxWaitOpt,
    MetricsOpt,
    PolicyOpt,
    PrefixOpt,
    StateOpt,
    WorkdirOpt,
    stream_settings,
)
from dimee.cli.runtime import limits, start_role


@app.command("sink")
def sink_cmd(
    out: Annotated[Path, typer.Option(help="JSONL file the predictions are appended to (each id once).")],
    group: Annotated[str | None, typer.Option(help="Consumer group (default PREFIX.sink).")] = None,
    broker: BrokerOpt = None, topic_prefix: PrefixOpt = None, kafka_api_version: ApiOpt = None,
    idle_exit: IdleExitOpt = None, metrics_port: MetricsOpt = None, log_level: LogOpt = "INFO",
) -> None:
    """Write predictions to JSONL, deduplicated by id."""
    from dimee import roles

    settings = stream_settings(broker, None, topic_prefix, kafka_api_version)
    ctx = roles.context(settings, "dimee-sink", start_role(log_level, metrics_port))
    sink = roles.sink(ctx, out, group_id=group)
    sink.run(idle_exit_s=idle_exit)
    typer.echo(sink.stats.line())


@app.command("tail")
def tail_cmd(
    workdir: Annotated[Path | None, typer.Option(help="Folder with calibration.json, for the cloud-only "
                                                      "cost (default 1.0).")] = None,
    broker: BrokerOpt = None, topic_prefix: PrefixOpt = None, kafka_api_version: ApiOpt = None,
    idle_exit: IdleExitOpt = None, log_level: LogOpt = "WARNING",
) -> None:
    """Live view of the predictions: throughput, accuracy, cost vs cloud-only, tier shares, latency."""
    from dimee import roles
    from dimee.deployment import Deployment

    settings = stream_settings(broker, None, topic_prefix, kafka_api_version)
    ctx = roles.context(settings, "dimee-tail", start_role(log_level, None))
    tail = roles.tail(ctx, None if workdir is None else Deployment.load(workdir))
    tail.run(idle_exit_s=idle_exit)
    typer.echo(tail.stats.line())


@app.command("pipeline")
def pipeline_cmd(
    workdir: WorkdirOpt = DEFAULT_WORKDIR,
    dataset: Annotated[str, typer.Option(help="Dataset whose split is streamed.")] = "rt-sentences",
    split: Annotated[str, typer.Option(help="Which split to stream.")] = "test",
    count: Annotated[int | None, typer.Option(min=1, help="Stream only the first N samples.")] = None,
    policy: PolicyOpt = "auto",
    adaptive: AdaptiveOpt = False,
    reseed: Annotated[bool, typer.Option(help="Seed the state store from calibration.json (always done "
                                              "for memory://).")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the predictions as JSONL here.")] = None,
    broker: BrokerOpt = None, state: StateOpt = None, topic_prefix: PrefixOpt = None,
    kafka_api_version: ApiOpt = None, max_batch: MaxBatchOpt = 32, max_wait_ms: MaxWaitOpt = 20.0,
    log_level: LogOpt = "WARNING",
) -> None:
    """Producer, router, three workers and sink in one process; prints accuracy, cost and throughput."""
    from dimee.data import DatasetSpec
    from dimee.deployment import Deployment
    from dimee.pipeline import PipelineOptions, run_pipeline
    from producers.sources import from_split

    settings = stream_settings(broker, state, topic_prefix, kafka_api_version)
    start_role(log_level, None)
    deployment = Deployment.load(workdir, "DIMEE-D" if adaptive else policy)
    records = from_split(DatasetSpec(name=dataset), split, settings.data_dir)[:count]
    typer.echo(f"routing policy: {deployment.policy.name}", err=True)
    options = PipelineOptions(reseed=reseed or settings.state.startswith("memory://"),
                              limits=limits(max_batch, max_wait_ms), sink_path=out)
    run = run_pipeline(records, deployment, settings, options)
    typer.echo(json.dumps(run.summary, indent=2))
