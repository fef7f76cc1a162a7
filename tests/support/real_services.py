"""The real Kafka cluster and Redis server that deploy/local-services.sh starts for `make test`: where they
are, and how a test that needs them is skipped outside `make test` (and required under CI)."""

from __future__ import annotations

import os
import subprocess

import pytest

KAFKA = os.environ.get("DIMEE_TEST_KAFKA")
REDIS = os.environ.get("DIMEE_TEST_REDIS")
API_VERSION = os.environ.get("DIMEE_TEST_KAFKA_API_VERSION", "")
KAFKA_VERSION = os.environ.get("DIMEE_TEST_KAFKA_VERSION", "")
KAFKA_NODES = int(os.environ.get("DIMEE_TEST_KAFKA_NODES") or 1)
SERVICES_SCRIPT = os.environ.get("DIMEE_TEST_SERVICES_SCRIPT")


def api_version() -> tuple[int, ...] | None:
    return tuple(int(p) for p in API_VERSION.split(".")) if API_VERSION else None


def needs(what: str, available: bool) -> list[pytest.MarkDecorator]:
    """Marks for a test that needs a real service: skipped without it, but under CI its absence fails."""
    marks = [pytest.mark.integration]
    if not available:
        marks.append(pytest.mark.xfail(reason="CI must run integration tests", strict=True, run=False)
                     if os.environ.get("CI") else pytest.mark.skip(reason=f"no {what}: run `make test`"))
    return marks


def report_header() -> str:
    """Which broker the integration tests saw, for pytest's header."""
    if not (KAFKA and REDIS):
        return "kafka: none (integration tests need `make test`)"
    return (f"kafka: {KAFKA_VERSION or 'unknown version'}, {KAFKA_NODES} node{'s' * (KAFKA_NODES > 1)} at {KAFKA} "
            f"(api_version {API_VERSION or 'auto'}); redis: {REDIS}")


def services(*command: str) -> None:
    """Run deploy/local-services.sh with `command` (e.g. kill-broker 2)."""
    assert SERVICES_SCRIPT, "DIMEE_TEST_SERVICES_SCRIPT not set"
    subprocess.run(["bash", SERVICES_SCRIPT, *command], check=True)
