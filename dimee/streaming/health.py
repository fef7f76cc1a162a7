"""Liveness, readiness and metrics over HTTP for a role process (`--metrics-port`):

    /healthz   200 while every stage's loop has turned within `stall_s` (2 minutes: stuck, or waiting that long
               on an outage, answers 503)
    /readyz    200 once every stage has joined its consumer group (one with a model has loaded it first), and
               every service it needs (Redis) answers; 503 with the reasons otherwise, each stage's saying what
               it does (only the router and the workers say "loading its model")
    /metrics   Prometheus text

The server starts before any model loads, so an orchestrator sees "alive, not ready" during a slow start.
A probe never waits on a service: each service's check runs on a thread of its own, one call at a time; a
probe that finds it running waits at most `answer_within_s` (half a second), then answers 503 with
"SERVICE not answering (N s)". A paused Redis would otherwise hold every probe for its socket timeout.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from dimee.common.errors import DimeeError, ServiceUnavailable


class _Probe:
    """One service's check, called off the prober's thread: one call in flight at most (a hung service never
    gathers threads), its answer handed to every probe that waits for it."""

    def __init__(self, service: str, check: Callable[[], str | None]) -> None:
        self.service, self.check = service, check
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._since: float | None = None  # when the call in flight began (None: none is)
        self._answer: str | None = None

    def ask(self) -> tuple[threading.Event, float]:
        """The call in flight, started if none is: its done event and when it began."""
        with self._lock:
            if self._since is None:
                self._since, self._done = time.monotonic(), threading.Event()
                threading.Thread(target=self._call, args=(self._done,), name=f"health-check {self.service}",
                                 daemon=True).start()
            return self._done, self._since

    def answer(self, done: threading.Event, since: float, deadline: float) -> str | None:
        """What is wrong with the service (None: nothing), or that it has not answered by the deadline."""
        if done.wait(max(deadline - time.monotonic(), 0.0)):
            with self._lock:
                return self._answer
        return f"not answering ({time.monotonic() - since:.0f} s)"

    def _call(self, done: threading.Event) -> None:
        try:
            wrong = self.check()
        except ServiceUnavailable as exc:
            wrong = f"unreachable: {exc}"
        except Exception:  # a failing check means not ready, never a crashed probe
            wrong = "unreachable"
        with self._lock:
            self._answer, self._since = wrong, None
        done.set()


class Health:
    """What the role's stages report: loop heartbeats, readiness facts, and live checks of services."""

    def __init__(self, stall_s: float = 120.0, answer_within_s: float = 0.5) -> None:
        self.stall_s, self.answer_within_s = stall_s, answer_within_s
        self._lock = threading.Lock()
        self._beats: dict[str, float] = {}
        self._pending: dict[str, str] = {}  # stage → what it still waits for
        self._checks: dict[str, _Probe] = {}

    def expect(self, stage: str, waiting_for: str) -> None:
        with self._lock:
            self._pending[stage] = waiting_for

    def ready_stage(self, stage: str) -> None:
        with self._lock:
            self._pending.pop(stage, None)

    def beat(self, stage: str) -> None:
        with self._lock:
            self._beats[stage] = time.monotonic()

    def needs(self, service: str, check: Callable[[], str | None]) -> None:
        """`check` says what is wrong with the service (None: nothing); one that raises means unreachable.
        Name the service so that an operator knows which one it is (its address)."""
        with self._lock:
            self._checks[service] = _Probe(service, check)

    def alive(self) -> tuple[bool, dict]:
        now = time.monotonic()
        with self._lock:
            ages = {stage: round(now - beat, 1) for stage, beat in self._beats.items()}
        stalled = {stage: age for stage, age in ages.items() if age > self.stall_s}
        return not stalled, {"loop_age_s": ages, "stalled": stalled}

    def ready(self) -> tuple[bool, dict]:
        with self._lock:
            pending, checks = dict(self._pending), dict(self._checks)
        asked = {service: probe.ask() for service, probe in checks.items()}  # all at once: one shared wait
        deadline = time.monotonic() + self.answer_within_s
        down = [f"{service} {wrong}" for service, (done, since) in asked.items()
                if (wrong := checks[service].answer(done, since, deadline)) is not None]
        reasons = [f"{stage}: {what}" for stage, what in pending.items()] + down
        if not pending and not self._beats and not checks:
            reasons.append("starting")
        return not reasons, {"waiting_for": reasons}


HEALTH = Health()
"""The process's one health state: stages report into it, the HTTP server reads it."""


def _app(health: Health) -> Callable:
    metrics = make_wsgi_app()

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path in ("/healthz", "/readyz"):
            ok, detail = health.alive() if path == "/healthz" else health.ready()
            body = json.dumps({"ok": ok, **detail}).encode()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [body]
        if path == "/metrics":
            return metrics(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /healthz, /readyz or /metrics\n"]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scrape never holds the next probe


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: not worth a log line
        pass


def serve(host: str, port: int, health: Health = HEALTH) -> WSGIServer:
    """Serve /healthz, /readyz and /metrics on host:port from a daemon thread."""
    try:
        server = make_server(host, port, _app(health), server_class=_Server, handler_class=_Quiet)
    except OSError as exc:
        raise DimeeError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    return server
