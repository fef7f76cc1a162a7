"""One setting, one default: the batch limits and the seen-marker TTL have their default in `Settings`
(dimee/streaming/config.py) alone, and the stage's `BatchLimits`, the roles' command lines, the state store and
the Helm chart all agree with it, so the in-process pipeline and the deployed roles run alike."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from unittest.mock import MagicMock

import pytest
import yaml
from dimee.state import open_store
from dimee.state.redis_store import RedisCentroidStore
from typer.main import get_command
from typer.testing import CliRunner

from dimee.cli import app
from dimee.streaming.config import Settings
from dimee.streaming.runtime import StopFlag
from dimee.streaming.stage import BatchLimits

VALUES = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "dimee" / "values.yaml"
BATCH_ENV = ("DIMEE_MAX_BATCH", "DIMEE_MAX_WAIT_MS", "DIMEE_COMMIT_INTERVAL_MS", "DIMEE_MAX_QUEUED_BATCHES",
             "DIMEE_POLL_TIMEOUT_S", "DIMEE_MAX_POLL_INTERVAL_S")


def default(name: str) -> object:
    return Settings.model_fields[name].default


def from_settings_defaults() -> BatchLimits:
    """BatchLimits as the Settings defaults say, field by field (ms on the command line, s in the stage)."""
    return BatchLimits(max_batch=default("max_batch"), max_wait_s=default("max_wait_ms") / 1000,
                       poll_timeout_s=default("poll_timeout_s"), max_poll_interval_s=default("max_poll_interval_s"),
                       max_queued_batches=default("max_queued_batches"),
                       commit_interval_s=default("commit_interval_ms") / 1000)


class Captured(Exception):
    def __init__(self, limits: BatchLimits) -> None:
        self.limits = limits


@pytest.fixture
def role_limits(monkeypatch, tmp_path):
    """The BatchLimits a real role command (`dimee work`, `dimee route`) hands its stages, from its command line
    and the environment: everything before the stages is stubbed, and the stage context is never opened."""
    from dimee.cli import stream
    from dimee.composition import roles
    from dimee.streaming.deployment import Deployment

    monkeypatch.chdir(tmp_path)  # no .env file
    for name in BATCH_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(stream, "start_role", lambda *args: StopFlag())
    monkeypatch.setattr(Deployment, "load", MagicMock())
    monkeypatch.setattr(roles, "centroid_store", MagicMock())

    def context(settings, client_id, stop, limits):
        raise Captured(limits)

    monkeypatch.setattr(roles, "context", context)

    def run(*args: str) -> BatchLimits:
        result = CliRunner().invoke(app, [*args, "--broker", "kafka://127.0.0.1:9092"])
        assert isinstance(result.exception, Captured), result.output
        return result.exception.limits

    return run


def test_batch_limits_default_to_the_settings_defaults():
    assert BatchLimits() == from_settings_defaults()


def test_a_worker_started_without_options_runs_with_the_settings_defaults(role_limits):
    assert role_limits("work", "--tier", "mobile") == BatchLimits() == from_settings_defaults()


def test_the_router_differs_from_the_defaults_only_in_its_larger_batch(role_limits):
    route = role_limits("route")
    assert dataclasses.replace(route, max_batch=BatchLimits().max_batch) == BatchLimits()
    assert route.max_batch >= BatchLimits().max_batch


def test_the_batch_limits_environment_variables_reach_the_roles(role_limits, monkeypatch):
    monkeypatch.setenv("DIMEE_MAX_WAIT_MS", "7")
    monkeypatch.setenv("DIMEE_COMMIT_INTERVAL_MS", "250")
    monkeypatch.setenv("DIMEE_MAX_QUEUED_BATCHES", "3")
    monkeypatch.setenv("DIMEE_MAX_BATCH", "12")
    for role in (("work", "--tier", "edge"), ("route",)):
        limits = role_limits(*role)
        assert (limits.max_wait_s, limits.commit_interval_s, limits.max_queued_batches, limits.max_batch) == (
            0.007, 0.25, 3, 12), role
    assert role_limits("work", "--tier", "edge", "--max-wait-ms", "5", "--max-batch", "4").max_wait_s == 0.005


def test_a_bad_batch_limit_in_the_environment_is_one_line(role_limits, monkeypatch):
    monkeypatch.setenv("DIMEE_MAX_QUEUED_BATCHES", "0")
    result = CliRunner().invoke(app, ["work", "--tier", "edge", "--broker", "kafka://127.0.0.1:9092"])
    assert "DIMEE_MAX_QUEUED_BATCHES" in str(result.exception) and "\n" not in str(result.exception)


@pytest.mark.parametrize("command", ["work", "route", "pipeline"])
def test_the_help_shows_the_settings_defaults(command):
    """The help text reads the defaults from Settings too, instead of repeating them."""
    params = {p.name: p for p in get_command(app).commands[command].params}
    wait, queued = params["max_wait_ms"], params["max_queued_batches"]
    assert f"{default('max_wait_ms'):g}" in wait.help and "DIMEE_MAX_WAIT_MS" in wait.help
    assert str(default("max_queued_batches")) in queued.help and "DIMEE_MAX_QUEUED_BATCHES" in queued.help
    assert all(params[name].default is None for name in ("max_wait_ms", "commit_interval_ms", "max_queued_batches"))


def test_the_seen_marker_ttl_has_one_default():
    """open_store's default TTL (which every caller without Settings gets) is the Settings one, and so is the
    Redis store's: a replayed id is remembered as long wherever the store is opened. Nothing connects here."""
    store = open_store("redis://127.0.0.1:1/0", "model", pipeline="dimee")
    assert isinstance(store, RedisCentroidStore)
    assert store.seen_ttl_s == default("seen_ttl_s") == RedisCentroidStore("redis://127.0.0.1:1/0", "ns").seen_ttl_s


def test_the_chart_values_match_the_code_defaults(role_limits):
    """The chart cannot import the code, so its values repeat the defaults the roles' commands take: they must
    be the same ones. Nothing is rendered; values.yaml is read as it is."""
    values = yaml.safe_load(VALUES.read_text())
    route, work = role_limits("route"), role_limits("work", "--tier", "cloud")
    assert (values["router"]["maxWaitMs"], values["router"]["maxBatch"]) == (route.max_wait_s * 1000, route.max_batch)
    for tier, worker in values["workers"].items():
        assert (worker["maxWaitMs"], worker["maxBatch"]) == (work.max_wait_s * 1000, work.max_batch), tier
        assert worker["maxWaitMs"] == default("max_wait_ms"), tier
    if "seenTtlSeconds" in values:  # the chart leaves the TTL to the code today
        assert values["seenTtlSeconds"] == default("seen_ttl_s")
