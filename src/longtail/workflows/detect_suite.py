"""`longtail detect compare`: the side-by-side table of detection heads.

A suite YAML names one stage-1 config, the stage-2 configs by method, seeds and shared overrides;
every run is trained once (finished runs are reused when their training config is the same), stage-2
settings can be swept and chosen on val, and the table is on test when the configs name a test json.
Run directories can also be compared directly.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from rich.table import Table

from ..config import ConfigError, DetectConfig, changed_settings, load_config, read_yaml_mapping, to_dict
from ..detection.runner import METRICS_FILE
from ..engine.distributed import launched_rank
from ..engine.trainer import write_json_atomic
from .detect import (
    COCO_TABLE_METRICS,
    TABLE_METRICS,
    console,
    read_metrics,
    run_detection_eval,
    run_detection_training,
    table_metrics,
)
from .output import percent


@dataclass
class Suite:
    """A detection benchmark: one stage-1 config, stage-2 configs by method name, seeds and overrides.

    A stage-2 entry is a config path relative to the suite file, or ``{config: path, overrides: [key=value],
    sweep: {key: [values]}}``. A sweep trains every value (grid over several keys) on ``sweep_seeds``
    (default: all seeds), keeps the one with the best mean val bbox ``select_by`` metric, and trains only
    that one on the other seeds: settings are chosen on val and the table reports test (when the configs
    name a ``test_json``)."""
    stage1: str
    stage2: dict
    seeds: list = field(default_factory=lambda: [0])
    overrides: list = field(default_factory=list)  # key=value applied to every run
    output_dir: Optional[str] = None
    select_by: str = "AP"  # val bbox metric that picks a sweep's value: AP | APr | APc | APf | AP50 ...
    sweep_seeds: Optional[list] = None  # seeds a sweep runs on (default: every seed)


@dataclass
class SuitePlan:
    """A suite with everything checked: the overrides every run gets (``extra``) and each stage-2
    method's (config path, own overrides, sweep)."""
    suite: Suite
    base: Path  # the suite file's folder: config paths are relative to it
    extra: list
    entries: dict
    sweep_seeds: list


def plan_suite(path: str | Path, overrides: list[str] | None = None) -> SuitePlan:
    """Read a suite YAML and check every config, override and sweep value (before anything trains)."""
    from ..detection.coco import COCO_METRIC_NAMES
    from ..detection.evaluation import LVIS_METRIC_NAMES

    path = Path(path)
    spec = read_yaml_mapping(path, "suites live under configs/detection/")
    known = [f.name for f in dataclasses.fields(Suite)]
    unknown = sorted(set(spec) - set(known))
    if unknown:
        raise ConfigError(f"unknown suite key(s) {unknown} in {path}; known: {known}")
    suite = Suite(**spec)
    known = sorted(set(LVIS_METRIC_NAMES) | set(COCO_METRIC_NAMES))
    if suite.select_by not in known:
        raise ConfigError(f"select_by must be one of {known} (LVIS or COCO metrics), got {suite.select_by!r}")
    sweep_seeds = list(suite.seeds if suite.sweep_seeds is None else suite.sweep_seeds)
    if not sweep_seeds or not set(sweep_seeds) <= set(suite.seeds):
        raise ConfigError(f"sweep_seeds {sweep_seeds} must be a non-empty subset of seeds {suite.seeds}")
    base = path.parent
    # the suite's settings, then the command line's (which win: output_dir=... moves the whole suite)
    extra = list(suite.overrides) + ([f"output_dir={suite.output_dir}"] if suite.output_dir is not None else [])
    extra += list(overrides or [])
    load_config(DetectConfig, base / suite.stage1, extra)
    entries = {method: _stage2_entry(method, entry) for method, entry in suite.stage2.items()}
    for method, (cfg_path, own, sweep) in entries.items():
        for setting in _grid(sweep) or [{}]:
            load_config(DetectConfig, base / cfg_path, [*extra, *own, *(f"{k}={v}" for k, v in setting.items())])
    return SuitePlan(suite, base, extra, entries, sweep_seeds)


