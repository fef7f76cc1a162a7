"""Longer jobs built from the offline pieces: the routing study, several training seeds, the drift run."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dimee.common.errors import DataError
from dimee.common.workdir import Workdir
from dimee.data import DatasetSpec, Splits, fetch
from dimee.data.dataset import TextDataset
from dimee.data.registry import load_dataset
from dimee.method import arithmetic, learned_router
from dimee.method.calibration import Calibration, CalibrationConfig
from dimee.method.exits import ExitRecords
from dimee.method.routing_policy import POLICIES
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.offline.evaluation import plots
from dimee.offline.evaluation.baselines import all_methods
from dimee.offline.evaluation.floors import floors
from dimee.offline.evaluation.policies import PolicyInputs, choose_default, offline_policy, policy_table
from dimee.offline.evaluation.routing_study import StudyOptions, extract_features, run_study
from dimee.offline.evaluation.study_report import aggregate, aggregate_markdown, tasks_markdown, write_study
from dimee.offline.training import TrainConfig, record_exit_probabilities
from dimee.offline.workflow import run_calibrate, run_evaluate, run_train, splits_for, test_exits_path


def prepare(splits: Splits, workdir: Workdir, out_dir: Path, training: TrainConfig,
            calibration: CalibrationConfig) -> ExitRecords:
    """Train (unless WORKDIR has a model), calibrate, evaluate; the test split's recorded exits."""
    if not workdir.has_model():
        run_train(splits, workdir, training)
    run_calibrate(splits, workdir, calibration)
    return run_evaluate(splits, workdir, out_dir, seed=training.seed)[1]


def study(splits: Splits, workdir: Workdir, out_dir: Path, options: StudyOptions) -> dict:
    """The routing study on a calibrated WORKDIR; the test split is recorded (into OUT) unless OUT already
    holds its recorded exits from `dimee evaluate --out OUT`."""
    path = test_exits_path(out_dir)
    test = ExitRecords.load(path) if path.exists() else run_evaluate(splits, workdir, out_dir, seed=options.seed)[1]
    result = run_study(splits, workdir, test, options)
    write_study(result, out_dir, f"Routing study: {splits.train.name}")
    return result


@dataclass(frozen=True)
class SeedsPlan:
    """Several training seeds of one data set: each is trained, calibrated and studied on its own."""

    seeds: list[int]
    epochs: int = 3
    max_drop: float = 0.5
    max_train_samples: int | None = None  # train on a random subset (the same size for every data set)


def multi_seed(splits: Splits, root: Path, out_dir: Path, plan: SeedsPlan) -> dict:
    seeds, epochs, name = plan.seeds, plan.epochs, splits.train.name
    studies = []
    for seed in seeds:
        workdir, seed_out = Workdir(root / f"seed-{seed}"), out_dir / f"seed-{seed}"
        training = TrainConfig(epochs=epochs, seed=seed, max_train_samples=plan.max_train_samples)
        test = prepare(splits, workdir, seed_out, training, CalibrationConfig(max_drop=plan.max_drop, model_id=name))
        result = run_study(splits, workdir, test, StudyOptions(seed=seed, frontier=seed == seeds[0]))
        write_study(result, seed_out, f"Routing study: {name}, training seed {seed}")
        studies.append(result)
    rows = aggregate(studies)
    defaults = [s["default_policy"] for s in studies]
    summary = {"seeds": seeds, "rows": rows, "default_policies": defaults}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "seeds.json").write_text(json.dumps(summary, indent=2))
    (out_dir / "seeds.md").write_text(aggregate_markdown(rows, seeds, defaults))
    return summary


def multi_task(specs: list[DatasetSpec], data_dir: Path, root: Path, out_dir: Path, plan: SeedsPlan) -> dict:
    """The paper's Table I across data sets: each trained, calibrated and studied per seed; one table of
    accuracy (mean ± sd over seeds) and Δcost against cloud-only per method and data set."""
    tables = {}
    for spec in specs:
        slug = spec.name.replace(":", "-").replace(",", "+").replace("/", "_")
        summary = multi_seed(splits_for(spec, data_dir), root / slug, out_dir / slug, plan)
        tables[spec.name] = {"rows": summary["rows"], "default_policies": summary["default_policies"]}
    result = {"seeds": plan.seeds, "epochs": plan.epochs, "max_train_samples": plan.max_train_samples,
              "datasets": tables}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tasks.json").write_text(json.dumps(result, indent=2))
    (out_dir / "tasks.md").write_text(tasks_markdown(result))
    return result


# Drawn in drift.png (the table has every row): the paper's, the adaptive ones, the chance and floor references.
DRIFT_POLICIES = ("Cloud-only", "DIMEE-F", "DIMEE-D", "DIMEE-D+esc", "Feedback-adaptive", "Feedback-adaptive+esc",
                  "Learned+esc", "Random-matched", "Oracle", "Floor: agreement")


def shown_default(cal_exits: ExitRecords, cal: Calibration) -> str:
    """The default `dimee study` would deploy: the cheapest policy shown within the budget on calibration."""
    candidates = {name: offline_policy(p)(PolicyInputs(cal_exits), cal) for name, p in POLICIES.items()
                  if p.thresholds == "tuned" or p.answers_as_full_model}
    return choose_default(candidates, cal).name


def uci_domains(data_dir: Path, domains: list[str], seed: int = 0) -> list[tuple[str, TextDataset]]:
    """Each uci-sentences domain whole (all three of its splits), in the order given."""
    others = splits_for(DatasetSpec(name="uci-sentences:" + ",".join(domains), seed=seed), data_dir)
    out = []
    for domain in domains:
        texts, labels = [], []
        for part in (others.train, others.calibration, others.test):
            for text, label, dom in zip(part.texts, part.labels, part.domains or [], strict=True):
                if dom == domain:
                    texts.append(text)
                    labels.append(label)
        out.append((domain, TextDataset(domain, texts, labels, others.train.label_names)))
    return out


