"""A local supervisor for the multi-process run (`dimee up`): starts each role as its own process, prefixes
its output with the role's name, restarts a role that crashes (with a growing pause if it keeps dying at once),
and on Ctrl-C / SIGTERM stops them all (SIGTERM: each finishes its batch and commits), the way a process
manager would, in one terminal instead of six. A role that exits with USER_ERROR_EXIT (its configuration is
wrong: a missing work folder, an unknown policy, an unseeded state store) would fail the same way at every
restart: that stops them all, and `run` raises the role's own error line. The processes are
`dimee.streaming.processes` children, as the benchmarks', the fault suite's and the integration tests' are."""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import IO

from dimee.common.errors import USER_ERROR_EXIT, DimeeError
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
    restart_at: float | None = None  # while it waits to be restarted: when (time.monotonic())
    # Its current start's last line of output, the `error: ...` line once it printed one (its other output is
    # buffered apart and may come after): what it said before a USER_ERROR_EXIT.
    last_line: str = ""


class Supervisor:
    def __init__(self, programs: list[Program], env: dict[str, str], out: IO[str] = sys.stdout,
                 stop_timeout_s: float = 30.0) -> None:
        self.programs, self.env, self.out = programs, env, out
        self.stop_timeout_s = stop_timeout_s
        self.width = max(len(p.name) for p in programs)
        self._lock = threading.Lock()
        for program in programs:
            program.child = Child(program.name, program.command, env, on_line=partial(self._output, program))

    def say(self, name: str, line: str) -> None:
        prefix = name.ljust(self.width)
        if self.out.isatty():
            colour = COLOURS[[p.name for p in self.programs].index(name) % len(COLOURS)] if name != "up" else "1"
            prefix = f"\x1b[{colour}m{prefix}\x1b[0m"
        with self._lock:
            self.out.write(f"{prefix} | {line}\n")
            self.out.flush()

    def _output(self, program: Program, line: str) -> None:
        if line.strip() and (line.startswith("error: ") or not program.last_line.startswith("error: ")):
            program.last_line = line
        self.say(program.name, line)

    def _start(self, program: Program) -> None:
        assert program.child is not None  # made in __init__
        program.last_line, program.restart_at = "", None
        process = program.child.start()
        self.say("up", f"{program.name} started (pid {process.pid})")

    def _tend(self, stop: StopFlag) -> Program | None:
        """Schedule the restart of each role that has exited, start each whose pause is over; the first that
        exited with USER_ERROR_EXIT, if one did (then nothing more is started)."""
        for program in self.programs:
            child = program.child
            assert child is not None
            if stop.is_set():
                return None
            if (code := child.take_exit()) is not None:
                program.exits.append(code)
                if code == USER_ERROR_EXIT:
                    child.wait_output(5.0)  # its error line may still be in the pipe
                    self.say("up", f"{program.name} exited with {code}, an error a restart cannot mend; "
                                   "stopping every role")
                    return program
                pause_s = program.backoff.after_exit(time.monotonic() - child.started_at)
                program.restart_at = time.monotonic() + pause_s
                self.say("up", f"{program.name} exited with {code}; restarting in {pause_s:.0f} s")
        for program in self.programs:
            if program.restart_at is not None and time.monotonic() >= program.restart_at:
                program.restarts += 1
                self._start(program)
        return None

    def run(self, stop: StopFlag) -> int:
        """Until `stop` is set; then stop every role and return 0 if all stopped cleanly. A role that exits with
        USER_ERROR_EXIT stops them all too, then raises a DimeeError: that role's name and its last line."""
        for program in self.programs:
            self._start(program)
        failed = None
        while failed is None and not stop.wait(0.5):
            failed = self._tend(stop)
        code = self._stop_all()
        if failed is not None:
            error = failed.last_line.removeprefix("error: ") or f"exited with {USER_ERROR_EXIT}"
            raise DimeeError(f"{failed.name}: {error}")
        return code

    def _stop_all(self) -> int:
        running = [p.child for p in self.programs if p.child is not None and p.child.alive()]
        stopped = stop_all(running, self.stop_timeout_s, self._said_stopped)
        return 0 if all(s.code in (0, -signal.SIGTERM) for s in stopped) else 1

    def _said_stopped(self, stopped: Stopped) -> None:
        self.say("up", f"{stopped.child.name} stopped ({stopped.code})")
