"""The consumers of predictions (sink, tail) and the whole stream in one process (pipeline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dimee.cli import options as opt
from dimee.cli.app import app
from dimee.cli.runtime import start_role
from dimee.common.choices import LogFormat
from dimee.producers.sources import SourceSpec
from dimee.streaming.config import Settings
from dimee.streaming.stage import BatchLimits


@app.command("sink")
@opt.settings_options(*opt.STAGE)
def sink_cmd(
    settings: Settings,
    out: Annotated[Path, typer.Option(help="JSONL file the predictions are appended to (each id once).")],
    group: Annotated[str | None, typer.Option(help="Consumer group (default PREFIX.sink).")] = None,
    idle_exit: opt.IdleExitOpt = None, metrics_port: opt.MetricsOpt = None, log_level: opt.LogOpt = "INFO",
) -> None:
    """Write predictions to JSONL, deduplicated by id."""
    from dimee.composition import roles

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
    from dimee.composition import roles
    from dimee.streaming.deployment import Deployment

    ctx = roles.context(settings, "dimee-tail", start_role(log_level, None))
    tail = roles.tail(ctx, None if workdir is None else Deployment.load(workdir))
    tail.run(idle_exit_s=idle_exit)
    tail.show(final=True)


@app.command("pipeline")
@opt.router_options(32, "audit_rate", embedded=True)
@opt.source_options
def pipeline_cmd(
    settings: Settings,
    limits: BatchLimits,
    policy: str,
    source: SourceSpec,
    count: Annotated[int | None, typer.Option(min=1, help="Stream only the first N samples.")] = None,
    workdir: opt.WorkdirOpt = opt.DEFAULT_WORKDIR,
    reseed: Annotated[bool, typer.Option(help="Seed the state store from calibration.json (always done "
                                              "for memory://).")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the predictions as JSONL here.")] = None,
    log_level: opt.LogOpt = "WARNING",
) -> None:
    """Producer, router, three workers and sink in one process, from the sources `dimee produce` takes (a split,
    a file, stdin, a drift sequence); prints accuracy, cost, throughput and the audit."""
    from dimee.composition.pipeline import PipelineOptions, run_pipeline
    from dimee.model.spec import load_spec
    from dimee.producers.sources import in_model_labels, open_source
    from dimee.streaming.audit import AuditTally
    from dimee.streaming.deployment import Deployment

    start_role(log_level, None)
    opt.use_threads(settings.threads)
    opened = open_source(source, settings.data_dir)  # a bad source is one line before the model loads
    deployment = Deployment.load(workdir, policy)
    records = in_model_labels(load_spec(deployment.workdir.model).label_names, opened)[:count]
    typer.echo(f"routing policy: {deployment.policy.name}", err=True)
    options = PipelineOptions(reseed=reseed or settings.state.startswith("memory://"),
                              limits=limits, sink_path=out)
    run = run_pipeline(records, deployment, settings, options)
    # every sample counts: the summary says how many were sent and how many went to the dead-letter topic
    tally = AuditTally()
    for audit in run.audits.values():
        tally.add(audit)
    audits = {"audit_rate": settings.audit_rate, "audits": tally.summary(),
              "mean_cost_with_audits": run.summary["mean_cost"] + tally.cost / max(len(records), 1)}
    typer.echo(json.dumps({**run.summary, "samples": len(records), "dead_letters": run.dead_letters, **audits},
                          indent=2))


@app.command("schema")
def schema_cmd(
    out: Annotated[Path | None, typer.Option(help="Folder to write one NAME.schema.json per message; default: "
                                                  "print them all as one JSON object.")] = None,
) -> None:
    """JSON Schemas of every message on dimee's topics (sample, routed, prediction, feedback, dead letter),
    for consumers in other languages; docs/streaming.md says how versions change."""
    from dimee.streaming.schemas import json_schemas

    schemas = json_schemas()
    if out is None:
        typer.echo(json.dumps(schemas, indent=2))
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    typer.echo(f"{len(schemas)} schemas written to {out}")


@app.command("up")
@opt.settings_options(*opt.STAGE, "state", "threads", "audit_rate", *opt.CONTROL)
@opt.policy_options
def up_cmd(
    ctx: typer.Context,
    settings: Settings,
    policy: str,
    workdir: opt.WorkdirOpt = opt.DEFAULT_WORKDIR,
    out: Annotated[Path, typer.Option(help="JSONL file the sink appends the predictions to.")] = Path(
        "runs/predictions.jsonl"),
    reseed: Annotated[bool, typer.Option(help="Seed the state store from calibration.json first.")] = False,
    metrics_port: Annotated[int | None, typer.Option(
        min=1, max=65530, help="Router's /healthz, /readyz, /metrics port; the workers and the sink take the "
                               "next four.")] = None,
    dashboard_port: Annotated[int, typer.Option(
        min=0, max=65535, help="Also run `dimee dashboard` on this port (0: no dashboard).")] = 0,
    log_level: opt.LogOpt = "INFO",
    log_format: Annotated[LogFormat | None, typer.Option(
        case_sensitive=False, envvar="DIMEE_LOG_FORMAT",
        help="The roles' log lines: console (readable) or json (one object a line); default: console when this "
             "output is a terminal, else json.")] = None,
) -> None:
    """Router, three workers and sink (and, with --dashboard-port, the live web page) as separate processes
    against the configured Kafka and Redis, in one terminal: prefixed output, a crashed role restarted, Ctrl-C
    stops them all (each finishes its batch). A role that fails on its configuration (exit status 2) stops them
    all, and `up` exits with that role's error."""
    import os
    import socket
    import sys

    from dimee.cli.environment import without_unknown
    from dimee.composition import roles
    from dimee.streaming.processes import DIMEE_IN_PYTHON as dimee
    from dimee.streaming.runtime import StopFlag
    from dimee.streaming.supervisor import Program, Supervisor

    programs = []
    for i, (name, args) in enumerate(roles.commands(workdir, policy, out, log_level)):
        metrics = ["--metrics-port", str(metrics_port + i)] if metrics_port else []
        programs.append(Program(name, [*dimee, *args, *metrics]))
    if dashboard_port:  # supervised like a role: restarted if it dies, stopped with the rest
        programs.append(Program("dashboard", [*dimee, "dashboard", "--port", str(dashboard_port),
                                              "--workdir", str(workdir), "--log-level", log_level]))
    # the connection settings as given here (options or environment) reach every role the same way; the unknown
    # DIMEE_* variables do not: `up` has warned of them once, its roles need not again
    env = {**without_unknown(os.environ, ctx.find_root().command),
           **{f"DIMEE_{name.upper()}": str(getattr(settings, name)) for name in opt.SETTING_OPTIONS
              if getattr(settings, name) is not None}}
    # One instance id for every role, the same after a restart: a restarted role's transactional id is its
    # predecessor's, so its init ends the open transaction the killed one left (read_committed readers of its
    # partitions wait ~0.3 s instead of the transaction timeout). Two `up`s on one host need their own ids.
    env["DIMEE_INSTANCE_ID"] = settings.instance_id or f"up-{socket.gethostname()}"
    # The roles write to a pipe (to us), where they would log JSON: they log as this terminal wants
    env["DIMEE_LOG_FORMAT"] = log_format or ("console" if sys.stdout.isatty() else "json")
    if reseed:  # once, before the router starts: a restarted router must keep its adapted centroids
        import subprocess

        seeded = subprocess.run([*dimee, "seed", "--workdir", str(workdir)], env=env, capture_output=True, text=True)
        if seeded.returncode != 0:  # its own one-line error, passed on
            typer.echo(seeded.stderr.strip(), err=True)
            raise typer.Exit(seeded.returncode)
        typer.echo(seeded.stdout.strip())
    stop = StopFlag()
    stop.install_signal_handlers()
    raise typer.Exit(Supervisor(programs, env).run(stop))
