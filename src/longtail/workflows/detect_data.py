"""`longtail detect make-data OUT`: write the embedded LVIS-format detection benchmark
(:mod:`longtail.detection.synthetic`) and print its class, group and image counts."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from ..config import ConfigError

PRESET_NAMES = ("ci", "default")  # = longtail.detection.synthetic.PRESETS (checked by a test)


def add_make_data_parser(sub) -> None:
    """Add ``make-data`` to the ``detect`` group's sub-parsers (imports nothing heavy: every command
    builds this parser)."""
    p = sub.add_parser("make-data", help="write the embedded LVIS-format benchmark (Fashion-MNIST items on canvases)",
                       description="Write OUT/lvis_train.json, OUT/lvis_val.json, OUT/lvis_test.json and the images "
                                   "under OUT/train, OUT/val and OUT/test (val for choosing settings, test for "
                                   "reporting). 120 classes whose training instance counts follow the LVIS v1 train "
                                   "profile divided by --scale. Example: longtail detect make-data data/lvis_syn_ci "
                                   "--size ci")
    p.add_argument("out", help="output folder (must not hold a generated dataset yet)")
    p.add_argument("--size", choices=PRESET_NAMES, default="default",
                   help="preset: default (~12,000 train instances, for the 30-minute CPU benchmark) or ci (tiny)")
    p.add_argument("--scale", type=float, default=None,
                   help="divide the LVIS v1 instance counts by this (preset: 10 default, 60 ci)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same files")
    p.add_argument("--data-root", default=None, help="folder holding (or receiving) Fashion-MNIST "
                                                     "(default: $LONGTAIL_DATA or ./data)")


def run_make_data(args: argparse.Namespace) -> dict:
    from ..detection.synthetic import make_synthetic_lvis

    try:
        summary = make_synthetic_lvis(args.out, size=args.size, scale=args.scale, seed=args.seed,
                                      data_root=args.data_root)
    except (FileExistsError, ValueError) as err:
        raise ConfigError(str(err)) from err
    train = summary["train"]
    table = Table(title=f"{args.out}: {summary['num_classes']} classes", show_header=True)
    table.add_column("")
    table.add_column("value", justify="right")
    for split in ("train", "val", "test"):
        table.add_row(f"{split} images / instances", f"{summary[split]['images']} / {summary[split]['instances']}")
    table.add_row("train instances per class", f"{train['min_instances']} .. {train['max_instances']}")
    table.add_row("frequency groups r / c / f", " / ".join(str(v) for v in train["frequency_groups"].values()))
    for edges, n in train["bags_bins"].items():
        table.add_row(f"BAGS bin {edges}", str(n))
    if train["suggested_bin_edges"] != [10, 100, 1000]:
        table.add_row(f"BAGS bins at bin_edges={tuple(train['suggested_bin_edges'])}",
                      " / ".join(str(v) for v in train["bags_bins_at_suggested_edges"].values()))
    Console(highlight=False).print(table)
    return summary
