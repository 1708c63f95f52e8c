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
