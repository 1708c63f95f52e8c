"""`longtail posthoc CONFIG from_run=RUN_DIR`: a post-hoc correction of a finished stage-1 run, with
its one hyper-parameter tau chosen on the validation split (never on test).

- ``method: logit_adjust``: predict argmax z - tau log p (Menon et al., ICLR 2021, Eq. 9).
- ``method: tau_norm``: logits with class vectors w_j / ||w_j||^tau, bias dropped (Kang et al., ICLR
  2020, Sec. 4.2).

The result is a run directory like a training run's: config.yaml and metrics.json (``finished``,
``test`` at the chosen tau, ``test_plain`` of the uncorrected stage-1 weights, and the val score of
every tau), so `longtail bench` tabulates it beside the trained methods.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import yaml
from rich.markup import escape
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..config import ConfigError, PosthocConfig, changed_settings, to_dict
from ..engine import distributed as dist_utils
from ..engine import extract_features, load_checkpoint
from ..engine.run_dir import RunDirectory
from ..engine.trainer import METRICS_FILE, write_json_atomic
from ..evaluation import (
    posthoc_adjusted_logits,
    score_logits,
    select_tau,
    tau_grid,
    tau_grid_edge_note,
    tau_norm_logits,
    write_prediction_reports,
)
from . import build
from .output import make_console
from .run_files import holds_weights, load_run_config, locate, rebuild_run_data

console = make_console(soft_wrap=True)  # no hard wraps inside paths
METHODS = ("logit_adjust", "tau_norm")


def saved_logits(run_dir: Path, weights_epoch: int | None,
                 kind: str = "logits") -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]] | None:
    """((val logits, targets), (test logits, targets)) the run saved for the weights of ``weights_epoch``
    (``kind="features"``: the backbone features `longtail eval --features` saved), or None when either file is
    missing or came from other weights (then features are recomputed)."""
    import numpy as np

    out = []
    for split in ("val", "test"):
        path = run_dir / f"{split}_{kind}.npz"
        if not path.is_file() or weights_epoch is None:
            return None
        with np.load(path) as saved:
            if int(saved.get("weights_epoch", -1)) != int(weights_epoch):
                return None
            out.append((torch.from_numpy(saved[kind]), torch.from_numpy(saved["targets"]).long()))
    return out[0], out[1]


def check_run_dir_free(run_dir: Path, cfg: PosthocConfig, overwrite: bool) -> None:
    """Refuse to write a post-hoc run over another run: a trained run (its metrics and config would be replaced and
    the run could no longer be evaluated) always, another post-hoc run (other stage-1 run, method or tau) unless
    ``overwrite``. The same post-hoc run again (e.g. after its data moved) is fine."""
    if holds_weights(run_dir):
        raise ConfigError(f"{run_dir} holds a trained run: a post-hoc run there would replace its metrics and config. "
                          "Give the post-hoc run another name=... or output_dir=...")
    config, metrics = run_dir / "config.yaml", run_dir / METRICS_FILE
    if not (config.is_file() or metrics.is_file()):
        return
    saved = yaml.safe_load(config.read_text()) if config.is_file() else None
    if not (isinstance(saved, dict) and "method" in saved and "from_run" in saved):
        if overwrite:
            return
        raise ConfigError(f"{run_dir} holds files of another kind of run (config.yaml / metrics.json): give the post-hoc "
                          "run another name=... or output_dir=..., or pass --overwrite to replace them")
    old_stage1 = Path(str(saved["from_run"]))
    # a stage-1 run that is no longer where it was moved (with a suite's output directory, say): the same run
    same_stage1 = old_stage1.resolve() == Path(str(cfg.from_run)).resolve() or not old_stage1.exists()
    diff = changed_settings(saved, to_dict(cfg), PosthocConfig.NOT_COMPUTED_KEYS + ("from_run",))
    if not same_stage1:
        diff = ", ".join(x for x in (f"from_run: {saved['from_run']!r} -> {cfg.from_run!r}", diff) if x)
    if diff and not overwrite:
        raise ConfigError(f"{run_dir} holds another post-hoc run ({diff}): give this one another name=... or "
                          "output_dir=..., or pass --overwrite to replace it")


def run_posthoc(cfg: PosthocConfig, *, quiet: bool = False, overwrite: bool = False) -> dict:
    """Apply ``cfg.method`` to ``cfg.from_run``; returns the metrics dict (also in metrics.json). The run directory
    may hold this same post-hoc run (it is computed again) but no other run, unless ``overwrite`` (a post-hoc run
    only: a trained run's directory is never written into)."""
    if cfg.method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {cfg.method!r}")
    if not cfg.from_run:
        raise ConfigError("give the stage-1 run: from_run=<run directory>, e.g. from_run=runs/ce")
    if not cfg.name:
        raise ConfigError("the run needs a name: pass name=... (a config file gives its stem by default)")
    check_run_dir_free(Path(cfg.output_dir) / cfg.name, cfg, overwrite)
    say = (lambda *a: None) if quiet else console.print
    stage1_dir, weights = locate(cfg.from_run)
    train_cfg = load_run_config(stage1_dir)
    if train_cfg.init_from:
        raise ConfigError(f"{stage1_dir} is a stage-2 run; post-hoc corrections apply to a stage-1 run")
    device = dist_utils.resolve_device(cfg.device)
    data = rebuild_run_data(stage1_dir, train_cfg, cfg.data_root, "data_root=PATH")
    model = build.build_model(train_cfg, data).to(device)
    state = load_checkpoint(weights)  # read once: the weights and the epoch that gave them
    model.load_state_dict(state["model"])
    head = model.head
    if cfg.method == "tau_norm" and type(head) is not nn.Linear:
        raise ConfigError(f"tau_norm rescales the rows of a linear head; {stage1_dir} has a {type(head).__name__}")

    start = time.perf_counter()
    counts = data.class_counts
    # LDAM trains softmax(s z) on cosine logits z: its logits are s z, and tau log p is subtracted from those
    # (from z it would act as an s-times larger tau). Every logit below is on that scale.
    scale = build.probability_scale(train_cfg, data)
    weights_epoch = state.get("epoch")
    saved = saved_logits(stage1_dir, weights_epoch) if cfg.method == "logit_adjust" else None
    features = saved_logits(stage1_dir, weights_epoch, "features") if saved is None else None
    if saved is not None:  # logit adjustment needs only the logits the run saved for these weights
        (val_logits, val_targets), (test_logits, test_targets) = saved
    else:
        if features is not None:  # tau-norm (and LA without saved logits) from the features `longtail eval` saved
            (val_feats, val_targets), (test_feats, test_targets) = features
        else:
            val_feats, val_targets = extract_features(model.backbone, DataLoader(data.val, batch_size=cfg.eval_batch_size),
                                                      device)
            test_feats, test_targets = extract_features(
                model.backbone, DataLoader(data.test, batch_size=cfg.eval_batch_size), device)
        with torch.no_grad():
            val_logits, test_logits = head.cpu()(val_feats), head.cpu()(test_feats)
    val_logits, test_logits = scale * val_logits, scale * test_logits
    if cfg.method == "tau_norm":
        weight = head.weight.detach().float().cpu()
        corrected = {"val": lambda t: scale * tau_norm_logits(val_feats, weight, t),
                     "test": lambda t: scale * tau_norm_logits(test_feats, weight, t)}
    else:
        corrected = {"val": lambda t: posthoc_adjusted_logits(val_logits, counts, t),
                     "test": lambda t: posthoc_adjusted_logits(test_logits, counts, t)}
    plain_logits = test_logits
    grid = [cfg.tau] if cfg.tau is not None else tau_grid(cfg.tau_min, cfg.tau_max, cfg.tau_step)
    best, val_scores = select_tau(corrected["val"], val_targets, counts, grid)
    edge_note = tau_grid_edge_note(best, grid)
    many, few = train_cfg.many_threshold, train_cfg.few_threshold

    def test_metrics(logits: Tensor) -> dict:  # the corrected logits are the model's: their softmax is scored too (ECE)
        return score_logits(logits, test_targets, counts, many=many, few=few)

    corrected_test = corrected["test"](best)
    test = test_metrics(corrected_test)
    plain = test_metrics(plain_logits)
    metrics = {"name": cfg.name, "dataset": train_cfg.dataset, "model": train_cfg.model, "loss": train_cfg.loss,
               "sampler": train_cfg.sampler, "seed": train_cfg.seed, "class_counts": counts,
               "class_names": data.class_names, "finished": True, "select_on": "val",
               "posthoc": {"method": cfg.method, "from_run": str(stage1_dir), "weights": weights.name, "tau": best,
                           "val_mean_class": val_scores, "from_saved_logits": saved is not None,
                           "from_saved_features": features is not None, "grid_edge_note": edge_note},
               "test": test, "test_plain": plain, "seconds": time.perf_counter() - start,
               "written_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    run_dir = Path(cfg.output_dir) / cfg.name
    if dist_utils.launched_rank() == 0:  # under torchrun every rank computes the same (cheap) correction; one writes it
        with RunDirectory(run_dir, (METRICS_FILE, "config.yaml"), METRICS_FILE) as directory:
            directory.acquire()  # a second writer of the same run directory stops here
            check_run_dir_free(run_dir, cfg, overwrite)  # again: another run may have finished there meanwhile
            (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
            write_json_atomic(metrics, run_dir / METRICS_FILE)
            # the test reports a trained run has (confusion matrix, per-class CSV, calibration), for the corrected
            # model; its logits saved as that model outputs them (what `longtail eval` of this run writes)
            write_prediction_reports(run_dir, corrected_test / scale, test_targets, data.class_names, prefix="test",
                                     weights_epoch=weights_epoch, probability_scale=scale)
    dist_utils.barrier()  # a suite reads the run next, on every rank
    if edge_note and dist_utils.launched_rank() == 0:  # shown even when quiet (bench): it questions the result
        console.print(f"[yellow]{cfg.name}: {escape(edge_note)}[/]")
    say(f"[bold]{cfg.name}[/]: {cfg.method} on {stage1_dir}, tau {best:g} (val mean-class {100 * val_scores[best]:.2f}); "
        f"test mean-class {100 * test['mean_class']:.2f} (uncorrected {100 * plain['mean_class']:.2f}) -> {run_dir}")
    return metrics
