"""`dimee dashboard`: the running stream as a live web page."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from dimee.cli import options as opt
from dimee.cli.app import app
from dimee.common.errors import DimeeError
from dimee.common.workdir import Workdir
from dimee.streaming.config import Settings

PortOpt = Annotated[int, typer.Option(min=1, max=65535, help="Port the page is served on.")]
HostOpt = Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 to reach it from other machines).")]


def dashboard_group(settings: Settings, port: int) -> str:
    """One consumer group per dashboard (host or --instance-id, and port), stable across restarts: two
    dashboards never split the partitions between them, and a restart reuses its group."""
    return f"{settings.topic_prefix}.dashboard.{settings.instance_id or socket.gethostname()}.{port}"


@app.command("dashboard")
@opt.settings_options(*opt.KAFKA, "state", "instance_id")
def dashboard_cmd(
    settings: Settings,
    port: PortOpt = 8050,
    host: HostOpt = "127.0.0.1",
    workdir: Annotated[Path | None, typer.Option(
        help="Work folder with calibration.json: the cloud-only cost, and the calibrated centroids that "
             "adaptive routing moves away from (read from --state).")] = None,
    log_level: opt.LogOpt = "WARNING",
) -> None:
    """A live web page of the stream: throughput, tier shares, cost against cloud-only, accuracy, latency,
    escalations, dead letters and how far each adaptive centroid has moved. Ctrl-C stops it."""
    calibration = None if workdir is None else Workdir(workdir).calibration
    if calibration is not None and not calibration.is_file():
        raise DimeeError(f"--workdir {workdir}: no {calibration.name} there (run `dimee calibrate` first)")
    from dimee.dashboard.server import bind, create_app, serve  # slow imports after the checks

    sock = bind(host, port)  # a busy port fails here, before any connection is made
    from dimee.dashboard.follow import open_follower
    from dimee.streaming.deployment import Deployment
    from dimee.streaming.runtime import configure_logging

    configure_logging(log_level)
    deployment = None if workdir is None else Deployment.load(workdir)
    follower = open_follower(settings, deployment, dashboard_group(settings, port))
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"dashboard on http://{shown}:{port}/ (following {settings.topic_prefix}.predictions)", err=True)
    serve(create_app(follower), sock, log_level)
