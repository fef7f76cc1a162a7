"""`dimee up` without Kafka: a role's configuration error ends `up` with that role's one line, not a restart loop;
the roles log in the format `up` asks for (readable on a terminal, JSON through a pipe or with --log-format json)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from typer.testing import CliRunner

from dimee.cli.app import app
from dimee.common.errors import DimeeError
from dimee.streaming.runtime import StopFlag, configure_logging, log
from tests.support.deadlines import scaled
from tests.support.helpers import RecordingSupervisor
from tests.support.processes import DIMEE

NO_KAFKA = ["--broker", "kafka://127.0.0.1:1"]  # a broker the roles never reach: they fail before they need it


def test_up_stops_at_a_role_with_a_configuration_error_and_names_it(tmp_path):
    """Every role fails on the missing work folder (the sink waits for Kafka): `up` stops them all and exits 2 with
    the first one's error, instead of restarting it every few seconds."""
    up = subprocess.run([DIMEE, "up", *NO_KAFKA, "--workdir", str(tmp_path / "none"), "--out",
                         str(tmp_path / "predictions.jsonl")], capture_output=True, text=True, timeout=scaled(180))
    assert up.returncode == 2, up.stdout + up.stderr
    lines = [line for line in up.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and re.fullmatch(r"error: (router|worker-\w+): no calibration at .*dimee calibrate.*",
                                            lines[0]), up.stderr
    assert "restarting" not in up.stdout and "sink stopped" in up.stdout, up.stdout


@pytest.mark.parametrize(("args", "expected"), [([], "json"), (["--log-format", "json"], "json"),
                                                (["--log-format", "console"], "console")])
def test_up_passes_its_log_format_to_the_roles(args, expected, tmp_path, monkeypatch):
    """Default: json here (CliRunner's output is no terminal), as through any pipe; console on a terminal."""
    monkeypatch.setattr("dimee.streaming.supervisor.Supervisor", RecordingSupervisor)
    monkeypatch.setattr(StopFlag, "install_signal_handlers", lambda self: None)
    monkeypatch.delenv("DIMEE_LOG_FORMAT", raising=False)
    result = CliRunner().invoke(app, ["up", *NO_KAFKA, "--workdir", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    assert RecordingSupervisor.env["DIMEE_LOG_FORMAT"] == expected


@pytest.fixture
def logging_restored(monkeypatch):
    """Logging configured as a role here would have it, once a test has configured it otherwise."""
    yield
    monkeypatch.delenv("DIMEE_LOG_FORMAT", raising=False)
    configure_logging("INFO")


@pytest.mark.parametrize("chosen", ["console", "json"])
def test_a_role_logs_in_the_format_it_is_given_though_its_output_is_a_pipe(chosen, monkeypatch, capsys,
                                                                           logging_restored):
    monkeypatch.setenv("DIMEE_LOG_FORMAT", chosen)
    configure_logging("INFO")
    log.info("stage started", stage="router")
    line = capsys.readouterr().err.strip()
    if chosen == "json":
        assert json.loads(line)["event"] == "stage started"
    else:
        assert not line.startswith("{") and "stage started" in line and "stage=router" in line, line


def test_an_unknown_log_format_is_a_configuration_error(monkeypatch, logging_restored):
    monkeypatch.setenv("DIMEE_LOG_FORMAT", "xml")
    with pytest.raises(DimeeError, match="DIMEE_LOG_FORMAT must be one of console, json"):
        configure_logging("INFO")
