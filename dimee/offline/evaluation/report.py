"""Run every method on the recorded test exits and write report.md, report.json and the plots."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from dimee.method.calibration import Calibration
from dimee.method.exits import ExitRecords
from dimee.method.routing_policy import POLICIES
from dimee.method.signals import SIGNALS, agreement_auroc
from dimee.method.tiers import POOLS, TIER_NAMES, TIERS
from dimee.offline.evaluation import baselines, floors, plots, sweeps
from dimee.offline.evaluation.policies import PolicyInputs, offline_policy


def method_rows(results: list[baselines.MethodResult], test: ExitRecords, cal: Calibration) -> list[dict]:
    """One row per result: accuracy, its difference to the full model with a 95% bootstrap interval, mean
    cost, Δcost against cloud-only, cost as a multiple of the agreement floor, tier shares."""
    base = cal.cost_model.cloud_only(test.probs.shape[1])
    full = test.probs[:, -1].argmax(-1) == test.labels
    floor = floors.agreement_floor(test, cal).mean_cost()
    intervals = floors.paired_bootstrap([r.pred == test.labels for r in results], full)
    return [
        {"name": r.name, "accuracy": r.accuracy(test.labels), "cost": r.mean_cost(),
         "delta_accuracy": r.accuracy(test.labels) - float(full.mean()), "delta_accuracy_ci": list(ci),
         "delta_cost": (r.mean_cost() - base) / base if base else float("nan"),
         "floor_multiple": r.mean_cost() / floor if floor else float("nan"), "tier_shares": r.tier_shares()}
        for r, ci in zip(results, intervals, strict=True)
    ]


def signal_scores(cal_exits: ExitRecords, cal: Calibration) -> dict:
    """How well each candidate confidence signal predicts, at every exit k < L, that exit k answers as the last
    layer does (AUROC; `dimee.method.signals`). On the calibration split only: the signal a cascade uses is a
    calibration choice, and choosing it on the test split would make the test split's numbers a fit. NaN (None in
    report.json) where every calibration sample agrees at that exit or none does."""
    rows = agreement_auroc(cal_exits.probs)
    for row in rows:
        row["auroc"] = {name: None if np.isnan(v) else v for name, v in row["auroc"].items()}
        row["tier_cap"] = next((tier.value for tier, cap in cal.plan if cap == row["layer"]), None)
    return {"split": "calibration", "samples": len(cal_exits.labels), "signals": list(SIGNALS), "rows": rows}


def build_report(test: ExitRecords, cal_exits: ExitRecords, cal: Calibration, seed: int = 0,
                 deployed: dict | None = None) -> dict:
    """`deployed`: the work folder's policy.json, if it has one: its policy gets a row of its own (on another
    data set than the calibration's too: the row a user of that deployment wants)."""
    results = baselines.all_methods(test, cal_exits, cal, seed) + floors.floors(test, cal)
    by_name = {r.name: r for r in results}
    pool_names = [POOLS[TIERS.index(tier)] for tier in cal.plan.tiers]
    rows = method_rows(results, test, cal)
    if deployed is not None and (row := _deployed_row(deployed, test, cal)) is not None:
        rows.insert(next(i for i, r in enumerate(rows) if r["name"].startswith("Floor")), row)
    return {
        "methods": rows,
        "alpha": cal.alpha,
        "objective": cal.objective,
        "calibration_pool_sizes": dict(zip(pool_names, cal.pool_sizes, strict=True)),
        "test_size": len(test.labels),
        "confusion": {name: {"rows_true_pool_cols_routed_pool": pool_names,
                             "matrix": baselines.confusion(by_name[name], test, cal)}
                      for name in ("DIMEE-F", "DIMEE-D", "Random-matched")},
        "sweeps": sweeps.cost_sweeps(test, cal_exits, cal),
        "device_ablation": sweeps.device_ablation(test, cal_exits, cal),
        "layer_splits": sweeps.layer_splits(test, cal_exits, cal),
        "alpha_frontier": sweeps.alpha_frontier(test, cal_exits, cal),
        "calibration": {"grid": cal.grid, "reward": cal.reward_curve, "accuracy": cal.accuracy_curve,
                        "cost": cal.cost_curve, "full_model_accuracy": cal.full_model_accuracy},
        "cost_model": cal.cost_model.model_dump(),
        "agreement_auroc": signal_scores(cal_exits, cal),
    }


