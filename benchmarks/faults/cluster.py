"""The fault suite's machinery: the services (Kafka nodes, Redis) it stops and starts through
deploy/local-services.sh, and a supervisor that runs dimee roles as OS processes (children of
`dimee.streaming.processes`, the launcher `dimee up` uses) and restarts one that exits without the suite
asking it to, counting it as an unexpected exit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dimee.streaming.processes import DIMEE, Backoff, Child, stop_all, wait_ready

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[faults {time.monotonic() - T0:7.1f}s] {message}", flush=True)


@dataclass(frozen=True)
class Cluster:
    kafka: list[str]
    redis: str
    services: str
    nodes: int

    @classmethod
    def from_env(cls) -> Cluster:
        missing = [n for n in ("DIMEE_TEST_KAFKA", "DIMEE_TEST_REDIS", "DIMEE_TEST_SERVICES_SCRIPT")
                   if not os.environ.get(n)]
        if missing:
            sys.exit(f"faults: {', '.join(missing)} not set: run under `bash deploy/local-services.sh run -- ...`")
        return cls(os.environ["DIMEE_TEST_KAFKA"].split(","), os.environ["DIMEE_TEST_REDIS"],
                   os.environ["DIMEE_TEST_SERVICES_SCRIPT"], int(os.environ.get("DIMEE_TEST_KAFKA_NODES") or 1))

    def service(self, *command: str, timeout_s: float = 240.0) -> int:
        """deploy/local-services.sh COMMAND; its return code (never raises)."""
        say(f"   services: {' '.join(command)}")
        try:
            return subprocess.run(["bash", self.services, *command], timeout=timeout_s,
                                  stdout=subprocess.DEVNULL).returncode
        except subprocess.TimeoutExpired:
            return -1

    def start_brokers(self, nodes: list[int]) -> list[int]:
        """Start nodes together (a KRaft node waits for its quorum, so one at a time would never be ready)."""
        procs = [subprocess.Popen(["bash", self.services, "start-broker", str(n)], stdout=subprocess.DEVNULL)
                 for n in nodes]
        say(f"   services: start-broker {' '.join(map(str, nodes))}")
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=240))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(-1)
        return codes


@dataclass
class Exit:
    role: str
    code: int | None
    at_s: float
    excerpt: list[str]


@dataclass
class Role:
    name: str
    kind: str  # router, worker, sink, producer
    build: Callable[[Role], list[str]]  # the dimee arguments, built at every (re)start
    log: Path
    child: Child | None = None  # its process across restarts, made by Supervisor.add
    expected: bool = False  # the suite stopped it
    finished: bool = False  # a producer that sent everything (exit 0)
    restart_at: float | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(max_s=20.0))  # 2 s, doubling to 20 s

    @property
    def starts(self) -> int:
        return 0 if self.child is None else self.child.starts

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def log_text(self) -> str:
        """This incarnation's log."""
        return "" if self.child is None else self.child.log_text()


def excerpt(role: Role, lines: int = 2) -> list[str]:
    """The last lines of a role's log: for a crash, the traceback's exception line."""
    text = [line.strip() for line in role.log_text().splitlines() if line.strip(" \t^~")]
    return [line[:300] for line in text[-lines:]]


class Supervisor:
    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.started = env, time.monotonic()
        self.roles: dict[str, Role] = {}
        self.exits: list[Exit] = []
        self.kills = 0
        self.paused = False
        self.lock = threading.RLock()
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def add(self, role: Role) -> None:
        with self.lock:
            role.child = Child(role.name, [], self.env, log=role.log, own_session=True)
            self.roles[role.name] = role
            self._start(role)

    def _start(self, role: Role) -> None:
        assert role.child is not None
        role.child.command = [DIMEE, *role.build(role)]
        role.child.start()
        role.expected, role.restart_at = False, None

    def _watch(self) -> None:
        while not self.halt.wait(0.3):
            with self.lock:
                for role in self.roles.values():
                    self._check(role)

    def _check(self, role: Role) -> None:
        if role.child is not None and (code := role.child.take_exit()) is not None:
            self._exited(role, code)
        if role.restart_at is not None and time.monotonic() >= role.restart_at and not self.paused:
            try:
                self._start(role)
            except Exception as exc:  # e.g. the producer's remainder could not be read: try again later
                say(f"   ! could not restart {role.name}: {exc}")
                role.restart_at = time.monotonic() + 5.0

    def _exited(self, role: Role, code: int | None) -> None:
        if role.expected:
            return
        if role.kind == "producer" and code == 0:
            role.finished = True
            return
        lines = excerpt(role)
        self.exits.append(Exit(role.name, code, round(time.monotonic() - self.started, 1), lines))
        say(f"   ! {role.name} exited unexpectedly (code {code}): {lines[-1] if lines else ''}")
        role.restart_at = time.monotonic() + role.backoff.after_exit(time.monotonic() - role.child.started_at)  # type: ignore[union-attr]

    def kill(self, name: str, pause_s: float) -> bool:
        """SIGKILL a live role; the watcher restarts it after pause_s."""
        with self.lock:
            role = self.roles[name]
            if not role.alive():
                return False
            role.expected = True
            role.child.kill()  # type: ignore[union-attr]
            role.restart_at = time.monotonic() + pause_s
            self.kills += 1
            return True

    def terminate(self, timeout_s: float = 60.0) -> dict[str, int | str]:
        """SIGTERM every live role (no restarts until resume); their exit codes."""
        with self.lock:
            self.paused = True
            live = [role for role in self.roles.values() if role.alive()]
            for role in self.roles.values():
                role.restart_at = None
            for role in live:
                role.expected = True
        stopped = stop_all([role.child for role in live], timeout_s)  # type: ignore[misc]
        return {s.child.name: f"no exit in {timeout_s:.0f}s (SIGKILLed)" if s.killed else s.code for s in stopped}

    def resume(self) -> None:
        """Start again every role that is down (a finished producer stays down)."""
        with self.lock:
            self.paused = False
            for role in self.roles.values():
                if not role.finished and not role.alive():
                    self._start(role)

    def shutdown(self) -> dict[str, int | str]:
        codes = self.terminate(45.0)
        self.halt.set()
        self.thread.join(5)
        return codes

    def wait_started(self, names: list[str], timeout_s: float = 180.0) -> list[str]:
        """Wait for 'stage started' in each role's current log; the roles that never logged it."""
        children = [self.roles[n].child for n in names]
        late = wait_ready(children, lambda c: "stage started" in c.log_text(), timeout_s,  # type: ignore[arg-type]
                          poll_s=0.5, exit_ends=False)
        return [c.name for c in late]