def run_suite(path: str, *, overrides: list[str] | None = None, quiet: bool = False) -> dict:
    """Train stage 1 and every stage 2 of a suite YAML for each seed (skipping finished runs, running the
    sweeps and choosing on val), then print and return the table (on test when there is a test json)."""
    plan = plan_suite(path, overrides)
    suite, base, extra, entries, sweep_seeds = plan.suite, plan.base, plan.extra, plan.entries, plan.sweep_seeds
    start = time.perf_counter()

    runs: dict[str, list[Path]] = {}
    stage1: dict[int, Path] = {}
    for seed in suite.seeds:
        s1 = load_config(DetectConfig, base / suite.stage1, [*extra, f"seed={seed}", f"name={Path(suite.stage1).stem}_s{seed}"])
        stage1[seed] = _run_once(s1, quiet)
        runs.setdefault(f"softmax (stage 1, {s1.epochs} ep)", []).append(stage1[seed])
    split = "test" if s1.test_json is not None else "val"

    def stage2_run(method: str, cfg_path: str, own: list[str], seed: int, setting: dict) -> Path:
        tag = "".join(f"_{k}{v}" for k, v in setting.items())
        cfg = load_config(DetectConfig, base / cfg_path,
                          [*extra, *own, *(f"{k}={v}" for k, v in setting.items()), f"seed={seed}",
                           f"name={method}{tag}_s{seed}", f"init_from={stage1[seed]}"])
        return _run_once(cfg, quiet)

    selection: dict[str, dict] = {}
    for method, (cfg_path, own, sweep) in entries.items():
        if not sweep:
            runs[method] = [stage2_run(method, cfg_path, own, seed, {}) for seed in suite.seeds]
            continue
        scores = {}
        for setting in _grid(sweep):
            dirs = [stage2_run(method, cfg_path, own, seed, setting) for seed in sweep_seeds]
            scores[_label(setting)] = (setting, _mean([read_metrics(d, "val")["bbox"][suite.select_by] for d in dirs]))
        best_label, (best, _) = max(scores.items(), key=lambda kv: kv[1][1] if math.isfinite(kv[1][1]) else -math.inf)
        selection[method] = {"select_by": f"val bbox {suite.select_by}", "seeds": sweep_seeds, "chosen": best,
                             "candidates": {label: score for label, (_, score) in scores.items()}}
        runs[f"{method} ({best_label})"] = [stage2_run(method, cfg_path, own, seed, best) for seed in suite.seeds]
    if selection:
        _print_selection(selection)
    table = compare_runs(runs, split=split)
    table["selection"] = selection
    table["wall_seconds"] = time.perf_counter() - start
    if split == "val":
        console.print("[yellow]no test_json in these configs: the table is on val, the split the sweeps chose on[/]")
    console.print(f"suite wall time {table['wall_seconds'] / 60:.1f} min ({len(suite.seeds)} seed(s))")
    return table


def _stage2_entry(method: str, entry: Any) -> tuple[str, list[str], dict[str, list]]:
    """A stage-2 entry: a config path, or {config: path, overrides: [key=value, ...], sweep: {key: [values]}}."""
    if isinstance(entry, str):
        return entry, [], {}
    if isinstance(entry, dict) and "config" in entry and set(entry) <= {"config", "overrides", "sweep"}:
        sweep = entry.get("sweep") or {}
        bad = [k for k, v in sweep.items() if not isinstance(v, list) or not v]
        if not isinstance(sweep, dict) or bad:
            raise ConfigError(f"stage2 entry {method!r}: sweep must map config keys to non-empty lists of values, "
                              f"e.g. sweep: {{lr: [0.02, 0.1, 0.2]}}; got {sweep!r}")
        unknown = sorted(set(sweep) - {f.name for f in dataclasses.fields(DetectConfig)})
        if unknown:
            raise ConfigError(f"stage2 entry {method!r}: unknown sweep key(s) {unknown} (see longtail detect train --list-keys)")
        return str(entry["config"]), [str(o) for o in entry.get("overrides", [])], sweep
    raise ConfigError(f"stage2 entry {method!r} must be a config path or {{config: path, overrides: [key=value], "
                      f"sweep: {{key: [values]}}}}, got {entry!r}")


def _grid(sweep: dict[str, list]) -> list[dict]:
    import itertools

    return [dict(zip(sweep, values)) for values in itertools.product(*sweep.values())]


def _label(setting: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in setting.items())


