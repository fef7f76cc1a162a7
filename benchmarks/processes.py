"""dimee roles as OS processes for the benchmark: launched with a metrics port, timed from launch to ready
(`/readyz` answers 200) and from SIGTERM to exit, read through their Prometheus metrics and /proc. Each is a
child of `dimee.streaming.processes`, the launcher `dimee up`, the fault suite and the tests share."""

from __future__ import annotations

import ast
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from dimee.streaming.processes import DIMEE_IN_PYTHON, Child, Stopped, free_port, stop_all, wait_ready


def checkout_env(code: Path, into: Path) -> dict[str, str]:
    """What a role's environment needs to import the checkout `code` as it installs (run with cwd=code). With
    PYTHONPATH=code alone, its dimee/ was found but not its role packages, so this checkout's editable install
    answered for them: a before/after run measured the other core with this checkout's router and workers.
    PYTHONSAFEPATH: the working directory's dimee/ (role folders not inside) must not come first."""
    return {"PYTHONPATH": str(importable_layout(code, into)), "PYTHONSAFEPATH": "1"}


def importable_layout(code: Path, into: Path) -> Path:
    """A folder for PYTHONPATH with the checkout's dimee/ and its role folders inside, as its setup.py maps them
    (producers/ → dimee.producers, …), linked, not copied."""
    package = into / "dimee"
    package.mkdir(parents=True, exist_ok=True)
    for entry in (code / "dimee").iterdir():
        _link(package / entry.name, entry)
    for folder in _role_folders(code / "setup.py"):
        if (code / folder).is_dir():
            _link(package / folder, code / folder)
    return into


def _role_folders(setup_py: Path) -> tuple[str, ...]:
    """setup.py's ROLE_FOLDERS; none where the checkout predates them (its roles were top-level packages)."""
    if not setup_py.exists():
        return ()
    for node in ast.parse(setup_py.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "ROLE_FOLDERS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    return ()


def _link(link: Path, target: Path) -> None:
    if not link.is_symlink():
        link.symlink_to(target.resolve(), target_is_directory=target.is_dir())


@dataclass
class Role:
    name: str
    child: Child
    port: int
    ready_s: float | None = None
    exit_s: float | None = None
    peak_rss_mb: float | None = None
    stopped_at: float | None = None  # time.monotonic() at the SIGTERM

    @property
    def process(self) -> subprocess.Popen:
        assert self.child.process is not None
        return self.child.process

    @property
    def launched(self) -> float:
        """time.monotonic() at launch."""
        return self.child.started_at

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Every sample of the role's /metrics: (name, sorted label pairs) → value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples whose labels include `labels` (0 if none)."""
        wanted = set(labels.items())
        return sum(v for (n, pairs), v in self.metrics().items() if n == name and wanted <= set(pairs))

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def became_ready(self) -> bool:
        """Whether it is ready; the first time it is, its time from launch to ready is kept."""
        if self.ready_s is None and self.is_ready():
            self.ready_s = time.monotonic() - self.launched
        return self.ready_s is not None

    def read_peak_rss(self) -> None:
        """VmHWM: the most resident memory the process has had."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.peak_rss_mb = int(line.split()[1]) / 1024


@dataclass
class RoleSet:
    """The roles of one run. `code` runs another checkout's dimee (a before/after comparison)."""

    env: dict[str, str]
    logs: Path
    code: Path | None = None
    roles: dict[str, Role] = field(default_factory=dict)

    def start(self, name: str, *args: str, threads: int = 1) -> Role:
        env = dict(self.env, DIMEE_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false" if threads == 1 else "true")
        if self.code is not None:
            env.update(checkout_env(self.code, self.logs / "code"))
        port = free_port()
        child = Child(name, [*DIMEE_IN_PYTHON, *args, "--metrics-port", str(port)], env,
                      log=self.logs / f"{name}.log", cwd=self.code or Path.cwd())
        child.start()
        role = self.roles[name] = Role(name, child, port)
        return role

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        late = wait_ready([r.child for r in self.roles.values()], lambda c: self.roles[c.name].became_ready(),
                          timeout_s, poll_s=0.05)
        if late:
            tail = late[0].log_text(since_start=False)[-2000:]
            raise RuntimeError(f"{late[0].name} did not become ready:\n{tail}")

    def stop(self, name: str | None = None) -> None:
        """SIGTERM to each (or one) role, all at once; each one's time to exit."""
        chosen = [self.roles[name]] if name else list(self.roles.values())
        for role in chosen:
            role.read_peak_rss()
            role.stopped_at = time.monotonic()

        def exited(stopped: Stopped) -> None:
            role = self.roles[stopped.child.name]
            role.exit_s = time.monotonic() - role.stopped_at  # type: ignore[operator]

        stop_all([role.child for role in chosen], 60.0, exited)

    def __enter__(self) -> RoleSet:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        for role in self.roles.values():
            if role.child.alive():
                role.child.kill()


def service_env(prefix: str, guarantee: str = "auto", partitions: int = 2) -> dict[str, str]:
    """The environment of a run's roles: the test Kafka and Redis of deploy/local-services.sh, a fresh topic
    prefix (so every run starts from empty topics), logs quiet."""
    return dict(os.environ, DIMEE_BROKER=f"kafka://{os.environ['DIMEE_TEST_KAFKA']}",
                DIMEE_STATE=os.environ["DIMEE_TEST_REDIS"], DIMEE_TOPIC_PREFIX=prefix, DIMEE_GUARANTEE=guarantee,
                DIMEE_PARTITIONS=str(partitions),
                DIMEE_KAFKA_API_VERSION=os.environ.get("DIMEE_TEST_KAFKA_API_VERSION", ""))
