"""The offline half end to end: train → record → calibrate → evaluate, over a work folder:

    WORKDIR/model/                    safetensors + JSON spec + tokenizer
    WORKDIR/calibration.json          α*, pools, centroids, cost model, curves
    WORKDIR/records/{split}.safetensors   per-layer probabilities and routing embeddings
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from dimee.calibration import Calibration, EmbeddingKind, Objective, calibrate
from dimee.data import DatasetSpec, Splits, load_splits
from dimee.evaluation.report import build_report, write_report
from dimee.method import Distance
from dimee.model.artifacts import load_model, load_tokenizer, new_model, save_model
from dimee.model.early_exit import Pooling
from dimee.records import ExitRecords
from dimee.tiers import CostModel
from dimee.training import TrainConfig, record_exit_probabilities, train


def default_m_n(num_layers: int) -> tuple[int, int]:
    """m = L/3, n = 2L/3: (2, 4) for 6 layers, (4, 8) for 12, as DESIGN.md sets them."""
    return max(1, num_layers // 3), max(2, 2 * num_layers // 3)


def model_dir(workdir: Path) -> Path:
    return workdir / "model"


def calibration_path(workdir: Path) -> Path:
    return workdir / "calibration.json"


def records_path(workdir: Path, split: str) -> Path:
    return workdir / "records" / f"{split}.safetensors"


def run_train(splits: Splits, workdir: Path, config: TrainConfig, base_model: str | None,
              pooling: Pooling = "mean", max_length: int = 64) -> dict:
    torch.manual_seed(config.seed)
    model, tokenizer = new_model(base_model, splits.train.label_names, pooling=pooling, max_length=max_length)
    history = train(model, tokenizer, splits.train, splits.calibration, config)
    save_model(model, tokenizer, model_dir(workdir))
    summary = {"train_config": asdict(config), **asdict(history)}
    (workdir / "train_history.json").write_text(json.dumps(summary, indent=2))
    return summary


def record_split(splits: Splits, workdir: Path, split: str, raw: bool = False) -> ExitRecords:
    folder = model_dir(workdir)
    model, tokenizer = load_model(folder), load_tokenizer(folder)
    data = splits.get(split)
    probs, embeddings = record_exit_probabilities(model, tokenizer, data, desc=f"recording {split} exits")
    if raw:  # the `raw` routing embedding: mean of word-embedding rows only
        from dimee.training import batch_tensors, batches
        rows = []
        for idx in batches(data, 128):
            inputs = batch_tensors(tokenizer, data, idx, model.spec.max_length)
            rows.append(model.routing_embedding(**inputs, raw=True).numpy())
        embeddings = np.concatenate(rows)
    records = ExitRecords(probs, embeddings, np.asarray(data.labels))
    records.save(records_path(workdir, split))
    return records


def run_calibrate(
    splits: Splits, workdir: Path, m: int | None, n: int | None, cost: CostModel, objective: Objective,
    max_drop: float, distance: Distance, embedding: EmbeddingKind, model_id: str,
) -> Calibration:
    records = record_split(splits, workdir, "calibration", raw=embedding == "raw")
    num_layers = records.probs.shape[1]
    default_m, default_n = default_m_n(num_layers)
    cal = calibrate(records.probs, records.labels, records.embeddings, m or default_m, n or default_n, cost=cost,
                    objective=objective, max_drop=max_drop, distance=distance, embedding=embedding,
                    model_id=model_id)
    cal.save(calibration_path(workdir))
    return cal


def run_evaluate(splits: Splits, workdir: Path, out_dir: Path, seed: int = 0, title: str | None = None) -> dict:
    cal = Calibration.load(calibration_path(workdir))
    calibration_records = ExitRecords.load(records_path(workdir, "calibration"))
    test_records = record_split(splits, workdir, "test", raw=cal.embedding == "raw")
    report = build_report(test_records, calibration_records, cal, seed=seed)
    write_report(report, out_dir, title or f"dimee evaluation ({splits.test.name})")
    return report


def splits_for(spec: DatasetSpec, data_dir: Path) -> Splits:
    return load_splits(spec, data_dir)
