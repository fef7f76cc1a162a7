"""The offline half end to end over a work folder (`dimee.common.workdir` says where each artifact lives):
train → record every exit → calibrate → evaluate."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from dimee.common.errors import DimeeError
from dimee.common.workdir import Workdir
from dimee.data import DatasetSpec, Splits, load_splits
from dimee.data.labels import in_model_labels
from dimee.method.calibration import Calibration, CalibrationConfig, calibrate
from dimee.method.exits import ExitRecords
from dimee.model.artifacts import load_model, load_tokenizer, new_model, save_model
from dimee.model.spec import load_spec
from dimee.model.tokenize import token_counts
from dimee.offline.evaluation.report import build_report, write_report
from dimee.offline.training import TrainConfig, record_exit_probabilities, train


def run_train(splits: Splits, workdir: Workdir, config: TrainConfig) -> dict:
    torch.manual_seed(config.seed)
    model, tokenizer = new_model(config.base_model, splits.train.label_names, pooling=config.pooling,
                                 max_length=config.max_length)
    history = train(model, tokenizer, splits.train, splits.calibration, config)
    save_model(model, tokenizer, workdir.model)
    summary = {"train_config": asdict(config), **asdict(history)}
    workdir.train_history.write_text(json.dumps(summary, indent=2))
    return summary


def evaluation_splits(splits: Splits, workdir: Workdir) -> tuple[Splits, Calibration, ExitRecords]:
    """What `evaluate` scores: the data set WORKDIR was calibrated on must be its calibration split as recorded
    (another split seed would score samples it trained on); another data set with the model's labels is scored on
    its test split against WORKDIR's calibration."""
    cal = Calibration.load(workdir.calibration)
    if splits.train.name == cal.model_id:
        return calibrated_splits(splits, workdir)
    return splits, cal, ExitRecords.load(workdir.exits("calibration"))


def calibrated_splits(splits: Splits, workdir: Workdir) -> tuple[Splits, Calibration, ExitRecords]:
    """`splits` as WORKDIR was calibrated on them (the calibration subset it recorded, if any), with its
    calibration and recorded calibration exits; refused when they are another data set's."""
    cal = Calibration.load(workdir.calibration)
    cal_exits = ExitRecords.load(workdir.exits("calibration"))
    splits = splits.with_calibration_subset(cal.calibration_samples, cal.calibration_seed)
    check_calibrated_on(splits, cal_exits, workdir)
    return splits, cal, cal_exits


def check_calibrated_on(splits: Splits, cal_exits: ExitRecords, workdir: Workdir) -> None:
    """The recorded calibration exits must be this data set's calibration split."""
    if len(cal_exits.labels) != len(splits.calibration) or not np.array_equal(cal_exits.labels,
                                                                              splits.calibration.labels):
        raise DimeeError(f"{workdir} was calibrated on another data set than {splits.train.name} "
                         f"({len(cal_exits.labels)} calibration samples recorded, {len(splits.calibration)} here): "
                         "calibrate it on this data set first, or pass the one it was calibrated on")


def record_split(splits: Splits, workdir: Workdir, split: str, dest: Path, raw: bool = False) -> ExitRecords:
    """Every exit of the full model on one split, saved to `dest` (an output: never the inputs it read)."""
    data = in_model_labels(load_spec(workdir.model).label_names, splits.get(split))
    model, tokenizer = load_model(workdir.model), load_tokenizer(workdir.model)
    probs, embeddings = record_exit_probabilities(model, tokenizer, data, desc=f"recording {split} exits")
    if raw:  # the `raw` routing embedding: mean of word-embedding rows only
        from dimee.offline.training import batch_tensors, batches
        rows = []
        for idx in batches(data, 128):
            inputs = batch_tensors(tokenizer, data, idx, model.spec.max_length)
            rows.append(model.routing_embedding(**inputs, raw=True).numpy())
        embeddings = np.concatenate(rows)
    tokens = token_counts(tokenizer, data.texts, data.text_pairs, model.spec.max_length)
    records = ExitRecords(probs, embeddings, np.asarray(data.labels), np.asarray(tokens))
    records.save(dest)
    return records


def run_calibrate(splits: Splits, workdir: Workdir, config: CalibrationConfig) -> Calibration:
    splits = splits.with_calibration_subset(config.calibration_samples, config.calibration_seed)
    exits = record_split(splits, workdir, "calibration", workdir.exits("calibration"), raw=config.embedding == "raw")
    cal = calibrate(exits, config)
    cal.save(workdir.calibration)
    return cal


def test_exits_path(out_dir: Path) -> Path:
    """Where `run_evaluate` keeps the test split's recorded exits: with its report, not in the work folder."""
    return Workdir(out_dir).exits("test")


def run_evaluate(splits: Splits, workdir: Workdir, out_dir: Path, seed: int = 0,
                 title: str | None = None) -> tuple[dict, ExitRecords]:
    """Every method on the test split; report and recorded test exits written under `out_dir`."""
    in_model_labels(load_spec(workdir.model).label_names, splits.test)  # refused before anything is written
    splits, cal, cal_exits = evaluation_splits(splits, workdir)
    test_exits = record_split(splits, workdir, "test", test_exits_path(out_dir), raw=cal.embedding == "raw")
    deployed = json.loads(workdir.policy.read_text()) if workdir.policy.exists() else None
    report = build_report(test_exits, cal_exits, cal, seed=seed, deployed=deployed)
    write_report(report, out_dir, title or f"dimee evaluation ({splits.test.name})")
    return report, test_exits


def splits_for(spec: DatasetSpec, data_dir: Path) -> Splits:
    return load_splits(spec, data_dir)
