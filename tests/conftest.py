import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_report_header(config):
    from tests.support.real_services import report_header

    return report_header()


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
