"""The consumers of predictions (sink, tail) and the whole stream in one process (pipeline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dimee.cli import options as opt
from dimee.cli.app import app
from dimee.cli.runtime import limits, start_role


@app.command("sink")
def sink_cmd(
    out: Annotated[Path, typer.Option(help="JSONL file the predictions are appended to (each id once).")],
    group: Annotated[str | None, typer.Option(help="Consumer group (default PREFIX.sink).")] = None,
    broker: opt.BrokerOpt = None, topic_prefix: opt.PrefixOpt = None, kafka_api_version: opt.ApiOpt = None,
    guarantee: opt.GuaranteeOpt = None,
    instance_id: opt.InstanceOpt = None, partitions: opt.PartitionsOpt = None,
    idle_exit: opt.IdleExitOpt = None, metrics_port: opt.MetricsOpt = None, log_level: opt.LogOpt = "INFO",
) -> None:
    """Write predictions to JSONL, deduplicated by id."""
    from dimee import roles

    settings = opt.stream_settings(broker=broker, topic_prefix=topic_prefix, kafka_api_version=kafka_api_version,
                                   guarantee=guarantee, instance_id=instance_id, partitions=partitions)
    ctx = roles.context(settings, "dimee-sink", start_role(log_level, metrics_port))
    sink = roles.sink(ctx, out, group_id=group)
    sink.run(idle_exit_s=idle_exit)
    typer.echo(sink.stats.line())


@app.command("tail")
def tail_cmd(
    workdir: Annotated[Path | None, typer.Option(help="Folder with calibration.json, for the cloud-only "
                                                      "cost (default 1.0).")] = None,
    broker: opt.BrokerOpt = None, topic_prefix: opt.PrefixOpt = None, kafka_api_version: opt.ApiOpt = None,
    idle_exit: opt.IdleExitOpt = None, log_level: opt.LogOpt = "WARNING", instance_id: opt.InstanceOpt = None,
) -> None:
    """Live view of the predictions: throughput, accuracy, cost vs cloud-only, tier shares, latency."""
    from dimee import roles
    from dimee.deployment import Deployment

    settings = opt.stream_settings(broker=broker, topic_prefix=topic_prefix, kafka_api_version=kafka_api_version,
                                   instance_id=instance_id)
    ctx = roles.context(settings, "dimee-tail", start_role(log_level, None))
    tail = roles.tail(ctx, None if workdir is None else Deployment.load(workdir))
    tail.run(idle_exit_s=idle_exit)
    typer.echo(tail.stats.line())


@app.command("pipeline")
def pipeline_cmd(
    workdir: opt.WorkdirOpt = opt.DEFAULT_WORKDIR,
    dataset: Annotated[str, typer.Option(help="Dataset whose split is streamed.")] = "rt-sentences",
    split: Annotated[str, typer.Option(help="Which split to stream.")] = "test",
    count: Annotated[int | None, typer.Option(min=1, help="Stream only the first N samples.")] = None,
    policy: opt.PolicyOpt = "auto",
    adaptive: opt.AdaptiveOpt = False,
    reseed: Annotated[bool, typer.Option(help="Seed the state store from calibration.json (always done "
                                              "for memory://).")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the predictions as JSONL here.")] = None,
    broker: opt.BrokerOpt = None, state: opt.StateOpt = None, topic_prefix: opt.PrefixOpt = None,
    kafka_api_version: opt.ApiOpt = None, guarantee: opt.GuaranteeOpt = None,
    instance_id: opt.InstanceOpt = None, partitions: opt.PartitionsOpt = None, max_batch: opt.MaxBatchOpt = 32,
    max_wait_ms: opt.MaxWaitOpt = 20.0,
    log_level: opt.LogOpt = "WARNING",
) -> None:
    """Producer, router, three workers and sink in one process; prints accuracy, cost and throughput."""
    from dimee.data import DatasetSpec
    from dimee.deployment import Deployment
    from dimee.pipeline import PipelineOptions, run_pipeline
    from producers.sources import from_split

    settings = opt.stream_settings(broker=broker, state=state, topic_prefix=topic_prefix,
                                   kafka_api_version=kafka_api_version,
                                   guarantee=guarantee, instance_id=instance_id, partitions=partitions)
    start_role(log_level, None)
    deployment = Deployment.load(workdir, "DIMEE-D" if adaptive else policy)
    records = from_split(DatasetSpec(name=dataset), split, settings.data_dir)[:count]
    typer.echo(f"routing policy: {deployment.policy.name}", err=True)
    options = PipelineOptions(reseed=reseed or settings.state.startswith("memory://"),
                              limits=limits(max_batch, max_wait_ms), sink_path=out)
    run = run_pipeline(records, deployment, settings, options)
    typer.echo(json.dumps(run.summary, indent=2))
