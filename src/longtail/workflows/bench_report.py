"""The results of a `longtail bench` suite: mean +- std over seeds of overall / many / medium / few
test accuracy per (imbalance factor, method), as results.md, results.csv and results.json, and two
plots per imbalance factor (grouped bars per method; per-class accuracy against training count)."""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from pathlib import Path

from ..evaluation import tau_grid_edge_note
from .suite import Run, Suite

# (metrics.json test key, column title); "overall" is the mean per-class accuracy (= top-1 on a
# balanced test set), the number the literature reports
REPORTED_METRICS = (("mean_class", "overall"), ("many", "many"), ("medium", "medium"), ("few", "few"), ("top1", "top-1"),
           ("ece", "ECE"))
ACCURACY_METRICS = REPORTED_METRICS[:4]
TABLE_METRICS = ACCURACY_METRICS + (REPORTED_METRICS[5],)  # + the expected calibration error (lower is better)
LOWER_IS_BETTER = ("ECE",)


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(suite: Suite, runs: list[Run]) -> list[dict]:
    """One row per (imbalance factor, method): seeds finished, mean / std (sample std, in %) of each
    metric, mean per-class accuracy, and the training counts."""
    rows = []
    for factor in suite.imbalance_factors:
        for m in suite.methods:
            done = [r for r in runs if r.imbalance_factor == factor and r.method.name == m.name and r.status == "finished"]
            results = [json.loads((r.run_dir / "metrics.json").read_text()) for r in done]
            row = {"imbalance_factor": factor, "method": m.name, "label": m.label, "seeds": len(results),
                   "seed_list": [r.seed for r in done]}
            for key, title in REPORTED_METRICS:
                mean, std = _mean_std([100 * res["test"].get(key, math.nan) for res in results])  # runs before ECE: -
                row[title] = {"mean": mean, "std": std}
            if results:
                per_class = [res["test"]["per_class"] for res in results]
                row["per_class"] = [_mean_std([p[c] for p in per_class])[0] for c in range(len(per_class[0]))]
                row["class_counts"] = results[0]["class_counts"]
                row["group_sizes"] = results[0]["test"].get("group_sizes")
                posthoc = [res["posthoc"] for res in results if "posthoc" in res]
                if posthoc:
                    row["tau"] = [p["tau"] for p in posthoc]
                    # the grid is the keys of the validation scores (also in records made before the edge note)
                    grids = [[float(t) for t in p["val_mean_class"]] for p in posthoc]
                    row["tau_fixed"] = all(len(g) == 1 for g in grids)
                    row["tau_on_grid_edge"] = [tau_grid_edge_note(p["tau"], g) is not None for p, g in zip(posthoc, grids)]
            rows.append(row)
    return rows


def _cell(v: dict, best: bool, seeds: int) -> str:
    if not math.isfinite(v["mean"]):
        return "-"
    text = f"{v['mean']:.2f} ± {v['std']:.2f}" if seeds > 1 else f"{v['mean']:.2f}"  # no spread from one seed
    return f"**{text}**" if best else text


def markdown(suite: Suite, rows: list[dict], finished: int, total: int) -> str:
    lines = [f"# {suite.title}", "",
             f"Test accuracy (%), mean ± sample std over seeds (the mean alone for one seed); ECE: expected calibration "
             f"error (%, 15 bins, lower is better; - for runs made before longtail measured it); "
             f"overall = mean per-class accuracy (the test set is "
             f"balanced, so it equals top-1). Best mean per column in bold. {finished}/{total} runs finished; "
             f"written {time.strftime('%Y-%m-%d %H:%M')} by `longtail bench {suite.path}`.", ""]
    for factor in suite.imbalance_factors:
        part = [r for r in rows if r["imbalance_factor"] == factor]
        sizes = next((r["group_sizes"] for r in part if r.get("group_sizes")), None)
        counts = next((r["class_counts"] for r in part if r.get("class_counts")), None)
        about = ""
        if counts:
            about = f" ({sum(counts):,} training images"
            about += f"; many / medium / few: {sizes['many']} / {sizes['medium']} / {sizes['few']} classes)" if sizes else ")"
        lines += [f"## Imbalance factor {factor:g}{about}", "",
                  "| method | " + " | ".join(t for _, t in TABLE_METRICS) + " | seeds |",
                  "|---|" + "---|" * (len(TABLE_METRICS) + 1)]
        best = {t: (min if t in LOWER_IS_BETTER else max)((r[t]["mean"] for r in part if math.isfinite(r[t]["mean"])),
                                                         default=math.nan)
                for _, t in TABLE_METRICS}
        for r in part:
            cells = [_cell(r[t], r[t]["mean"] == best[t], r["seeds"]) for _, t in TABLE_METRICS]
            lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {r['seeds']} |")
        lines.append("")
        taus = [_tau_text(r) for r in part if r.get("tau")]
        if taus:
            lines += ["tau of the post-hoc methods (per seed): " + "; ".join(taus) + ".", ""]
    return "\n".join(lines)