def _print_selection(selection: dict[str, dict]) -> None:
    table = Table(title="Stage-2 settings chosen on val (the test table uses the chosen one)")
    for col in ("method", "chosen by", "candidates (val)", "chosen"):
        table.add_column(col)
    for method, s in selection.items():
        table.add_row(method, f"{s['select_by']}, seeds {s['seeds']}",
                      "  ".join(f"{label}: {percent(score)}" for label, score in s["candidates"].items()),
                      _label(s["chosen"]))
    console.print(table)


def _run_once(cfg: DetectConfig, quiet: bool) -> Path:
    """Train ``cfg`` unless its run is finished (same training config); add a missing test evaluation."""
    run_dir = Path(cfg.output_dir) / str(cfg.name)
    if not (run_dir / METRICS_FILE).is_file():
        run_detection_training(cfg, resume=True, quiet=quiet)
        return run_dir
    stored = to_dict(load_config(DetectConfig, run_dir / "config.yaml"))
    diff = changed_settings(stored, to_dict(cfg), DetectConfig.NOT_COMPUTED_KEYS)
    if diff:
        raise ConfigError(f"{run_dir} is a finished run of another config ({diff}); remove it, "
                          "or give the suite another output_dir")
    console.print(f"{run_dir} is finished: reusing it")
    if cfg.test_json is not None and "test" not in read_metrics(run_dir):
        run_detection_eval(str(run_dir), split="test", test_json=cfg.test_json, device=cfg.device, save=True)
    return run_dir


def compare_runs(runs: dict[str, list[Path]], split: str = "val") -> dict:
    """Mean (and values per seed) of AP and its groups (LVIS: APr/APc/APf; COCO: AP1..AP4) on ``split`` for each
    method; prints the table."""
    rows: dict[str, dict] = {}
    columns = TABLE_METRICS
    for method, dirs in runs.items():
        per_run = [read_metrics(d, split) for d in dirs]
        rows[method] = {}
        for kind in ("bbox", "segm"):
            if all(kind in r for r in per_run):
                columns = table_metrics(per_run[0][kind])
                vals = {k: [r[kind].get(k, float("nan")) for r in per_run] for k in columns}
                rows[method][kind] = {k: _mean(v) for k, v in vals.items()}
                rows[method][kind + "_per_seed"] = vals
    for kind in ("bbox", "segm"):
        if not any(kind in r for r in rows.values()):
            continue
        style = "COCO" if columns is COCO_TABLE_METRICS else "LVIS"
        table = Table(title=f"{style}-style {kind} AP on the {split} split "
                            f"(mean over {max(len(d) for d in runs.values())} run(s))")
        table.add_column("method")
        for k in columns:
            table.add_column(k, justify="right")
        for method, r in rows.items():
            if kind in r:
                table.add_row(method, *[percent(r[kind].get(k), 5) for k in columns])
        console.print(table)
    return {"split": split, "rows": rows, "runs": {m: [str(d) for d in ds] for m, ds in runs.items()}}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def run_compare(targets: list[str], *, overrides: list[str] | None = None, quiet: bool = False,
                json_out: str | None = None, split: str | None = None) -> dict:
    """``targets``: one suite YAML (train what is missing, then the table) or run directories (``split``:
    val or test; default test when every run has it). A ``key=value`` among the targets is an override,
    as in ``longtail train`` and ``longtail bench`` (``--set key=value`` also works)."""
    given = [t for t in targets if "=" in t and not Path(t).exists()]
    targets, overrides = [t for t in targets if t not in given], [*given, *(overrides or [])]
    if not targets:
        raise ConfigError("give a suite YAML (configs/detection/suite_*.yaml) or run directories to compare")
    if len(targets) == 1 and Path(targets[0]).suffix in (".yaml", ".yml"):
        if split is not None:
            raise ConfigError("--split applies to run directories; a suite reports test when its configs name a test_json")
        table = run_suite(targets[0], overrides=overrides, quiet=quiet)
    else:
        if overrides:
            raise ConfigError("key=value overrides only apply to a suite YAML")
        runs: dict[str, list[Path]] = {}
        has_test = True
        for t in targets:
            m = read_metrics(Path(t))
            has_test &= "test" in m
            runs.setdefault(m["head"] + (" (decoupled)" if m.get("decoupled") else ""), []).append(Path(t))
        table = compare_runs(runs, split=split or ("test" if has_test else "val"))
    if json_out is not None and launched_rank() == 0:
        write_json_atomic(table, Path(json_out))
    return table
