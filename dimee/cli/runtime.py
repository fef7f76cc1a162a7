"""What every long-running role command does first: logging, metrics, signal handling."""

from __future__ import annotations

from dimee.runtime import StopFlag


def start_role(log_level: str, metrics_port: int | None) -> StopFlag:
    from dimee.runtime import configure_logging

    configure_logging(log_level)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    stop = StopFlag()
    stop.install_signal_handlers()
    return stop
