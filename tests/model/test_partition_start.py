"""A worker's start-up: what loading its partition imports, and what it does meanwhile."""

import threading

import torch
from dimee.workers import tier_worker

from dimee.method.tiers import Tier
from dimee.streaming.transport.base import Topics
from dimee.streaming.transport.memory import InMemoryBroker
from tests.support.helpers import context, deployment, modules_imported_by


def test_a_partition_loads_without_scikit_learn(workdir):
    """transformers' generation utilities, imported by every model class, load scikit-learn and scipy.stats
    (~0.5 s of a worker's start) for assisted decoding, which an encoder never runs."""
    folder = str(workdir / "model")
    code = ("from pathlib import Path; import dimee.workers.tier_worker; "
            "from dimee.model.artifacts import load_model, load_tokenizer; "
            f"load_model(Path({folder!r}), num_layers=1); load_tokenizer(Path({folder!r}))")
    assert modules_imported_by(code, ("sklearn", "scipy.stats")) == []


def test_a_worker_opens_its_producer_while_its_partition_loads(workdir, cal, monkeypatch):
    """The broker's round trips (topics, producer, transactions) overlap the model's load; the group is joined
    only once the partition is loaded."""
    loading, release, producing = threading.Event(), threading.Event(), threading.Event()
    real_load = tier_worker.load_model

    def held_load(*args, **kwargs):
        loading.set()
        assert release.wait(30)
        return real_load(*args, **kwargs)

    broker = InMemoryBroker()
    real_producer = broker.producer

    def noted_producer(*args, **kwargs):
        producing.set()
        return real_producer(*args, **kwargs)

    monkeypatch.setattr(tier_worker, "load_model", held_load)
    monkeypatch.setattr(broker, "producer", noted_producer)
    worker = tier_worker.TierWorker(context(broker, Topics("start")), deployment(workdir, cal), Tier.MOBILE)
    opening = threading.Thread(target=worker.open)
    opening.start()
    assert loading.wait(30) and producing.wait(30)  # the producer was made while the load was held
    opening.join(0.2)
    assert opening.is_alive() and worker.consumer is not None  # open() waits for the partition
    release.set()
    opening.join(30)
    assert not opening.is_alive() and worker.model.num_layers == cal.plan.cap(Tier.MOBILE)
    worker.close()


def test_a_partition_loading_on_a_thread_leaves_other_models_alone(workdir, cal, monkeypatch):
    """The load runs beside the rest of the process: it must not touch process-wide state. (It once built the
    model under transformers' `no_init_weights`, which swaps torch.nn.init's functions for no-ops in every
    thread: a model built meanwhile elsewhere kept uninitialised weights.)"""
    from dimee.model import artifacts
    from tests.support.helpers import tiny_model

    building, release = threading.Event(), threading.Event()
    real_encoder = artifacts.EarlyExitEncoder

    def held_encoder(*args, **kwargs):
        building.set()
        assert release.wait(30)
        return real_encoder(*args, **kwargs)

    expected = tiny_model(2, seed=5).state_dict()
    monkeypatch.setattr(artifacts, "EarlyExitEncoder", held_encoder)
    worker = tier_worker.TierWorker(context(InMemoryBroker(), Topics("beside")), deployment(workdir, cal), Tier.MOBILE)
    assert building.wait(30)
    built_meanwhile = tiny_model(2, seed=5).state_dict()
    release.set()
    assert worker.model is not None
    for name, tensor in expected.items():
        assert torch.equal(built_meanwhile[name], tensor), name
