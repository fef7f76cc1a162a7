"""A local supervisor for the multi-process run (`dimee up`): starts each role as its own process, prefixes
its output with the role's name, restarts a role that exits on its own (with a growing pause if it keeps
dying at once), and on Ctrl-C / SIGTERM stops them all (SIGTERM: each finishes its batch and commits), the
way a process manager would, in one terminal instead of six."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO

from dimee.streaming.runtime import StopFlag

COLOURS = ("36", "33", "35", "32", "34", "31", "96", "93")


@dataclass
class Program:
    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    pause_s: float = 1.0
    exits: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(self, programs: list[Program], env: dict[str, str], out: IO[str] = sys.stdout,
                 stop_timeout_s: float = 30.0) -> None:
        self.programs, self.env, self.out = programs, env, out
        self.stop_timeout_s = stop_timeout_s
        self.width = max(len(p.name) for p in programs)
        self._lock = threading.Lock()

    def say(self, name: str, line: str) -> None:
        prefix = name.ljust(self.width)
        if self.out.isatty():
            colour = COLOURS[[p.name for p in self.programs].index(name) % len(COLOURS)] if name != "up" else "1"
            prefix = f"\x1b[{colour}m{prefix}\x1b[0m"
        with self._lock:
            self.out.write(f"{prefix} | {line}\n")
            self.out.flush()

    def _start(self, program: Program) -> None:
        program.process = subprocess.Popen(program.command, env=self.env, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True, bufsize=1)
        program.started_at = time.monotonic()
        self.say("up", f"{program.name} started (pid {program.process.pid})")
        threading.Thread(target=self._pump, args=(program, program.process), daemon=True).start()

    def _pump(self, program: Program, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.say(program.name, line.rstrip("\n"))

    def _restart_exited(self, stop: StopFlag) -> None:
        for program in self.programs:
            process = program.process
            if process is None or process.poll() is None or stop.is_set():
                continue
            program.exits.append(process.returncode)
            quick = time.monotonic() - program.started_at < 10.0  # died at once: back off, it may keep dying
            program.pause_s = min(program.pause_s * 2, 30.0) if quick else 1.0
            self.say("up", f"{program.name} exited with {process.returncode}; restarting in {program.pause_s:.0f} s")
            program.process = None
            if not stop.wait(program.pause_s):
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
        running = [p for p in self.programs if p.process is not None and p.process.poll() is None]
        for program in running:
            program.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline, clean = time.monotonic() + self.stop_timeout_s, True
        for program in running:
            process = program.process
            assert process is not None
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            clean = clean and process.returncode in (0, -signal.SIGTERM)
            self.say("up", f"{program.name} stopped ({process.returncode})")
        return 0 if clean else 1
