"""How long will a `longtail bench` suite take on this machine? Times short real runs, in one
process, and extrapolates to the suite's grid, printing the estimate beside the budget.

For every imbalance factor of the suite it times a CE run of 1 and of 3 epochs (the suite's
overrides applied): their difference gives the cost of an epoch (train + val), the rest the fixed
cost of a run (data, test evaluation). One run of each stage-2 and post-hoc method of the suite is
timed at the first imbalance factor. Then

    estimate = sum over seeds, IFs and methods of
               fixed(IF) + epochs(method) x epoch(IF)      (training methods)
               measured time (scaled by epochs)            (stage-2 and post-hoc methods)

    python benchmarks/suite_time.py configs/suites/fashion_mnist_lt.yaml --budget-hours 3
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

from longtail.config import PosthocConfig
from longtail.workflows.bench import load_suite, plan
from longtail.workflows.posthoc import run_posthoc
from longtail.workflows.train import run_training


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite")
    parser.add_argument("--budget-hours", type=float, default=3.0)
    parser.add_argument("--keep", help="keep the timing runs in this folder (default: a temporary one)")
    args = parser.parse_args()
    suite = load_suite(args.suite)
    work = Path(args.keep or tempfile.mkdtemp(prefix="suite_time_"))
    runs = plan(suite)
    first = {(r.imbalance_factor, r.method.name): r for r in runs if r.seed == suite.seeds[0]}
    stage1 = suite.methods[0]
    if stage1.kind != "train" or stage1.stage1 is not None:
        raise SystemExit("the suite's first method must be a stage-1 training method (it is timed as the reference)")

    per_epoch, fixed = {}, {}
    print(f"machine: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start; runs in {work}")
    for factor in suite.imbalance_factors:
        base = first[(factor, stage1.name)].config
        times = {}
        for epochs in (1, 3):
            cfg = dataclasses.replace(base, epochs=epochs, output_dir=str(work / f"if{factor:g}"),
                                      name=f"{stage1.name}_e{epochs}")
            times[epochs] = timed(lambda: run_training(cfg, quiet=True))
        per_epoch[factor] = max((times[3] - times[1]) / 2, 0.0)  # a loaded machine can make it noisy
        fixed[factor] = times[1] - per_epoch[factor]
        print(f"IF {factor:g}: one epoch (train + val) {per_epoch[factor]:.1f} s, fixed cost of a run "
              f"{fixed[factor]:.1f} s ({stage1.name})")

    # stage-2 and post-hoc methods: one timed run each at the first IF, on the 3-epoch reference run
    factor0 = suite.imbalance_factors[0]
    reference = work / f"if{factor0:g}" / f"{stage1.name}_e3"
    measured = {}
    for m in suite.methods:
        if m.kind == "train" and m.stage1 is None:
            continue
        cfg = first[(factor0, m.name)].config
        if isinstance(cfg, PosthocConfig):
            cfg.from_run, cfg.output_dir = str(reference), str(work / "posthoc")
            measured[m.name] = timed(lambda: run_posthoc(cfg, quiet=True))
        else:
            cfg.init_from, cfg.output_dir = str(reference), str(work / "stage2")
            measured[m.name] = timed(lambda: run_training(cfg, quiet=True))
        print(f"{m.name}: one run {measured[m.name]:.1f} s at IF {factor0:g}")

    total, lines = 0.0, []
    for m in suite.methods:
        seconds = 0.0
        for r in runs:
            if r.method.name != m.name:
                continue
            if m.name in measured:
                seconds += measured[m.name]
            else:
                seconds += fixed[r.imbalance_factor] + r.config.epochs * per_epoch[r.imbalance_factor]
        epochs = getattr(first[(factor0, m.name)].config, "epochs", "-")
        lines.append(f"  {m.name:<28} epochs {epochs!s:>3}  {seconds / 60:6.1f} min")
        total += seconds
    print(f"estimate for {args.suite} ({suite.num_runs} runs):")
    print("\n".join(lines))
    budget = args.budget_hours * 3600
    print(f"total {total / 3600:.2f} h = {100 * total / budget:.0f}% of the {args.budget_hours:g} h budget "
          f"(load average {os.getloadavg()[0]:.1f} at the end)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
