"""Roles as child processes: the one launcher under `dimee up` (`dimee.streaming.supervisor`), the benchmarks'
role sets, the fault-injection suite and the integration tests. A `Child` is one role's process across its
restarts: started with its own environment, its output appended to its own log file or handed line by line
to a callback (`dimee up` prefixes each line with the role's name); `stop_all` stops children the way a process
manager does (SIGTERM to all at once, each finishes its batch and commits, then SIGKILL after a grace period);
`wait_ready` polls children until each is ready; `Backoff` paces the restarts of one that keeps exiting."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DIMEE = str(Path(sys.executable).parent / "dimee")  # the console script installed beside this interpreter
# The CLI run by this interpreter itself: it finds dimee on this interpreter's path (PYTHONPATH included, so a
# child can run another checkout's code).
DIMEE_IN_PYTHON = [sys.executable, "-c", "from dimee.cli import main; main()"]


@dataclass
class Child:
    """One role's process, across its restarts. Its output goes to `log` (appended) if given, else line by line
    to `on_line` if given, else where this process's goes. `command` is read at every start."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path | None = None
    on_line: Callable[[str], None] | None = None
    cwd: Path | None = None
    own_session: bool = False  # a session of its own and no stdin: a Ctrl-C at the terminal reaches only us
    process: subprocess.Popen | None = None
    started_at: float = 0.0  # time.monotonic() just after the last start
    starts: int = 0
    log_offset: int = 0  # where the last start's output begins in `log`
    exit_taken: bool = False  # take_exit() has reported the last start's exit
    pump: threading.Thread | None = None  # hands the last start's output to `on_line`

    def start(self) -> subprocess.Popen:
        options: dict = {"env": self.env, "cwd": self.cwd, "stderr": subprocess.STDOUT}
        if self.own_session:
            options |= {"stdin": subprocess.DEVNULL, "start_new_session": True}
        if self.log is not None:
            self.log_offset = self.log.stat().st_size if self.log.exists() else 0
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(self.command, stdout=log, **options)
        elif self.on_line is not None:
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True, bufsize=1, **options)
            self.pump = threading.Thread(target=self._pump, args=(self.process, self.on_line), daemon=True)
            self.pump.start()
        else:
            self.process = subprocess.Popen(self.command, **options)
        self.started_at, self.exit_taken = time.monotonic(), False
        self.starts += 1
        return self.process

    @staticmethod
    def _pump(process: subprocess.Popen, on_line: Callable[[str], None]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            on_line(line.rstrip("\n"))

    def wait_output(self, timeout_s: float) -> None:
        """Once the process has ended: until `on_line` has had the last start's last line (its exit can be seen
        before the line that says why has been read from the pipe), or timeout_s."""
        if self.pump is not None:
            self.pump.join(timeout_s)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send(self, sig: int) -> None:
        """A signal to the process, if it is running."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def wait(self, timeout_s: float | None = None) -> int:
        """Its exit status; subprocess.TimeoutExpired if it runs past timeout_s."""
        assert self.process is not None, f"{self.name} was never started"
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> int:
        """SIGKILL (if it still runs) and reap it; its exit status."""
        assert self.process is not None, f"{self.name} was never started"
        self.process.kill()
        return self.process.wait()

    def take_exit(self) -> int | None:
        """The exit status of the last start, once: the first call after the process ended; None while it runs,
        before its first start and after that first call."""
        if self.exit_taken or self.process is None or self.process.poll() is None:
            return None
        self.exit_taken = True
        return self.process.returncode

    def log_text(self, since_start: bool = True) -> str:
        """Its log, from where the last start's output begins (or all of it)."""
        if self.log is None or not self.log.exists():
            return ""
        with self.log.open("rb") as handle:
            handle.seek(self.log_offset if since_start else 0)
            return handle.read().decode("utf-8", "replace")


@dataclass(frozen=True)
class Stopped:
    child: Child
    code: int  # its exit status (-9 where it was SIGKILLed)
    killed: bool  # it outlived the grace period and was SIGKILLed


def stop_all(children: Sequence[Child], grace_s: float,
             on_exit: Callable[[Stopped], None] | None = None) -> list[Stopped]:
    """SIGTERM to every child still running, all at once, then wait for each until one deadline, grace_s away;
    one still running then is SIGKILLed. Each outcome is handed to `on_exit` as it comes, and all returned."""
    for child in children:
        child.send(signal.SIGTERM)
    deadline, stopped = time.monotonic() + grace_s, []
    for child in children:
        try:
            outcome = Stopped(child, child.wait(max(0.1, deadline - time.monotonic())), killed=False)
        except subprocess.TimeoutExpired:
            outcome = Stopped(child, child.kill(), killed=True)
        stopped.append(outcome)
        if on_exit is not None:
            on_exit(outcome)
    return stopped


def wait_ready(children: Iterable[Child], ready: Callable[[Child], bool], timeout_s: float, poll_s: float = 0.2,
               exit_ends: bool = True) -> list[Child]:
    """Poll each child in turn until ready(child), all within one timeout; the children that were not ready by
    then. With `exit_ends`, a child that exits before it is ready ends the wait at once: [that child]."""
    deadline, late = time.monotonic() + timeout_s, []
    for child in children:
        while not ready(child):
            if exit_ends and not child.alive():
                return [child]
            if time.monotonic() > deadline:
                late.append(child)
                break
            time.sleep(poll_s)
    return late


@dataclass
class Backoff:
    """The pause before restarting a process that exited on its own: it doubles (up to max_s) while the process
    keeps exiting within quick_s of its start, and is calm_s after one that ran longer."""

    max_s: float
    quick_s: float = float("inf")
    calm_s: float = 1.0
    pause_s: float = 1.0

    def after_exit(self, lived_s: float) -> float:
        self.pause_s = min(self.pause_s * 2, self.max_s) if lived_s < self.quick_s else self.calm_s
        return self.pause_s


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a child's metrics or web server)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
