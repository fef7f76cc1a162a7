"""dimee roles as real OS processes (children of `dimee.streaming.processes`, the launcher `dimee up` and the
benchmarks use), and the files they read and write. Every timeout_s here is for an idle machine: the helpers
stretch it by tests/support/deadlines.py's factor themselves."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from dimee.streaming.processes import DIMEE, Child, free_port, wait_ready
from tests.support.deadlines import scaled

__all__ = ["DIMEE", "Processes", "free_port", "http_get", "read_sink", "wait_for", "write_jsonl"]


class Processes:
    """dimee roles as real OS processes, logs kept for the failure message."""

    def __init__(self, folder: Path, env: dict) -> None:
        self.folder, self.env = folder, env
        self.children: dict[str, Child] = {}

    @property
    def running(self) -> dict[str, subprocess.Popen]:
        """The processes of the roles started and not yet stopped or killed, by name."""
        return {name: child.process for name, child in self.children.items() if child.process is not None}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        child = self.children[name] = Child(name, [DIMEE, *args], self.env, log=self.folder / f"{name}.log")
        return child.start()

    def wait_started(self, *names: str, timeout_s: float = 120.0) -> None:
        late = wait_ready([self.children[n] for n in names], lambda c: "stage started" in self.log(c.name),
                          scaled(timeout_s))
        if late:  # the first role that exited, or did not start in time
            name = late[0].name
            assert late[0].alive(), f"{name} exited:\n{self.log(name)[-3000:]}"
            pytest.fail(f"{name} did not start:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str, timeout_s: float = 60.0) -> int:
        child = self.children.pop(name)
        child.send(signal.SIGTERM)
        return child.wait(scaled(timeout_s))

    def kill(self, name: str) -> None:
        self.children.pop(name).kill()

    def stop_all(self) -> dict[str, int]:
        return {name: self.stop(name) for name in list(self.children)}

    def kill_all(self) -> None:
        for child in self.children.values():
            child.kill()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_sink(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str,
             on_timeout: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + scaled(timeout_s)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{on_timeout()}")
        time.sleep(0.25)


def http_get(port: int, path: str) -> tuple[int, str]:
    """Status and body of GET http://127.0.0.1:PORT/PATH; (0, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=scaled(5)) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)
