"""A local supervisor for the multi-process run (`dimee up`): starts each role as its own process, prefixes
its output with the role's name, restarts a role that exits on its own (with a growing pause if it keeps
dying at once), and on Ctrl-C / SIGTERM stops them all (SIGTERM: each finishes its batch and commits), the
way a process manager would, in one terminal instead of six. The processes are `dimee.streaming.processes`
children, as the benchmarks', the fault suite's and the integration tests' are."""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import IO

from dimee.streaming.processes import Backoff, Child, Stopped, stop_all
from dimee.streaming.runtime import StopFlag

COLOURS = ("36", "33", "35", "32", "34", "31", "96", "93")


@dataclass
class Program:
    name: str
    command: list[str]
    restarts: int = 0
    exits: list[int] = field(default_factory=list)
    # a role that dies within 10 s of its start waits twice as long as before (up to 30 s), else 1 s
    backoff: Backoff = field(default_factory=lambda: Backoff(max_s=30.0, quick_s=10.0, calm_s=1.0))
    child: Child | None = None


class Supervisor:
    def __init__(self, programs: list[Program], env: dict[str, str], out: IO[str] = sys.stdout,
                 stop_timeout_s: float = 30.0) -> None:
        self.programs, self.env, self.out = programs, env, out
        self.stop_timeout_s = stop_timeout_s
        self.width = max(len(p.name) for p in programs)
        self._lock = threading.Lock()
        for program in programs:
            program.child = Child(program.name, program.command, env, on_line=partial(self.say, program.name))

    def say(self, name: str, line: str) -> None:
        prefix = name.ljust(self.width)
        if self.out.isatty():
            colour = COLOURS[[p.name for p in self.programs].index(name) % len(COLOURS)] if name != "up" else "1"
            prefix = f"\x1b[{colour}m{prefix}\x1b[0m"
        with self._lock:
            self.out.write(f"{prefix} | {line}\n")
            self.out.flush()

    def _start(self, program: Program) -> None:
        assert program.child is not None  # made in __init__
        process = program.child.start()
        self.say("up", f"{program.name} started (pid {process.pid})")

    def _restart_exited(self, stop: StopFlag) -> None:
        for program in self.programs:
            child = program.child
            assert child is not None
            if stop.is_set() or (code := child.take_exit()) is None:
                continue
            program.exits.append(code)
            pause_s = program.backoff.after_exit(time.monotonic() - child.started_at)
            self.say("up", f"{program.name} exited with {code}; restarting in {pause_s:.0f} s")
            if not stop.wait(pause_s):
                program.restarts += 1
                self._start(program)

    def run(self, stop: StopFlag) -> int:
        """Until `stop` is set; then stop every role and return 0 if all stopped cleanly."""
        for program in self.programs:
            self._start(program)
        while not stop.wait(0.5):
            self._restart_exited(stop)
        return self._stop_all()

    def _stop_all(self) -> int:
        running = [p.child for p in self.programs if p.child is not None and p.child.alive()]
        stopped = stop_all(running, self.stop_timeout_s, self._said_stopped)
        return 0 if all(s.code in (0, -signal.SIGTERM) for s in stopped) else 1

    def _said_stopped(self, stopped: Stopped) -> None:
        self.say("up", f"{stopped.child.name} stopped ({stopped.code})")