def _tau_text(row: dict) -> str:
    values = ", ".join(f"{t:g}" for t in row["tau"])
    if row["tau_fixed"]:
        return f"{row['label']} {values} (fixed)"
    edges = sum(row["tau_on_grid_edge"])
    edge = f", {edges} of {len(row['tau'])} on the edge of the grid: the validation optimum may lie outside it" if edges else ""
    return f"{row['label']} {values} (chosen on validation{edge})"


def write_csv(rows: list[dict], path: Path) -> None:
    header = ["imbalance_factor", "method", "label", "seeds"] + [f"{t}_{s}" for _, t in REPORTED_METRICS for s in ("mean", "std")]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for r in rows:
            writer.writerow([f"{r['imbalance_factor']:g}", r["method"], r["label"], r["seeds"]] +
                            [f"{r[t][s]:.4f}" if math.isfinite(r[t][s]) else ""
                             for _, t in REPORTED_METRICS for s in ("mean", "std")])


def _nan_to_none(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def write_report(suite: Suite, runs: list[Run], plots: bool = True) -> dict:
    """Write results.{md,csv,json} (and the plots) from the finished runs; return the JSON dict."""
    out = suite.output_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = summarise(suite, runs)
    finished = sum(r.status == "finished" for r in runs)
    report = {"suite": suite.name, "title": suite.title, "suite_file": str(suite.path),
              "written_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs_finished": finished, "runs_total": len(runs),
              "complete": finished == len(runs), "summary": rows,
              "runs": [{"imbalance_factor": r.imbalance_factor, "seed": r.seed, "method": r.method.name,
                        "status": r.status, "run_dir": str(r.run_dir), "error": r.error} for r in runs]}
    _atomic_write(out / "results.json", json.dumps(_nan_to_none(report), indent=2))
    _atomic_write(out / "results.md", markdown(suite, rows, finished, len(runs)))
    write_csv(rows, out / "results.csv")
    if plots:
        for factor in suite.imbalance_factors:
            part = [r for r in rows if r["imbalance_factor"] == factor and r["seeds"]]
            if part:
                plot_bars(part, out / f"bars_if{factor:g}.png", f"{suite.title}, IF {factor:g}")
                plot_per_class(part, out / f"per_class_if{factor:g}.png", f"{suite.title}, IF {factor:g}")
    return report


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def plot_bars(rows: list[dict], path: Path, title: str) -> Path:
    """Grouped bars: one group per method, one bar per metric (overall / many / medium / few), with
    the std over seeds as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / len(ACCURACY_METRICS)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.8 * len(rows) + 2), 4.2))
    for i, (_, title_m) in enumerate(ACCURACY_METRICS):
        xs = [j + (i - (len(ACCURACY_METRICS) - 1) / 2) * width for j in range(len(rows))]
        ax.bar(xs, [r[title_m]["mean"] for r in rows], width, yerr=[r[title_m]["std"] for r in rows], capsize=2,
               label=title_m)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["label"] for r in rows], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncol=len(ACCURACY_METRICS), fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_per_class(rows: list[dict], path: Path, title: str, many: int = 100, few: int = 20) -> Path:
    """Heatmap of per-class test accuracy (mean over seeds): one row per method, one column per class,
    classes ordered from the most to the fewest training images, the many / medium / few boundaries
    drawn; stays readable with 16 methods where overlapping lines do not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = rows[0]["class_counts"]
    order = sorted(range(len(counts)), key=lambda c: -counts[c])
    grid = np.array([[100 * r["per_class"][c] for c in order] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(max(6.0, 2.5 + 0.45 * len(order)), 1.2 + 0.32 * len(rows)))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i in range(len(rows)):
        if len(order) <= 30:
            for j in range(len(order)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if grid[i, j] < 60 else "black")
    sorted_counts = [counts[c] for c in order]
    for boundary in (many, few - 0.5):  # first column at or below the boundary
        k = next((j for j, n in enumerate(sorted_counts) if n <= boundary), None)
        if k:
            ax.axvline(k - 0.5, color="white", linewidth=2)
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=7)
    if len(order) <= 30:
        ax.set_xticks(range(len(order)), [str(n) for n in sorted_counts], rotation=90, fontsize=7)
    ax.set_xlabel(f"classes by training images (many > {many} | medium | few < {few}, white lines)")
    ax.set_title(f"{title}\nper-class test accuracy (%)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
