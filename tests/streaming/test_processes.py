"""The one launcher of role processes (dimee.streaming.processes): stop, logs per start, exits, restart pacing."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from dimee.streaming.processes import Backoff, Child, stop_all, wait_ready

READY_THEN_WAIT = "import sys, time; print('ready', flush=True); time.sleep(60)"
IGNORES_SIGTERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
                   "time.sleep(60)")


def _child(name: str, code: str, log: Path | None = None, **options) -> Child:
    return Child(name, [sys.executable, "-c", code], dict(os.environ), log=log, **options)


def _printed_ready(child: Child) -> bool:
    return "ready" in child.log_text()


def test_stop_all_terminates_the_polite_and_kills_the_one_that_ignores_sigterm(tmp_path):
    polite, stubborn = _child("polite", READY_THEN_WAIT, tmp_path / "a.log"), \
        _child("stubborn", IGNORES_SIGTERM, tmp_path / "b.log")
    for child in (polite, stubborn):
        child.start()
    assert wait_ready([polite, stubborn], _printed_ready, timeout_s=60) == []
    seen = []
    stopped = stop_all([polite, stubborn], grace_s=1.0, on_exit=seen.append)
    assert [(s.child.name, s.code, s.killed) for s in stopped] == [
        ("polite", -signal.SIGTERM, False), ("stubborn", -signal.SIGKILL, True)]
    assert seen == stopped and not polite.alive() and not stubborn.alive()


def test_a_restart_logs_apart_and_its_exit_is_reported_once(tmp_path):
    child = _child("role", "import sys; print(sys.argv[1]); sys.exit(3)", tmp_path / "role.log")
    child.command = [*child.command, "first"]
    child.start()
    assert child.wait(60) == 3
    assert child.take_exit() == 3 and child.take_exit() is None  # once per start
    child.command[-1] = "second"  # the command is read at every start
    child.start()
    child.wait(60)
    assert child.log_text().split() == ["second"]
    assert child.log_text(since_start=False).split() == ["first", "second"]
    assert child.starts == 2 and child.take_exit() == 3


def test_output_reaches_the_callback_line_by_line():
    lines, done = [], threading.Event()

    def on_line(line: str) -> None:
        lines.append(line)
        if line == "two":
            done.set()

    child = _child("role", "print('one'); print('two')", on_line=on_line)
    child.start()
    assert child.wait(60) == 0 and done.wait(60)
    assert lines == ["one", "two"]


def test_wait_ready_ends_at_a_child_that_exits_before_it_is_ready(tmp_path):
    dies = _child("dies", "raise SystemExit(1)", tmp_path / "dies.log")
    dies.start()
    dies.wait(60)
    assert wait_ready([dies], _printed_ready, timeout_s=60) == [dies]


def test_backoff_doubles_while_a_process_keeps_exiting_quickly_and_calms_after_a_long_run():
    backoff = Backoff(max_s=8, quick_s=10, calm_s=1)
    assert [backoff.after_exit(lived_s=0.5) for _ in range(5)] == [2, 4, 8, 8, 8]
    assert backoff.after_exit(lived_s=30) == 1