def _deployed_row(deployed: dict, test: ExitRecords, cal: Calibration) -> dict | None:
    """The deployed default served on the test split by the definition the workers serve, with the loss bound the
    calibration shows of it. None for a learned-router policy: its features need the texts, which recorded exits lack
    (`dimee study` scores it)."""
    policy = POLICIES[deployed["name"]]
    if policy.router == "learned":
        return None
    result = replace(offline_policy(policy)(PolicyInputs(test), cal), name=f"{policy.name} (deployed default)")
    (row,) = method_rows([result], test, cal)
    if (shown := policy.guarantee(cal)) is not None:  # this calibration's, which the served thresholds come from
        row["loss_bound"], row["budget_shown"] = shown.loss_bound, shown.certified
    return row


def _shares(shares: dict[str, float]) -> str:
    return " / ".join(f"{100 * shares[t]:.0f}" for t in TIER_NAMES)


def _delta(row: dict) -> str:
    if "delta_accuracy_ci" not in row:
        return "–"
    low, high = row["delta_accuracy_ci"]
    return f"{100 * row['delta_accuracy']:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"


def methods_table(rows: list[dict]) -> str:
    """Δacc: accuracy minus the full model's (cloud-only), in points, with its 95% paired-bootstrap interval;
    × floor: mean cost over the agreement floor's; loss bound: where a routing study measured it, the exact upper
    bound on the policy's loss against the full model on the calibration split, ✓ where it is a certificate."""
    bounded = any("loss_bound" in row for row in rows)
    lines = ["| method | accuracy (%) | Δacc vs full model, pt [95% CI] | mean cost | Δcost vs cloud | × floor | "
             "tier shares m / e / c (%) |" + (" loss bound, pt |" if bounded else ""),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if bounded else "")]
    for row in rows:
        floor = f"{row['floor_multiple']:.2f}" if "floor_multiple" in row else "–"
        shown = " ✓" if row.get("budget_shown") else ""
        bound = f" {100 * row['loss_bound']:.2f}{shown} |" if "loss_bound" in row else " – |"
        lines.append(f"| {row['name']} | {100 * row['accuracy']:.2f} | {_delta(row)} | {row['cost']:.3f} | "
                     f"{100 * row['delta_cost']:+.1f}% | {floor} | {_shares(row['tier_shares'])} |"
                     + (bound if bounded else ""))
    return "\n".join(lines)


def _tuned_cells(row: dict) -> str:
    """A tuned cascade starts on every tier but the last."""
    tuned = row.get("tuned_cascades", {})
    return " | ".join(f"{100 * tuned[t]['accuracy']:.2f} / {tuned[t]['cost']:.3f}" if t in tuned else "–"
                      for t in TIER_NAMES[:-1])


