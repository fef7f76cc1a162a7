"""`dimee up`'s supervisor (dimee.streaming.supervisor) on stand-in roles: a crash is restarted; a role that exits
on its configuration (USER_ERROR_EXIT) is not: every role is stopped and its error comes back as one line."""

from __future__ import annotations

import io
import os
import sys
import threading
from pathlib import Path

import pytest

from dimee.common.errors import USER_ERROR_EXIT, DimeeError
from dimee.streaming.runtime import StopFlag
from dimee.streaming.supervisor import Program, Supervisor
from tests.support.deadlines import scaled
from tests.support.processes import wait_for

RUNS = "import time; print('running', flush=True); time.sleep(120)"
# Its stdout is a pipe, so the print is buffered and comes out at exit, after the error line on stderr.
BAD_CONFIG = ("import sys; print('routing policy: DIMEE-X'); sys.stderr.write('error: unknown policy DIMEE-X\\n'); "
              f"sys.exit({USER_ERROR_EXIT})")
# Crashes (a traceback, status 1) at its first start, runs at the next: the start count is kept in a file.
CRASHES_ONCE = ("import pathlib, sys, time; p = pathlib.Path(sys.argv[1]); n = int(p.read_text() or 0) if p.exists() "
                "else 0; p.write_text(str(n + 1)); print('start', n + 1, flush=True); n or 1 / 0; time.sleep(120)")


def _program(name: str, code: str, *args: str) -> Program:
    return Program(name, [sys.executable, "-c", code, *args])


class _Run:
    """Supervisor.run on a thread, as `dimee up` runs it; stopped (and its roles with it) at the end of a test."""

    def __init__(self, programs: list[Program]) -> None:
        self.out, self.stop, self.outcome = io.StringIO(), StopFlag(), {}
        self.supervisor = Supervisor(programs, dict(os.environ), out=self.out, stop_timeout_s=10.0)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.outcome["code"] = self.supervisor.run(self.stop)
        except DimeeError as exc:
            self.outcome["error"] = str(exc)

    def ended(self, timeout_s: float) -> bool:
        self.thread.join(timeout_s)
        return not self.thread.is_alive()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(scaled(30))


@pytest.fixture
def supervise():
    runs: list[_Run] = []

    def start(programs: list[Program]) -> _Run:
        runs.append(_Run(programs))
        return runs[-1]

    yield start
    for run in runs:
        run.close()


def test_a_role_with_a_configuration_error_stops_every_role_and_is_not_restarted(supervise):
    router, sink = _program("router", BAD_CONFIG), _program("sink", RUNS)
    run = supervise([router, sink])
    assert run.ended(scaled(60)), f"still supervising:\n{run.out.getvalue()}"
    # the role's own line, named: what `dimee up` prints as its one line of error (status 2)
    assert run.outcome == {"error": "router: unknown policy DIMEE-X"}, run.out.getvalue()
    assert router.restarts == 0 and router.exits == [USER_ERROR_EXIT], run.out.getvalue()
    assert sink.child is not None and not sink.child.alive()  # the others are stopped, not left running
    assert "sink stopped" in run.out.getvalue() and "restarting" not in run.out.getvalue()


def test_a_crashed_role_is_restarted_and_the_run_ends_cleanly_on_stop(supervise, tmp_path: Path):
    worker = _program("worker-edge", CRASHES_ONCE, str(tmp_path / "starts"))
    run = supervise([worker, _program("sink", RUNS)])
    wait_for(lambda: worker.restarts == 1 and "start 2" in run.out.getvalue(), 60, "the restart", run.out.getvalue)
    assert worker.exits == [1] and "worker-edge exited with 1; restarting" in run.out.getvalue()
    run.stop.set()
    assert run.ended(scaled(30)) and run.outcome == {"code": 0}, run.out.getvalue()
