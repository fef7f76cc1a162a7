"""What every long-running role command does first: logging, metrics, signal handling."""

from __future__ import annotations

from dimee.streaming.runtime import StopFlag


def start_role(log_level: str, metrics_port: int | None, metrics_host: str = "127.0.0.1") -> StopFlag:
    """Logging, then /healthz, /readyz and /metrics on the port (before the model loads: alive, not ready),
    then signal handling."""
    from dimee.streaming.runtime import configure_logging

    configure_logging(log_level)
    if metrics_port:
        from dimee.streaming.health import serve

        serve(metrics_host, metrics_port)
    stop = StopFlag()
    stop.install_signal_handlers()
    return stop


def end_role() -> None:
    """A role that has stopped cleanly (its last batch committed, its clients closed) exits at once, status 0.
    The interpreter's own teardown of torch and transformers takes over a second and does nothing a stopped
    role needs, so it is skipped: output and log streams are flushed, then the process ends."""
    import logging
    import os
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