def stream_segments(data_dir: Path, names: list[str]) -> list[tuple[str, TextDataset]]:
    """What `dimee drift --calibrated` streams after the test split, in the order given: a uci-sentences domain
    whole, or any other data set `--dataset` names (a .csv/.tsv/.jsonl file, a packaged name), all its rows."""
    domains = [name for name in names if name in fetch.UCI_DOMAINS]
    whole = dict(uci_domains(data_dir, domains)) if domains else {}
    out = []
    for name in names:
        if name in whole:
            out.append((name, whole[name]))
            continue
        loaded = load_dataset(DatasetSpec(name=name), data_dir)
        out.append((name, _joined(name, loaded) if isinstance(loaded, tuple) else replace(loaded, name=name)))
    return out


def _joined(name: str, parts: tuple[TextDataset, ...]) -> TextDataset:
    if len({tuple(part.label_names) for part in parts}) != 1:
        raise DataError(f"{name}: its splits name their labels differently")
    pairs = None if any(p.text_pairs is None for p in parts) else [x for p in parts for x in p.text_pairs or []]
    return TextDataset(name, [t for p in parts for t in p.texts], [y for p in parts for y in p.labels],
                       parts[0].label_names, pairs)


def drift(data_dir: Path, workdir: Workdir, out_dir: Path, domains: tuple[str, list[str]],
          training: TrainConfig) -> dict:
    """Train and calibrate on one uci-sentences domain (`domains[0]`); stream its test split, then the other
    domains (`domains[1]`) whole."""
    (calibrate_on, stream), seed, epochs = domains, training.seed, training.epochs
    spec = DatasetSpec(name=f"uci-sentences:{calibrate_on}", seed=seed)
    splits = splits_for(spec, data_dir)
    prepare(splits, workdir, out_dir, TrainConfig(epochs=epochs, seed=seed),
            CalibrationConfig(model_id=f"uci-{calibrate_on}"))
    cal = Calibration.load(workdir.calibration)
    cal_exits = ExitRecords.load(workdir.exits("calibration"))
    segments_data = [("in-domain " + calibrate_on, splits.test), *uci_domains(data_dir, stream, seed)]
    model, tokenizer = load_model(workdir.model), load_tokenizer(workdir.model)
    extractor, f_cal, f_in_domain = extract_features(splits, workdir)
    stream_probs, stream_emb, stream_labels, bounds = [], [], [], [0]
    for _, data in segments_data:
        probs, emb = record_exit_probabilities(model, tokenizer, data, desc=f"recording {data.name}")
        stream_probs.append(probs)
        stream_emb.append(emb)
        stream_labels.append(np.asarray(data.labels))
        bounds.append(bounds[-1] + len(data))
    records = ExitRecords(np.concatenate(stream_probs), np.concatenate(stream_emb), np.concatenate(stream_labels))
    # the first segment is the calibration domain's test split, whose features we already have
    features = np.vstack([f_in_domain, *(extractor.extract(d.texts) for _, d in segments_data[1:])])
    pools_cal = arithmetic.true_pools(cal_exits.probs, cal.alpha, cal.plan)
    training = learned_router.TrainingSet(f_cal, extractor.names, pools_cal, cal_exits.probs)
    router, _ = learned_router.fit(training, cal, "continue", seed)
    results = {r.name: r for r in all_methods(records, cal_exits, cal, seed)}
    results |= {name: fn(PolicyInputs(records, features), cal) for name, fn in policy_table(router).items()}
    results |= {r.name: r for r in floors(records, cal)}
    default = shown_default(cal_exits, cal)
    full = records.probs[:, -1].argmax(-1) == records.labels
    segments: dict[str, dict[str, dict]] = {}
    for (name, _), start, end in zip(segments_data, bounds[:-1], bounds[1:], strict=True):
        segments[name] = {}
        for policy, r in results.items():
            accuracy = float((r.pred[start:end] == records.labels[start:end]).mean())
            segments[name][policy] = {"accuracy": accuracy, "drop": float(full[start:end].mean()) - accuracy,
                                      "cost": float(r.cost[start:end].mean()), "samples": end - start}
    report = {"calibrated_on": calibrate_on, "stream": [n for n, _ in segments_data], "alpha": cal.alpha,
              "pool_sizes": cal.pool_sizes, "default_policy": default, "warnings": cal.warnings,
              "segments": segments}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "drift.json").write_text(json.dumps(report, indent=2))
    lines = [f"# Drift: calibrated on {calibrate_on}, streamed {' → '.join(report['stream'])}", "",
             f"α* = {cal.alpha:.4f}, calibration pools {cal.pool_sizes}. Default (shown within the budget on "
             f"calibration): **{default}**.", *(f"- warning: {w}" for w in cal.warnings), "",
             "Each cell: accuracy % / drop against the full model, pt / mean cost.", "",
             "| policy | " + " | ".join(segments) + " |", "| --- |" + " ---: |" * len(segments)]
    for policy in results:
        cells = [f"{100 * c['accuracy']:.1f} / {100 * c['drop']:+.1f} / {c['cost']:.3f}"
                 for c in (segments[s][policy] for s in segments)]
        lines.append(f"| {policy}{' (default)' if policy == default else ''} | " + " | ".join(cells) + " |")
    (out_dir / "drift.md").write_text("\n".join(lines) + "\n")
    drawn = [*DRIFT_POLICIES, default]
    plots.drift_segments({s: {p: row for p, row in rows.items() if p in drawn} for s, rows in segments.items()},
                         out_dir / "drift.png")
    return report
