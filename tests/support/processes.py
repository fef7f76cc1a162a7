"""dimee roles as real OS processes, and the files they read and write."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

DIMEE = str(Path(sys.executable).parent / "dimee")


class Processes:
    """dimee roles as real OS processes, logs kept for the failure message."""

    def __init__(self, folder: Path, env: dict) -> None:
        self.folder, self.env = folder, env
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("ab")
        proc = subprocess.Popen([DIMEE, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.running[name] = proc
        return proc

    def wait_started(self, *names: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        for name in names:
            while "stage started" not in self.log(name):
                assert self.running[name].poll() is None, f"{name} exited:\n{self.log(name)[-3000:]}"
                if time.monotonic() > deadline:
                    pytest.fail(f"{name} did not start:\n{self.log(name)[-3000:]}")
                time.sleep(0.2)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str, timeout_s: float = 60.0) -> int:
        proc = self.running.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=timeout_s)

    def kill(self, name: str) -> None:
        proc = self.running.pop(name)
        proc.kill()
        proc.wait()

    def stop_all(self) -> dict[str, int]:
        return {name: self.stop(name) for name in list(self.running)}

    def kill_all(self) -> None:
        for proc in self.running.values():
            proc.kill()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_sink(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str,
             on_timeout: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{on_timeout()}")
        time.sleep(0.25)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(port: int, path: str) -> tuple[int, str]:
    """Status and body of GET http://127.0.0.1:PORT/PATH; (0, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)
