import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from tests.helpers import saved_tiny_model

    return saved_tiny_model(tmp_path_factory.mktemp("tiny-model"))
