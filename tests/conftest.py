import os
import signal

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_report_header(config):
    from tests.support.deadlines import describe
    from tests.support.real_services import report_header

    return [report_header(), describe()]


def pytest_collection_modifyitems(config, items):
    """pytest-timeout's limit per test (pyproject.toml) is a fixed deadline too: stretched like the others, so a
    test whose own waits were stretched is not cut short by it. A test's own timeout mark is left as it is."""
    from tests.support.deadlines import FACTOR, scaled

    if FACTOR == 1 or not config.pluginmanager.hasplugin("timeout"):  # pytest-timeout: a dev dependency
        return
    from pytest_timeout import get_env_settings

    limit = get_env_settings(config).timeout
    if not limit:
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(scaled(limit)))


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Ctrl-C and SIGTERM keep stopping the run: a role's StopFlag installs SIGINT/SIGTERM handlers for the rest
    of its process (dimee/streaming/runtime.py), and a CLI command run in this process (`main()`) leaves them
    behind when it fails, so pytest would ignore both. Whatever a test, or its fixtures, installs is undone."""
    saved = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    yield
    for number, handler in saved.items():
        if handler is not None and signal.getsignal(number) is not handler:  # None: not set from Python
            signal.signal(number, handler)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from tests.support.helpers import saved_tiny_model

    return saved_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    """A tiny model with its calibration.json, shared read-only by the stream tests."""
    from tests.support.helpers import tiny_workdir

    return tiny_workdir(tmp_path_factory.mktemp("workdir"))


@pytest.fixture(scope="session")
def cal(workdir):
    from dimee.method.calibration import Calibration

    return Calibration.load(workdir / "calibration.json")


@pytest.fixture
def hand_cal():
    """The hand-worked case's calibration (tests/support/hand_case.py): α* = 0.6111, m = 1, n = 2, L = 3."""
    from tests.support import hand_case

    return hand_case.calibration()
