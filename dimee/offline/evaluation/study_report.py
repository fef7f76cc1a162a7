"""report.md / report.json for the routing study, the multi-seed experiment and the drift run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dimee.method.certification import Guarantee
from dimee.method.routing_policy import POLICIES
from dimee.offline.evaluation import plots
from dimee.offline.evaluation.report import methods_table

HEADLINE = ("Cloud-only", "Mobile-only", "Edge-only", "Early-Exit", "Random-matched", "DIMEE-F", "DIMEE-D", "Cascade",
            "Edge+escalation", "Tuned-cascade", "Tuned-edge-cascade", "DIMEE-F+esc", "DIMEE-D+esc", "Learned",
            "Learned+esc", "Feedback-adaptive", "Feedback-adaptive+esc", "Oracle", "Oracle+esc", "Floor: agreement",
            "Floor: agreement, any layer", "Floor: correct, any layer")


def study_markdown(study: dict, title: str) -> str:
    parts = [f"# {title}", "", f"α* = {study['alpha']:.4f}. Default policy: **{study['default_policy']}** "
             f"({study['default_rule']}).", "", *guarantee_lines(study), "## Test split", "",
             methods_table(study["methods"]), "",
             "## Calibration split (selection; the learned router scored out-of-fold)", "",
             methods_table(study["calibration_rows"]), "", "## What the router-side features predict", "",
             "ROC-AUC for 'hard' (pool = cloud at α*) on the calibration split:", "",
             "| feature | ROC-AUC |", "| --- | ---: |"]
    for name, auc in study["hard_auc_calibration"].items():
        parts.append(f"| {name} | {auc:.3f} |")
    learned = study["learned_router"]
    parts += ["", f"Learned router: C = {learned['C']}, cross-validated log loss "
              + ", ".join(f"C={c}: {v:.4f}" for c, v in learned["cv_log_loss"].items()),
              f"; routed-vs-true pool (Learned+esc, test): {learned['confusion']}.", "",
              f"Escalation with `continue` ships the hidden state as fp16: mean "
              f"{study['continue_hidden_bytes_fp16']['mean'] / 1024:.1f} KiB per hop "
              f"(p99 {study['continue_hidden_bytes_fp16']['p99'] / 1024:.1f} KiB).", "",
              "Share of samples that escalated at least once: "
              + ", ".join(f"{k} {100 * v:.1f}%" for k, v in study["escalated_share"].items() if v > 0) + ".", ""]
    return "\n".join(parts)


def guarantee_lines(study: dict) -> list[str]:
    """What the calibration split shows of the default and of the tuned cascades, each beside what it costs on
    the test split and that cost as a multiple of the agreement floor: the price of the promise."""
    rows = {row["name"]: row for row in study["methods"]}

    def on_test(name: str) -> str:
        row = rows.get(name)
        if row is None:
            return ""
        return (f"; on test: cost {row['cost']:.3f}, {row['floor_multiple']:.2f}× the agreement floor, "
                f"{100 * row['delta_accuracy']:+.2f} pt against the full model")

    lines = []
    if study.get("default_guarantee"):
        shown = Guarantee.model_validate(study["default_guarantee"]).describe()
        lines.append(f"- Default: {shown}{on_test(study['default_policy'])}.")
    for start, shown in study.get("cascade_guarantees", {}).items():
        described = Guarantee.model_validate(shown).describe()
        lines.append(f"- Tuned cascade from the {start}: {described}{on_test(_tuned_cascade(start))}.")
    return [*lines, ""] if lines else []


def _tuned_cascade(start: str) -> str:
    """The name of the tuned policy that starts every sample on tier `start`."""
    return next((name for name, p in POLICIES.items() if p.thresholds == "tuned" and p.router == start), "")


def write_study(study: dict, out_dir: Path, title: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "routing.json").write_text(json.dumps(study, indent=2))
    (out_dir / "routing.md").write_text(study_markdown(study, title))
    plots.accuracy_vs_cost(study["methods"], out_dir / "accuracy_vs_cost.png", default=study["default_policy"])
    if "frontier" in study:
        plots.frontiers(study["frontier"], out_dir / "frontiers.png",
                        highlight=("DIMEE-D", "Learned+esc", study["default_policy"]))


def aggregate(studies: list[dict]) -> list[dict]:
    """mean ± sd over seeds of every headline row present in all studies."""
    rows = []
    for name in HEADLINE:
        found = [next((r for r in s["methods"] if r["name"] == name), None) for s in studies]
        if any(r is None for r in found):
            continue
        acc = np.array([r["accuracy"] for r in found])
        cost = np.array([r["cost"] for r in found])
        rows.append({"name": name, "accuracy_mean": float(acc.mean()), "accuracy_sd": float(acc.std(ddof=1))
                     if len(acc) > 1 else 0.0, "cost_mean": float(cost.mean()),
                     "cost_sd": float(cost.std(ddof=1)) if len(cost) > 1 else 0.0})
    return rows


def aggregate_markdown(rows: list[dict], seeds: list[int], defaults: list[str]) -> str:
    lines = [f"# Routing policies on rt-sentences over training seeds {seeds}", "",
             f"Default policy chosen on calibration per seed: {', '.join(defaults)}.", "",
             "| policy | accuracy (%) mean ± sd | mean cost ± sd |", "| --- | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['name']} | {100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_sd']:.2f} | "
                     f"{r['cost_mean']:.3f} ± {r['cost_sd']:.3f} |")
    return "\n".join(lines) + "\n"


def tasks_markdown(result: dict) -> str:
    """Table I of the paper across data sets: accuracy (%) mean ± sd over seeds, and Δcost against
    cloud-only (%), per method."""
    names = list(result["datasets"])
    lines = [f"# Routing policies across data sets (training seeds {result['seeds']}, {result['epochs']} epochs"
             + (f", {result['max_train_samples']} training samples" if result["max_train_samples"] else "") + ")",
             "", "Each cell: accuracy % (mean ± sd over seeds) / Δcost vs cloud-only.", "",
             "| method | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    by_task = {n: {r["name"]: r for r in result["datasets"][n]["rows"]} for n in names}
    for method in HEADLINE:
        cells = []
        for n in names:
            row, cloud = by_task[n].get(method), by_task[n].get("Cloud-only")
            if row is None or cloud is None:
                cells.append("–")
                continue
            delta = 100 * (row["cost_mean"] - cloud["cost_mean"]) / cloud["cost_mean"]
            cells.append(f"{100 * row['accuracy_mean']:.1f} ± {100 * row['accuracy_sd']:.1f} / {delta:+.0f}%")
        if any(c != "–" for c in cells):
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Default policy chosen on calibration, per seed: "
              + "; ".join(f"{n}: {', '.join(result['datasets'][n]['default_policies'])}" for n in names) + "."]
    return "\n".join(lines) + "\n"
