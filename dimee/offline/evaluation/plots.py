"""PNG figures of the report: accuracy against cost, the cost sweeps, the device ablation, calibration."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt


def accuracy_vs_cost(methods: list[dict], path: Path, frontier: list[dict] | None = None,
                     default: str | None = None) -> None:
    """Every row as a point; names in a legend beside the plot (never on top of each other), the default
    policy a large star."""
    fig, ax = plt.subplots(figsize=(11, 6))
    colours, markers = plt.get_cmap("tab20"), "osD^vP<>Xhp"
    if frontier:
        ax.plot([r["cost"] for r in frontier], [100 * r["accuracy"] for r in frontier], "--", color="0.6",
                label="DIMEE-D over the α grid", zorder=1)
    for i, row in enumerate(methods):
        is_default = row["name"] == default
        ax.scatter(row["cost"], 100 * row["accuracy"], s=260 if is_default else 55, zorder=3 if is_default else 2,
                   marker="*" if is_default else markers[i % len(markers)], color=colours(i % 20),
                   edgecolors="black" if is_default else "none",
                   label=f"{row['name']} (default)" if is_default else row["name"])
    ax.set_xlabel("mean cost per sample (cloud-only = 1.0 by default)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy against cost on the test split")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _readable_range(values: list[float], span: float) -> tuple[float, float]:
    """Axis limits at least `span` wide: a 0.2-point change should look like one, not like a cliff."""
    low, high = min(values), max(values)
    middle, half = (low + high) / 2, max(span, high - low) / 2 * 1.15
    return middle - half, middle + half


def cost_sweeps(sweeps: dict[str, list[dict]], path: Path) -> None:
    labels = {"lambda_m": "λ_m (mobile cost per layer)", "lambda_e": "λ_e (edge cost per layer)",
              "o_c": "o_c (offload to cloud)"}
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5 * len(sweeps), 4))
    for ax, (name, rows) in zip(axes, sweeps.items(), strict=True):
        values, accuracy = [r["value"] for r in rows], [100 * r["accuracy"] for r in rows]
        first = ax.plot(values, accuracy, "o-", color="tab:blue", label="accuracy (%, left)")
        ax.set_ylim(*_readable_range(accuracy, span=5.0))
        ax.set_xlabel(labels.get(name, name))
        ax.set_ylabel("DIMEE-D accuracy (%)", color="tab:blue")
        twin = ax.twinx()
        second = twin.plot(values, [r["cost"] for r in rows], "s--", color="tab:red", label="mean cost (right)")
        twin.set_ylim(0, max(1.0, max(r["cost"] for r in rows) * 1.1))
        twin.set_ylabel("DIMEE-D mean cost", color="tab:red")
        ax.legend(first + second, [line.get_label() for line in first + second], fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
    fig.suptitle("Cost sweeps (α*, pools and centroids re-derived on calibration for every value)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def device_ablation(rows: list[dict], path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = [r["devices"] for r in rows]
    left.bar(names, [100 * r["accuracy"] for r in rows], color="tab:blue")
    lowest = min(100 * r["accuracy"] for r in rows)
    left.set_ylim(max(0.0, lowest - 5), 100)
    left.set_ylabel("accuracy (%)")
    right.bar(names, [r["cost"] for r in rows], color="tab:red")
    right.set_ylabel("mean cost")
    for ax in (left, right):
        ax.tick_params(axis="x", rotation=20)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Which devices help: DIMEE-D with each set of tiers")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def calibration_curves(curves: dict[str, list[float]], alpha: float, path: Path) -> None:
    """`curves`: the report's calibration section (grid, reward, accuracy, cost at every α)."""
    grid, reward, accuracy, cost = curves["grid"], curves["reward"], curves["accuracy"], curves["cost"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    lines = ax.plot(grid, [100 * a for a in accuracy], "s-", color="tab:blue", label="accuracy, true-pool routing (%)")
    ax.set_ylabel("accuracy (%)")
    twin = ax.twinx()
    lines += twin.plot(grid, reward, "o-", color="tab:green", label="mean reward (right)")
    lines += twin.plot(grid, cost, "^-", color="tab:red", label="mean cost, true-pool routing (right)")
    twin.set_ylabel("mean reward / mean cost per sample")
    lines.append(ax.axvline(alpha, color="k", linestyle=":", label=f"α* = {alpha:.3f}"))
    ax.set_xlabel("exit threshold α (confidence)")
    ax.set_title("Calibration split: what each α would give")
    ax.grid(alpha=0.3)
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def frontiers(curves: dict[str, list[dict]], path: Path, highlight: tuple[str, ...] = ()) -> None:
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    colours = plt.get_cmap("tab20")  # more policies than the default cycle has colours
    for i, (name, rows) in enumerate(sorted(curves.items())):
        style = "-" if name in highlight or name.startswith("Oracle") else "--"
        ax.plot([r["cost"] for r in rows], [100 * r["accuracy"] for r in rows], style, marker="o", markersize=3,
                label=name, linewidth=2 if name in highlight else 1, color=colours(i % 20))
    ax.set_xlabel("mean cost per sample")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy-cost frontier of every policy over the α grid (test split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def drift_segments(segments: dict[str, dict[str, dict]], path: Path) -> None:
    """Accuracy and cost per stream segment (domain) for each policy."""
    policies = sorted({p for seg in segments.values() for p in seg})
    names = list(segments)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(len(policies), 1)
    for i, policy in enumerate(policies):
        xs = [j + i * width for j in range(len(names))]
        left.bar(xs, [100 * segments[s][policy]["accuracy"] for s in names], width, label=policy)
        right.bar(xs, [segments[s][policy]["cost"] for s in names], width, label=policy)
    for ax, label in ((left, "accuracy (%)"), (right, "mean cost")):
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    left.set_ylim(40, 100)
    right.legend(fontsize=7)
    fig.suptitle("Drift: calibrated on one domain, streamed on the others")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