def _confusion_md(name: str, block: dict) -> str:
    names = block["rows_true_pool_cols_routed_pool"]
    lines = [f"**{name}** (rows: true pool at α*, columns: routed pool)", "",
             "| true \\ routed | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for pool, row in zip(names, block["matrix"], strict=True):
        lines.append(f"| {pool} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def signals_table(block: dict) -> str:
    """The agreement AUROC per exit and signal: 1 means the signal ranks every sample whose exit answers as the
    last layer above every one that does not, 0.5 no better than chance; – where it is undefined."""
    names = block["signals"]
    lines = ["| exit | tier cap | agrees with last layer (%) | differs (samples) | " + " | ".join(names)
             + " | best |", "| ---: | --- | ---: | ---: |" + " ---: |" * len(names) + " --- |"]
    for row in block["rows"]:
        cells = " | ".join("–" if row["auroc"][n] is None else f"{row['auroc'][n]:.3f}" for n in names)
        lines.append(f"| {row['layer']} | {row['tier_cap'] or ''} | {100 * row['agree']:.1f} | {row['differ']} | "
                     f"{cells} | {row['best'] or '–'} |")
    return "\n".join(lines)


def render_markdown(report: dict, title: str) -> str:
    rows = {r["name"]: r for r in report["methods"]}
    parts = [
        f"# {title}", "",
        f"α* = {report['alpha']:.4f} (objective: {report['objective']}); calibration pools "
        + ", ".join(f"{k} {v}" for k, v in report["calibration_pool_sizes"].items())
        + f"; test samples: {report['test_size']}.", "",
        methods_table(report["methods"]), "",
    ]
    dimee_rows = [rows[n] for n in ("DIMEE-F", "DIMEE-D") if n in rows]
    if dimee_rows and "Random-matched" in rows and "Oracle" in rows:
        rm, oracle = rows["Random-matched"], rows["Oracle"]
        for row in dimee_rows:
            parts.append(
                f"- {row['name']}: {100 * (row['accuracy'] - rm['accuracy']):+.2f} pt accuracy and "
                f"{row['cost'] - rm['cost']:+.3f} cost against Random-matched; "
                f"{100 * (row['accuracy'] - oracle['accuracy']):+.2f} pt and {row['cost'] - oracle['cost']:+.3f} "
                "cost against the Oracle."
            )
        parts.append("")
    parts += ["## Routed pool against true pool", ""]
    for name, block in report["confusion"].items():
        parts += [_confusion_md(name, block), ""]
    parts += ["## DIMEE-D and the tuned cascades under other costs (re-calibrated at every point)", "",
              "| parameter | value | α* | DIMEE-D accuracy (%) | DIMEE-D cost | tier shares m / e / c (%) | "
              "tuned cascade from mobile: acc (%) / cost | from edge: acc (%) / cost |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, sweep in report["sweeps"].items():
        for r in sweep:
            parts.append(f"| {name} | {r['value']:g} | {r['alpha']:.3f} | {100 * r['accuracy']:.2f} | "
                         f"{r['cost']:.3f} | {_shares(r['tier_shares'])} | {_tuned_cells(r)} |")
    parts += ["", "## Layer split (m, n) between mobile, edge and cloud (re-calibrated)", "",
              "| m | n | α* | DIMEE-D accuracy (%) | DIMEE-D cost | tuned cascade from mobile: acc (%) / cost | "
              "from edge: acc (%) / cost |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report.get("layer_splits", []):
        parts.append(f"| {r['m']} | {r['n']} | {r['alpha']:.3f} | {100 * r['accuracy']:.2f} | {r['cost']:.3f} | "
                     f"{_tuned_cells(r)} |")
    parts += ["", "## Device ablation (DIMEE-D)", "", "| devices | accuracy (%) | mean cost |", "| --- | ---: | ---: |"]
    for r in report["device_ablation"]:
        parts.append(f"| {r['devices']} | {100 * r['accuracy']:.2f} | {r['cost']:.3f} |")
    if "agreement_auroc" in report:
        block = report["agreement_auroc"]
        parts += ["", f"## Agreement AUROC per exit and signal (calibration split, {block['samples']} samples)", "",
                  "How well each confidence signal separates the samples whose exit answers as the last layer from "
                  "those it does not (the cascades use max-softmax today; see docs/policies.md).", "",
                  signals_table(block)]
    parts += ["", "Plots: `accuracy_vs_cost.png`, `cost_sweeps.png`, `device_ablation.png`, `calibration.png`.", ""]
    return "\n".join(parts)


def write_report(report: dict, out_dir: Path, title: str = "dimee evaluation") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=_jsonable))
    (out_dir / "report.md").write_text(render_markdown(report, title))
    plots.accuracy_vs_cost(report["methods"], out_dir / "accuracy_vs_cost.png", report.get("alpha_frontier"))
    plots.cost_sweeps(report["sweeps"], out_dir / "cost_sweeps.png")
    plots.device_ablation(report["device_ablation"], out_dir / "device_ablation.png")
    plots.calibration_curves(report["calibration"], report["alpha"], out_dir / "calibration.png")


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
