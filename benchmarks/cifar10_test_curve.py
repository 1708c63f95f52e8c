"""How much a best-over-epochs test figure owes to choosing the epoch on the test set.

The LDAM-DRW CIFAR code (Cao et al. 2019), whose CE 70.4 on CIFAR-10-LT the field quotes, scores the test set
after every epoch and reports the best score of the run: the epoch is chosen on test. longtail reports the
last epoch (or the one chosen on validation). This trains a config as ``longtail train`` does, with a hook that
scores the test set after every epoch from ``--from-epoch`` on (recorded in the run's history as
``test_mean_class``; nothing is selected on it), then prints the last epoch's test figure, the best over the
scored epochs, and their difference: the part of a best-over-epochs figure that is selection on test.

    python benchmarks/cifar10_test_curve.py configs/cifar10_lt/ldam_protocol/ce.yaml data_root=cifar10_jpeg.tar \\
        threads=1 lr_schedule=step "lr_milestones=[160, 180]" lr_gamma=0.01 output_dir=runs/test_curve

The run directory is an ordinary one (``longtail eval`` reads it); interrupted, the same command with
``--resume`` continues exactly, its test scores included (they are in the checkpointed history).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from longtail.config import TrainConfig, load_config
from longtail.engine import Hook, distributed
from longtail.evaluation import score_logits
from longtail.workflows import build
from longtail.workflows.train import run_dir_of, run_training


class TestCurve(Hook):
    """Scores the current weights on ``loader`` after each epoch from ``from_epoch`` (1-based) on, into the
    epoch's history record. Training is unaffected: the trainer re-seeds every RNG per epoch and puts the
    model back in training mode."""

    __test__ = False  # not a pytest class

    def __init__(self, loader, from_epoch: int) -> None:
        self.loader, self.from_epoch, self.trainer = loader, from_epoch, None

    def before_train(self, trainer: Any) -> None:
        self.trainer = trainer

    def after_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        if epoch + 1 < self.from_epoch:
            return
        t = self.trainer
        logits, targets = t.predict(self.loader)
        scores = score_logits(logits, targets, t.class_counts, t.many, t.few, t.probability_scale)
        record.update({"test_mean_class": scores["mean_class"], "test_top1": scores["top1"]})


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a longtail train config (YAML), or the first key=value")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, as for longtail train")
    parser.add_argument("--from-epoch", type=int, default=1,
                        help="score the test set after this epoch and every later one (default: every epoch)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run of the same name")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    config, overrides = args.config, list(args.overrides)
    if "=" in config:  # no file, only overrides (as longtail train takes them)
        config, overrides = None, [config, *overrides]
    cfg = load_config(TrainConfig, config, overrides)
    if not 1 <= args.from_epoch <= cfg.epochs:
        raise SystemExit(f"--from-epoch must lie in [1, epochs = {cfg.epochs}], got {args.from_epoch}")
    info = distributed.setup(cfg.device)
    if info.world_size > 1:
        raise SystemExit("run this diagnostic in one process (not under torchrun)")
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)  # decoding the test set too
    test_loader = build.eval_loader(build.build_data(cfg).test, cfg, info)
    metrics = run_training(cfg, resume=args.resume, overwrite=args.overwrite,
                           hooks=[TestCurve(test_loader, args.from_epoch)])

    curve = [(r["epoch"], 100 * r["test_mean_class"]) for r in metrics["history"] if "test_mean_class" in r]
    last_epoch, last = curve[-1]
    best_epoch, best = max(curve, key=lambda point: point[1])  # the first epoch of the best score, as best_acc1
    print(f"\n{run_dir_of(cfg)}: test mean per-class accuracy (%) after each scored epoch")
    for epoch, score in curve:
        if epoch % 10 == 0 or epoch == best_epoch or epoch == last_epoch or len(curve) <= 20:
            print(f"  epoch {epoch:>4}  {score:6.2f}{'  <- best' if epoch == best_epoch else ''}")
    print(f"last epoch ({last_epoch}): {last:.2f}   best over epochs {curve[0][0]}-{last_epoch} (epoch {best_epoch}): "
          f"{best:.2f}   best - last: {best - last:+.2f}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError, RuntimeError) as err:  # a config, data or run-directory problem: its message
        raise SystemExit(f"error: {err}") from None
    except KeyboardInterrupt:
        raise SystemExit("interrupted; the last complete checkpoint is kept (continue with --resume)") from None
