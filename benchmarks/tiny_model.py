"""A tiny BERT built from a config (no download), its tokenizer, a calibrated work folder around it and sentences
from its vocabulary: what the fault suite (`make faults`) streams without a trained model, and what the tests
build on."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

from dimee.model.artifacts import save_model
from dimee.model.early_exit import EarlyExitEncoder
from dimee.model.spec import ModelSpec

WORDS = [
    "the",
    "a",
    "movie",
    "film",
    "good",
    "bad",
    "great",
    "awful",
    "plot",
    "actor",
    "boring",
    "fun",
    "loved",
    "hated",
    "it",
    "was",
    "is",
    "not",
    "very",
    "really",
    "story",
    "scene",
    "music",
    "dull",
    "brilliant",
    "mess",
    "charming",
    "slow",
    "fast",
    "funny",
    "sad",
]


def tiny_tokenizer(folder: Path) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)


def tiny_model(num_layers: int = 6, num_labels: int = 2, seed: int = 0, hidden: int = 32) -> EarlyExitEncoder:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    backbone = BertModel(config, add_pooling_layer=False)
    spec = ModelSpec(
        backbone_config=config.to_dict(),
        num_labels=num_labels,
        label_names=[str(i) for i in range(num_labels)],
        max_length=32,
        base_model="tiny",
    )
    model = EarlyExitEncoder(spec, backbone=backbone)
    # Later heads more confident, as in a trained model, so a threshold spreads exits over layers.
    with torch.no_grad():
        for i, head in enumerate(model.heads):
            head.classifier.weight.mul_(0.5 + 1.5 * i)
    return model.eval()


def saved_tiny_model(folder: Path, num_layers: int = 6, seed: int = 0) -> Path:
    save_model(tiny_model(num_layers, seed=seed), tiny_tokenizer(folder / "tok"), folder)
    return folder


def sentences(count: int, seed: int = 0) -> list[str]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        length = int(torch.randint(2, 14, (1,), generator=gen))
        out.append(" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (length,), generator=gen)))
    return out


def tiny_workdir(folder: Path, num_layers: int = 6, calibration_size: int = 200, seed: int = 0) -> Path:
    """A saved tiny model plus its calibration.json, calibrated on random tiny-vocabulary sentences."""
    import numpy as np

    from dimee.common.workdir import Workdir
    from dimee.data.dataset import TextDataset
    from dimee.method import arithmetic
    from dimee.method.calibration import CalibrationConfig, calibrate
    from dimee.method.exits import ExitRecords
    from dimee.model.artifacts import load_model, load_tokenizer
    from dimee.offline.training import record_exit_probabilities

    work = Workdir(folder)
    saved_tiny_model(work.model, num_layers=num_layers, seed=seed)
    model, tokenizer = load_model(work.model), load_tokenizer(work.model)
    texts = sentences(calibration_size, seed=seed + 100)
    labels = [len(t) % 2 for t in texts]
    data = TextDataset("tiny", texts, labels, ["0", "1"])
    probs, embeddings = record_exit_probabilities(model, tokenizer, data)
    cal = calibrate(ExitRecords(probs, embeddings, np.array(labels)), CalibrationConfig(model_id="tiny"))
    # Random weights leave the reward's α* with nearly one pool; tests want traffic on every tier, so take the
    # grid α whose pools are most even, with the centroids of those pools.
    plan = cal.plan
    alpha = min(cal.grid, key=lambda a: np.bincount(arithmetic.true_pools(probs, a, plan), minlength=3).max())
    cal = cal.at_alpha(probs, embeddings, alpha)
    cal.save(work.calibration)
    return folder


def stream_records(count: int, seed: int = 7, prefix: str = "s") -> list[dict]:
    texts = sentences(count, seed=seed)
    return [{"id": f"{prefix}-{i}", "text": t, "label": len(t) % 2} for i, t in enumerate(texts)]
