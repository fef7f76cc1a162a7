"""What every long-running role shares: logging, graceful stop on SIGTERM/SIGINT, retry with backoff."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar, get_args

import structlog

from dimee.common.choices import LogFormat
from dimee.common.errors import DimeeError, ServiceUnavailable
from dimee.streaming.metrics import RETRIES, UNAVAILABLE

T = TypeVar("T")


LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)


def log_format() -> LogFormat:
    """DIMEE_LOG_FORMAT (console or json) if set, else readable lines on a terminal and one JSON object per line
    elsewhere (files, containers, CI). A role under `dimee up` writes to a pipe: `up` sets the variable."""
    chosen = os.environ.get("DIMEE_LOG_FORMAT", "").strip().lower()
    if chosen and chosen not in LOG_FORMATS:
        raise DimeeError(f"DIMEE_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {chosen!r}")
    if chosen:
        return chosen  # type: ignore[return-value]  # one of LOG_FORMATS, checked above
    return "console" if sys.stderr.isatty() else "json"


def configure_logging(level: str = "INFO") -> None:
    """Logs in the `log_format()`, at `level` and above."""
    renderer = (structlog.dev.ConsoleRenderer(colors=False) if log_format() == "console"
                else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # Look sys.stderr up at each call: a stream captured at configure time may be closed later (tests).
        logger_factory=lambda *_: structlog.PrintLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.getLogger("kafka").setLevel(logging.ERROR)  # its own retries are reported by ours


log = structlog.get_logger()


class StopFlag:
    """Set by SIGTERM/SIGINT (or by code); roles check it between batches, then finish, flush, commit."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None  # the signal that asked for the stop, if one did

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    def install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, _frame: object) -> None:
            # Nothing but the flag here: logging from a signal handler can deadlock on the logger's own lock
            # (seen: a SIGTERM arriving while the process was writing a log line never ended it).
            self.reason = signal.Signals(signum).name
            self.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


REPEAT_LOG_S = 60.0  # a condition that lasts is logged again this often, not at every retry


def retry(action: Callable[[], T], what: str, stop: StopFlag, first_delay_s: float = 0.2,
          max_delay_s: float = 5.0) -> T:
    """Run `action` until it stops raising ServiceUnavailable, backing off exponentially. If a stop is asked
    for meanwhile, re-raise: the caller then exits without committing past the failure. One log line when the
    condition starts (or changes, or every REPEAT_LOG_S), one when it ends."""
    delay, said, said_at, service = first_delay_s, None, 0.0, what
    while True:
        try:
            result = action()
            UNAVAILABLE.labels(service).set(0)
            if said is not None:
                log.info("service available again", what=service)
            return result
        except ServiceUnavailable as exc:
            if stop.is_set():
                raise
            service = exc.service or what
            RETRIES.labels(service).inc()
            UNAVAILABLE.labels(service).set(1)
            if str(exc) != said or time.monotonic() - said_at > REPEAT_LOG_S:
                log.warning("service unavailable, retrying", what=service, error=str(exc), retry_in_s=round(delay, 2))
                said, said_at = str(exc), time.monotonic()
            stop.wait(delay)
            delay = min(delay * 2, max_delay_s)
