"""`longtail demo`: the main job. Trains the methods side by side on Fashion-MNIST-LT (IF 100) and
prints overall / many / medium / few accuracy, averaged over seeds.

Every run is an ordinary `longtail train` run of a config in configs/fashion_mnist_lt/ (stage-2
methods start from the CE run of the same seed), so each row can be reproduced on its own. Finished
runs are skipped and interrupted ones resumed, so re-running the demo continues where it stopped.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from ..config import ConfigError, TrainConfig, changed_settings, load_config, to_dict
from ..engine.trainer import CHECKPOINT_FILE, METRICS_FILE
from ..evaluation.plots import plot_per_class_accuracy
from .train import run_training

console = Console(highlight=False)


@dataclass(frozen=True)
class DemoMethod:
    label: str
    config: str  # file name in the configs folder
    stage1: str | None = None  # config stem of the run this one starts from (decoupled stage 2)


METHODS = (
    DemoMethod("CE (softmax)", "ce.yaml"),
    DemoMethod("Balanced Softmax, end-to-end", "balanced_softmax.yaml"),
    DemoMethod("Balanced Softmax, decoupled", "decoupled_balanced_softmax.yaml", stage1="ce"),
    DemoMethod("BALMS (BS + Meta Sampler)", "balms.yaml", stage1="ce"),
)
DEMO_THREADS = 2  # the README's table was measured with 2 intra-op threads
METRIC_KEYS = ("top1", "mean_class", "many", "medium", "few", "top5", "ece", "ece_many", "ece_medium", "ece_few")


def default_configs_dir() -> Path:
    here = Path("configs/fashion_mnist_lt")
    if here.is_dir():
        return here
    repo = Path(__file__).resolve().parents[3] / "configs" / "fashion_mnist_lt"  # editable install
    if repo.is_dir():
        return repo
    raise ConfigError("cannot find configs/fashion_mnist_lt: run the demo from the repository root or pass --configs")


def _run_one(cfg: TrainConfig) -> dict:
    """Train the run, reuse it when it finished earlier with the same settings, resume it when interrupted; a
    run made with other settings (e.g. before the defaults changed) is an error, never silently reused."""
    run_dir = Path(cfg.output_dir) / str(cfg.name)
    metrics_path = run_dir / METRICS_FILE
    if metrics_path.exists() and (run_dir / "config.yaml").exists():
        saved = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        diff = changed_settings(saved, to_dict(cfg), TrainConfig.NOT_COMPUTED_KEYS + ("init_from",))
        if diff:
            raise ConfigError(f"{run_dir} was made with other settings ({diff}). Delete it (or the whole "
                              f"{cfg.output_dir}) to redo the demo with these settings, or pass --output-dir")
        metrics = json.loads(metrics_path.read_text())
        if metrics.get("finished"):
            console.print(f"[dim]{cfg.name}: finished earlier with the same settings, reusing {metrics_path}[/]")
            return metrics
    return run_training(cfg, resume=(run_dir / CHECKPOINT_FILE).exists(), overwrite=False)


def run_demo(output_dir: str = "runs/demo", *, seeds: list[int] = (0,), epochs: int | None = None,
             configs: str | None = None, overrides: list[str] = ()) -> dict:
    folder = Path(configs) if configs else default_configs_dir()
    methods = [m for m in METHODS if (folder / m.config).exists()]
    results: dict[str, list[dict]] = {m.label: [] for m in methods}
    for seed in seeds:
        for m in methods:
            stem = Path(m.config).stem
            # threads fixed at the README's 2: results depend on the intra-op thread count (and the CPU), so a
            # fixed count lets one machine reproduce its own numbers; `longtail demo threads=1` overrides it
            extra = [f"seed={seed}", f"output_dir={output_dir}", f"name={stem}_s{seed}", "download=true",
                     f"threads={DEMO_THREADS}"]
            if epochs is not None:
                extra.append(f"epochs={epochs}")
            if m.stage1 is not None:
                extra.append(f"init_from={output_dir}/{m.stage1}_s{seed}")
            cfg = load_config(TrainConfig, folder / m.config, extra + list(overrides))
            console.rule(f"{m.label}, seed {seed}")
            results[m.label].append(_run_one(cfg))
    summary = summarise(results)
    print_table(summary, seeds)
    out = Path(output_dir)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    (out / "results.md").write_text(markdown_table(summary, seeds))
    counts = next(iter(results.values()))[0]["class_counts"]
    curves = {label: [statistics.fmean(r["test"]["per_class"][c] for r in runs) for c in range(len(counts))]
              for label, runs in results.items()}
    plot_per_class_accuracy(curves, counts, out / "per_class_accuracy.png",
                            title="Fashion-MNIST-LT IF 100: per-class test accuracy")
    console.print(f"table -> {out / 'results.md'}, plot -> {out / 'per_class_accuracy.png'}")
    return summary


def summarise(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Mean and standard deviation over seeds of each metric, in percent."""
    out = {}
    for label, runs in results.items():
        row = {}
        for key in METRIC_KEYS:
            vals = [100 * r["test"][key] for r in runs if not math.isnan(r["test"].get(key, math.nan))]
            row[key] = {"mean": statistics.fmean(vals) if vals else math.nan,
                        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
        row["seeds"] = len(runs)
        out[label] = row
    return out


def _cell(v: dict) -> str:
    if math.isnan(v["mean"]):
        return "-"
    return f"{v['mean']:.2f}" + (f" ± {v['std']:.2f}" if v["std"] else "")


def print_table(summary: dict, seeds) -> None:
    # means only, so the table fits an 80-column terminal; results.md has the standard deviations
    table = Table(title=f"Fashion-MNIST-LT IF 100: test %, mean of seeds {list(seeds)}",
                  caption="balanced test set (top-1 = mean per-class)" + ("; ± std in results.md" if len(seeds) > 1 else ""))
    table.add_column("method")
    for col in ("top-1", "many", "medium", "few", "ECE"):
        table.add_column(col, justify="right")
    for label, row in summary.items():
        table.add_row(label, *(_cell(dict(row[k], std=0)) for k in ("mean_class", "many", "medium", "few", "ece")))
    console.print(table)


def markdown_table(summary: dict, seeds) -> str:
    lines = [f"Fashion-MNIST-LT (IF 100), test accuracy %, mean ± std over seeds {list(seeds)}. "
             "The test set is balanced, so top-1 = mean per-class accuracy.", "",
             "| method | top-1 | many | medium | few |", "|---|---|---|---|---|"]
    for label, row in summary.items():
        lines.append(f"| {label} | " + " | ".join(_cell(row[k]) for k in ("mean_class", "many", "medium", "few")) + " |")
    lines += ["", "Calibration: expected calibration error (%, 15 equal-width confidence bins, lower is better), overall "
              "and within the many / medium / few-shot test images; top-5 accuracy (%).", "",
              "| method | ECE | ECE many | ECE medium | ECE few | top-5 |", "|---|---:|---:|---:|---:|---:|"]
    for label, row in summary.items():
        lines.append(f"| {label} | " + " | ".join(_cell(row[k]) for k in ("ece", "ece_many", "ece_medium", "ece_few",
                                                                            "top5")) + " |")
    return "\n".join(lines) + "\n"
