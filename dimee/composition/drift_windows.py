"""A calibrated model streamed for real (the in-process pipeline) over a sequence of data sets whose
distribution shifts, with and without the live threshold controller, scored per window of samples:

- the accuracy drop against the full model, with its 95% paired-bootstrap interval (a sample the stream lost
  counts as wrong);
- the mean cost, audits included;
- the window's agreement floor (each sample on the cheapest tier whose answer equals the full model's) and the
  cost as a multiple of it.

The full model's answers and the floor come from the same model's recorded exits on the same samples.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dimee.composition.pipeline import PipelineOptions, PipelineRun, run_pipeline
from dimee.data.dataset import TextDataset
from dimee.data.labels import in_model_labels
from dimee.method.exits import ExitRecords
from dimee.model.artifacts import load_model, load_tokenizer
from dimee.model.spec import load_spec
from dimee.offline.evaluation.floors import agreement_floor, paired_bootstrap
from dimee.offline.training import record_exit_probabilities
from dimee.streaming.config import Settings
from dimee.streaming.deployment import Deployment

WINDOW = 500
RATE = 100.0  # samples per second: below what the pipeline serves on 2 cores (~200/s), as a live stream arrives


@dataclass(frozen=True)
class Segment:
    name: str
    data: TextDataset


def _stream(segments: list[Segment]) -> list[dict]:
    """The segments' samples in order, each id made unique by its segment."""
    records = []
    for segment in segments:
        for record in segment.data.records():
            records.append({**record, "id": f"{segment.name}:{record['id']}"[:128]})
    return records


def _exits(deployment: Deployment, segments: list[Segment]) -> ExitRecords:
    model, tokenizer = load_model(deployment.workdir.model), load_tokenizer(deployment.workdir.model)
    probs, embeddings, labels = [], [], []
    for segment in segments:
        p, e = record_exit_probabilities(model, tokenizer, segment.data, desc=f"recording {segment.name}")
        probs.append(p)
        embeddings.append(e)
        labels.append(np.asarray(segment.data.labels))
    return ExitRecords(np.concatenate(probs), np.concatenate(embeddings), np.concatenate(labels))


def _window_row(run: PipelineRun, ids: list[str], exits: ExitRecords, budget: float) -> dict:
    full = exits.probs[:, -1].argmax(-1) == exits.labels
    answered = [run.predictions.get(i) for i in ids]
    correct = np.array([p is not None and p.label_pred == label for p, label in zip(answered, exits.labels,
                                                                                  strict=True)])
    ((low, high),) = paired_bootstrap([correct], full.astype(np.float64))
    cost = sum(p.cost.total for p in answered if p is not None)
    cost += sum(run.audits[i].cost.total for i in ids if i in run.audits)
    drop = float(full.mean() - correct.mean())
    # the drop's interval is the accuracy difference's, mirrored; within the budget where it reaches the budget
    return {"drop": drop, "drop_interval": [0.0 - high, 0.0 - low], "within_budget": -high <= budget / 100,
            "cost": cost / len(ids), "audits": sum(i in run.audits for i in ids), "lost": answered.count(None)}


@dataclass(frozen=True)
class Pace:
    window: int = WINDOW  # samples scored together
    rate: float | None = RATE  # samples per second arriving (None: all at once)


def drift_windows(deployment: Deployment, segments: list[Segment], settings: Settings, out_dir: Path,
                  pace: Pace | None = None) -> dict:
    """Stream the segments with the controller off, then on; per window the drop, cost and floor (drift-windows.md
    and .json under `out_dir`). Samples arrive at `rate` per second: the router stamps the offset it reads when a
    sample arrives, so a stream produced all at once would be routed before the first audit came back."""
    pace = pace or Pace()
    window, rate = pace.window, pace.rate
    model_labels = load_spec(deployment.workdir.model).label_names  # labels mapped by name, refused if unknown
    segments = [Segment(s.name, in_model_labels(model_labels, s.data)) for s in segments]
    records, exits = _stream(segments), _exits(deployment, segments)
    calibration = deployment.calibration
    budget = calibration.config().max_drop
    runs, token = {}, uuid.uuid4().hex[:8]  # a broker and store of its own for every run
    for control in (False, True):
        name = "controller" if control else "fixed"
        embedded = f"memory://drift-{name}-{token}"
        run_settings = settings.model_copy(update={"control": control, "topic_prefix": f"drift-{name}",
                                                   "broker": embedded, "state": embedded})
        runs[name] = run_pipeline(records, deployment, run_settings, PipelineOptions(progress=True, rate=rate))
    boundaries = np.cumsum([0] + [len(s.data) for s in segments])
    rows = []
    for start in range(0, len(records), window):
        end = min(start + window, len(records))
        part = ExitRecords(exits.probs[start:end], exits.embeddings[start:end], exits.labels[start:end])
        floor = agreement_floor(part, calibration).mean_cost()
        names = [s.name for s, a, b in zip(segments, boundaries[:-1], boundaries[1:], strict=True)
                 if a < end and b > start]
        ids = [r["id"] for r in records[start:end]]
        row = {"window": len(rows) + 1, "samples": [start, end], "segments": names, "floor": floor}
        for name, run in runs.items():
            row[name] = _window_row(run, ids, part, budget)
            row[name]["floor_multiple"] = row[name]["cost"] / floor if floor else float("nan")
        rows.append(row)
    report = {"policy": deployment.policy.name, "budget_points": budget, "audit_rate": settings.audit_rate,
              "rate_per_s": rate,
              "window": window, "segments": [[s.name, len(s.data)] for s in segments], "windows": rows,
              "final_offset": runs["controller"].controls[-1][1].offset if runs["controller"].controls else 0.0}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "drift-windows.json").write_text(json.dumps(report, indent=2))
    (out_dir / "drift-windows.md").write_text(markdown(report))
    return report


def _cell(row: dict) -> str:
    low, high = row["drop_interval"]
    mark = "" if row["within_budget"] else " ✗"
    return (f"{100 * row['drop']:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]{mark} | {row['cost']:.3f} | "
            f"{row['floor_multiple']:.2f}")


def markdown(report: dict) -> str:
    lines = [f"# Drift, streamed: {report['policy']}, windows of {report['window']} samples", "",
             f"Budget {report['budget_points']:g} pt; audits {100 * report['audit_rate']:g}% of the answers below "
             f"the cloud (cost included); samples arrive at {report['rate_per_s'] or 'full speed'}/s. Segments in "
             "order: "
             + ", ".join(f"{name} ({n})" for name, n in report["segments"])
             + f". Final controller offset {report['final_offset']:.3f}.", "",
             "Drop: accuracy points below the full model on the window [95% paired bootstrap]; ✗: the interval "
             "lies wholly above the budget.", "",
             "| window | segments | floor cost | without controller: drop | cost | × floor | "
             "with controller: drop | cost | × floor |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in report["windows"]:
        lines.append(f"| {row['window']} | {', '.join(row['segments'])} | {row['floor']:.3f} | "
                     f"{_cell(row['fixed'])} | {_cell(row['controller'])} |")
    return "\n".join(lines) + "\n"
