"""A worker's start-up: what loading its partition imports."""

from tests.support.helpers import modules_imported_by


def test_a_partition_loads_without_scikit_learn(workdir):
    """transformers' generation utilities, imported by every model class, load scikit-learn and scipy.stats
    (~0.5 s of a worker's start) for assisted decoding, which an encoder never runs."""
    folder = str(workdir / "model")
    code = ("from pathlib import Path; import dimee.workers.tier_worker; "
            "from dimee.model.artifacts import load_model, load_tokenizer; "
            f"load_model(Path({folder!r}), num_layers=1); load_tokenizer(Path({folder!r}))")
    assert modules_imported_by(code, ("sklearn", "scipy.stats")) == []
