"""The consumers of predictions (sink, tail) and the whole stream in one process (pipeline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dimee.choices import Split
from dimee.cli import options as opt
from dimee.cli.app import app
from dimee.cli.runtime import start_role
from dimee.config import Settings
from dimee.stage import BatchLimits


@app.command("sink")
@opt.settings_options(*opt.STAGE)
def sink_cmd(
    settings: Settings,
    out: Annotated[Path, typer.Option(help="JSONL file the predictions are appended to (each id once).")],
    group: Annotated[str | None, typer.Option(help="Consumer group (default PREFIX.sink).")] = None,
    idle_exit: opt.IdleExitOpt = None, metrics_port: opt.MetricsOpt = None, log_level: opt.LogOpt = "INFO",
) -> None:
    """Write predictions to JSONL, deduplicated by id."""
    opt.needs_a_broker(settings)
    from dimee import roles

    ctx = roles.context(settings, "dimee-sink", start_role(log_level, metrics_port, settings.metrics_host))
    sink = roles.sink(ctx, out, group_id=group)
    sink.run(idle_exit_s=idle_exit)
    typer.echo(sink.stats.line())


@app.command("tail")
@opt.settings_options(*opt.KAFKA, "instance_id")
def tail_cmd(
    settings: Settings,
    workdir: Annotated[Path | None, typer.Option(help="Folder with calibration.json, for the cloud-only "
                                                      "cost (default 1.0).")] = None,
    idle_exit: opt.IdleExitOpt = None, log_level: opt.LogOpt = "WARNING",
) -> None:
    """Live view of the predictions: throughput, accuracy, cost vs cloud-only, tier shares, latency."""
    opt.needs_a_broker(settings)
    from dimee import roles
    from dimee.deployment import Deployment

    ctx = roles.context(settings, "dimee-tail", start_role(log_level, None))
    tail = roles.tail(ctx, None if workdir is None else Deployment.load(workdir))
    tail.run(idle_exit_s=idle_exit)
    tail.show(final=True)


@app.command("pipeline")
@opt.router_options(max_batch=32)
def pipeline_cmd(
    settings: Settings,
    limits: BatchLimits,
    policy: str,
    dataset: Annotated[str, typer.Option(help="Dataset whose split is streamed.")] = "rt-sentences",
    split: Annotated[Split, typer.Option(help="Which split to stream.")] = "test",
    count: Annotated[int | None, typer.Option(min=1, help="Stream only the first N samples.")] = None,
    workdir: opt.WorkdirOpt = opt.DEFAULT_WORKDIR,
    reseed: Annotated[bool, typer.Option(help="Seed the state store from calibration.json (always done "
                                              "for memory://).")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the predictions as JSONL here.")] = None,
    log_level: opt.LogOpt = "WARNING",
) -> None:
    """Producer, router, three workers and sink in one process; prints accuracy, cost and throughput."""
    from dimee.data import DatasetSpec
    from dimee.deployment import Deployment
    from dimee.pipeline import PipelineOptions, run_pipeline
    from producers.sources import from_split

    start_role(log_level, None)
    deployment = Deployment.load(workdir, policy)
    records = from_split(DatasetSpec(name=dataset), split, settings.data_dir)[:count]
    typer.echo(f"routing policy: {deployment.policy.name}", err=True)
    options = PipelineOptions(reseed=reseed or settings.state.startswith("memory://"),
                              limits=limits, sink_path=out)
    run = run_pipeline(records, deployment, settings, options)
    # every sample counts: the summary says how many were sent and how many went to the dead-letter topic
    typer.echo(json.dumps({**run.summary, "samples": len(records), "dead_letters": run.dead_letters}, indent=2))


@app.command("schema")
def schema_cmd(
    out: Annotated[Path | None, typer.Option(help="Folder to write one NAME.schema.json per message; default: "
                                                  "print them all as one JSON object.")] = None,
) -> None:
    """JSON Schemas of every message on dimee's topics (sample, routed, prediction, feedback, dead letter),
    for consumers in other languages; docs/streaming.md says how versions change."""
    from dimee.messages import SCHEMAS

    schemas = {name: kind.model_json_schema() for name, kind in SCHEMAS.items()}
    if out is None:
        typer.echo(json.dumps(schemas, indent=2))
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    typer.echo(f"{len(schemas)} schemas written to {out}")
