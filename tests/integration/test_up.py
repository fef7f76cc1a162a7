"""`dimee up`: every role a process under one supervisor on the real Kafka and Redis; a role killed is
restarted and nothing is lost; Ctrl-C stops them all cleanly."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading

from tests.support.deadlines import scaled
from tests.support.helpers import stream_records
from tests.support.processes import DIMEE, read_sink, wait_for, write_jsonl


def _transactional_ids(lines: list[str], role: str) -> list[str]:
    """The transactional id each start of a role logged (JSON log lines behind the supervisor's prefix)."""
    found = []
    for line in list(lines):
        name, _, rest = line.partition(" | ")
        if name.strip() == role and '"delivery"' in rest:
            found.append(json.loads(rest)["transactional_id"])
    return found


def test_up_runs_restarts_and_stops_every_role(workdir, env, tmp_path):
    out = tmp_path / "dimee.predictions.jsonl"
    lines: list[str] = []
    up = subprocess.Popen([DIMEE, "up", "--workdir", str(workdir), "--reseed", "--out", str(out)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    threading.Thread(target=lambda: lines.extend(up.stdout), daemon=True).start()  # type: ignore[arg-type]
    log = lambda: "".join(lines[-80:])  # noqa: E731
    try:
        wait_for(lambda: sum("stage started" in line for line in lines) >= 5, 180, "five roles started", log)
        first = stream_records(40, seed=71)
        assert subprocess.run([DIMEE, "produce", "--source", str(write_jsonl(tmp_path / "a.jsonl", first)),
                               "--id-col", "id"], env=env, timeout=scaled(120)).returncode == 0
        wait_for(lambda: len(read_sink(out)) >= len(first), 180, "the first predictions", log)
        pid = int(re.search(r"worker-edge started \(pid (\d+)\)", "".join(lines)).group(1))
        subprocess.run(["kill", "-9", str(pid)], check=True)
        wait_for(lambda: "worker-edge exited with -9; restarting" in "".join(lines), 30, "the restart", log)
        # the restarted worker takes its predecessor's transactional id (its init ends what the killed one left
        # open, instead of read_committed readers waiting out the transaction timeout)
        wait_for(lambda: len(_transactional_ids(lines, "worker-edge")) == 2, 120, "the restarted worker", log)
        first_id, restarted_id = _transactional_ids(lines, "worker-edge")
        assert first_id == restarted_id and first_id.endswith("worker-edge-up-" + socket.gethostname()), first_id
        second = stream_records(40, seed=72, prefix="again")
        assert subprocess.run([DIMEE, "produce", "--source", str(write_jsonl(tmp_path / "b.jsonl", second)),
                               "--id-col", "id"], env=env, timeout=scaled(120)).returncode == 0
        wait_for(lambda: len(read_sink(out)) >= len(first) + len(second), 240, "every prediction", log)
        assert sorted(r["id"] for r in read_sink(out)) == sorted(r["id"] for r in first + second)
        assert any(line.startswith("router") and "|" in line for line in lines)  # prefixed output
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=scaled(90)) == 0, log()
        assert sum("stopped (" in line for line in lines) == 5
    finally:
        up.kill()
