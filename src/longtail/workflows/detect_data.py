"""`longtail detect make-data OUT`: write an embedded detection benchmark (:mod:`longtail.detection.synthetic`:
the LVIS stand-in, or with ``--size coco_lt`` the COCO-LT one) and print its class, group and image counts.
`longtail detect coco-lt INSTANCES`: write the COCO-LT training json from COCO's instances_train2017.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..config import ConfigError

PRESET_NAMES = ("ci", "default", "coco_lt", "coco_lt_ci")  # = longtail.detection.synthetic.PRESETS (a test checks)


def add_make_data_parser(sub) -> None:
    """Add ``make-data`` to the ``detect`` group's sub-parsers (imports nothing heavy: every command
    builds this parser)."""
    p = sub.add_parser("make-data", help="write an embedded benchmark (Fashion-MNIST items on canvases): LVIS or COCO-LT",
                       description="Write OUT/lvis_train.json, OUT/lvis_val.json, OUT/lvis_test.json and the images "
                                   "under OUT/train, OUT/val and OUT/test (val for choosing settings, test for "
                                   "reporting). 120 classes whose training instance counts follow the LVIS v1 train "
                                   "profile divided by --scale. --size coco_lt (or coco_lt_ci) writes the COCO-LT "
                                   "stand-in instead: OUT/coco_lt_{train,val,test}.json in COCO format, 80 classes "
                                   "following the COCO-LT counts / --scale. Example: longtail detect make-data "
                                   "data/lvis_syn_ci --size ci")
    p.add_argument("out", help="output folder (must not hold a generated dataset yet)")
    p.add_argument("--size", choices=PRESET_NAMES, default="default",
                   help="preset: default (~12,000 train instances, for the 30-minute CPU benchmark), ci (tiny), "
                        "coco_lt (the COCO-LT stand-in, ~6,700 train instances) or coco_lt_ci (tiny)")
    p.add_argument("--scale", type=float, default=None,
                   help="divide the real instance counts by this (presets: 10 default, 60 ci, 100 coco_lt, 800 coco_lt_ci)")
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
    if "ap_bins" in train:
        table.add_row("AP1 / AP2 / AP3 / AP4 classes", " / ".join(str(v) for v in train["ap_bins"].values()))
        Console(highlight=False).print(table)
        return summary
    for edges, n in train["bags_bins"].items():
        table.add_row(f"BAGS bin {edges}", str(n))
    if train["suggested_bin_edges"] != [10, 100, 1000]:
        table.add_row(f"BAGS bins at bin_edges={tuple(train['suggested_bin_edges'])}",
                      " / ".join(str(v) for v in train["bags_bins_at_suggested_edges"].values()))
    Console(highlight=False).print(table)
    return summary


def add_coco_lt_parser(sub) -> None:
    p = sub.add_parser("coco-lt", help="write the COCO-LT training json from COCO's instances_train2017.json",
                       description="Keep, for each COCO category, its annotations in the COCO train2017 images the "
                                   "COCO-LT list (Wang et al., ECCV 2020; shipped with longtail) gives for it, check "
                                   "every category's kept instance count against the list, and write the json. "
                                   "Evaluation uses the full val2017.")
    p.add_argument("instances", help="COCO's annotations/instances_train2017.json")
    p.add_argument("--out", default="data/coco_lt/coco_lt_train.json", help="where to write (default: %(default)s)")
    p.add_argument("--list", dest="split_list", default=None,
                   help="another class/image list in the same format (default: the shipped COCO-LT list)")


def run_coco_lt(instances: str, out: str, split_list: str | None = None) -> dict:
    """Build, check and write the COCO-LT train json; returns its summary."""
    import json

    from ..detection.coco import build_coco_lt
    from ..engine.trainer import write_json_atomic

    target = Path(out)
    if target.exists():
        raise ConfigError(f"{target} exists; remove it or give another --out")
    split = json.loads(Path(split_list).read_text()) if split_list is not None else None
    data = build_coco_lt(instances, split)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(data, target)
    counts = sorted(c["instance_count"] for c in data["categories"])
    summary = {"images": len(data["images"]), "instances": len(data["annotations"]),
               "categories": len(data["categories"]), "min_instances": counts[0], "max_instances": counts[-1],
               "instances_counted": data["info"]["instances_counted"]}
    Console(highlight=False).print(f"{target}: {summary['images']:,} images, {summary['instances']:,} instances, "
                                   f"{summary['categories']} categories ({counts[0]} .. {counts[-1]} per category; "
                                   f"crowd regions counted: {summary['instances_counted']}); every count matches the list")
    return summary
