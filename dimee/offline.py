"""The offline half end to end over a work folder (`dimee.workdir` says where each artifact lives):
train → record every exit → calibrate → evaluate."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from dimee.calibration import Calibration, CalibrationConfig, calibrate
from dimee.data import DatasetSpec, Splits, load_splits
from dimee.evaluation.report import build_report, write_report
from dimee.exits import ExitRecords
from dimee.model.artifacts import load_model, load_tokenizer, new_model, save_model
from dimee.training import TrainConfig, record_exit_probabilities, train
from dimee.workdir import Workdir


def run_train(splits: Splits, workdir: Workdir, config: TrainConfig) -> dict:
    torch.manual_seed(config.seed)
    model, tokenizer = new_model(config.base_model, splits.train.label_names, pooling=config.pooling,
                                 max_length=config.max_length)
    history = train(model, tokenizer, splits.train, splits.calibration, config)
    save_model(model, tokenizer, workdir.model)
    summary = {"train_config": asdict(config), **asdict(history)}
    workdir.train_history.write_text(json.dumps(summary, indent=2))
    return summary


def record_split(splits: Splits, workdir: Workdir, split: str, raw: bool = False) -> ExitRecords:
    model, tokenizer = load_model(workdir.model), load_tokenizer(workdir.model)
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
    records.save(workdir.exits(split))
    return records


def run_calibrate(splits: Splits, workdir: Workdir, config: CalibrationConfig) -> Calibration:
    exits = record_split(splits, workdir, "calibration", raw=config.embedding == "raw")
    cal = calibrate(exits, config)
    cal.save(workdir.calibration)
    return cal


def run_evaluate(splits: Splits, workdir: Workdir, out_dir: Path, seed: int = 0, title: str | None = None) -> dict:
    cal = Calibration.load(workdir.calibration)
    cal_exits = ExitRecords.load(workdir.exits("calibration"))
    test_exits = record_split(splits, workdir, "test", raw=cal.embedding == "raw")
    report = build_report(test_exits, cal_exits, cal, seed=seed)
    write_report(report, out_dir, title or f"dimee evaluation ({splits.test.name})")
    return report


def splits_for(spec: DatasetSpec, data_dir: Path) -> Splits:
    return load_splits(spec, data_dir)
