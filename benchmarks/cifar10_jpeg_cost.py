"""What training and testing on the JPEG copy of CIFAR-10 costs, against the original pixels of the same images.

The public JPEG copy (quality 75, 4:2:0) is the only full CIFAR-10 available offline; the papers train on the
original pixels. This measures the difference directly on the images for which both exist: ``pack`` reads
CIFAR-10 python batches (torchvision's ``cifar-10-batches-py``; a truncated file gives the images it holds in
full, as prefixes of the batches do), finds each image's file in the JPEG copy (the copy numbers every class's
images in batch order; every pair is checked by its PSNR) and writes two class-folder tars of the same images
under the same names: the originals as PNG, and the copy's own JPEG bytes. ``run`` then trains the LDAM-protocol
config on each, seed by seed (the same seed draws the same long-tailed subset from both), and prints the paired
table:

    python benchmarks/cifar10_jpeg_cost.py pack --batches PATH/cifar-10-batches-py --jpeg-copy PATH/cifar10_jpeg.tar \\
        --out runs/jpeg_cost
    python benchmarks/cifar10_jpeg_cost.py run --data runs/jpeg_cost --n-max 400 --seeds 0 1 2

``run`` passes ``n_max`` (the head class's images; the others follow the IF 100 profile), so with a part of the
training set the benchmark is CIFAR-10-LT scaled down, not the full one; the test set is every test image packed.
``--override imbalance_factor=1`` trains on a balanced set instead (n_max images of every class), where the network
learns far more from the pixels (CE at n_max 450: 76-77%, against 35% on the scaled-down CIFAR-10-LT).
"""

from __future__ import annotations

import argparse
import io
import json
import pickletools
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from longtail.data.cifar_images import CIFAR10_CLASSES as CLASSES

REPO = Path(__file__).resolve().parents[1]
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
IMAGE_BYTES = 3 * 32 * 32
MIN_PSNR = 20.0  # a q75 JPEG of the right image sits near 30 dB; another image is near 10-15 dB
CONFIG = "configs/cifar10_lt/ldam_protocol/ce.yaml"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="write originals.tar (PNG) and jpeg_copy.tar of the same images")
    pack.add_argument("--batches", type=Path, required=True, help="folder of data_batch_1..5 and test_batch")
    pack.add_argument("--jpeg-copy", type=Path, required=True, help="the JPEG copy (tar of train/<class>/NNNN.jpg)")
    pack.add_argument("--out", type=Path, required=True)
    run = sub.add_parser("run", help="train on both tars, seed by seed, and print the paired table")
    run.add_argument("--data", type=Path, required=True, help="the --out folder of pack")
    run.add_argument("--n-max", type=int, required=True, help="the head class's training images")
    run.add_argument("--seeds", type=int, nargs="+", default=[0])
    run.add_argument("--config", default=CONFIG)
    run.add_argument("--out", type=Path, default=None, help="run folder (default: DATA/runs)")
    run.add_argument("--override", nargs="+", default=[], metavar="KEY=VALUE",
                     help="overrides for every run (e.g. epochs=2 warmup_epochs=0 for a smoke test)")
    return p.parse_args()


def read_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    """(images (n, 32, 32, 3) uint8, all labels of the batch) from a CIFAR python batch, possibly truncated:
    n is the number of images stored in full. The labels list precedes the pixel string in the file."""
    raw = path.read_bytes()
    labels, key = [], None
    try:
        for op, arg, _ in pickletools.genops(raw):
            if op.name in ("SHORT_BINSTRING", "BINUNICODE", "SHORT_BINUNICODE"):
                key = arg
            elif op.name == "BININT1" and key == "labels":
                labels.append(arg)
    except ValueError:
        pass  # the pixel string runs past the end of a truncated file
    if not labels:
        raise SystemExit(f"{path}: no labels list found; is it a CIFAR-10 python batch?")
    marker = b"T" + (len(labels) * IMAGE_BYTES).to_bytes(4, "little")  # BINSTRING opcode + the pixels' length
    start = raw.find(marker)
    if start < 0:
        raise SystemExit(f"{path}: the pixel string of {len(labels)} images was not found")
    start += len(marker)
    n = min((len(raw) - start) // IMAGE_BYTES, len(labels))
    pixels = np.frombuffer(raw, np.uint8, count=n * IMAGE_BYTES, offset=start)
    return pixels.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1), labels


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def pack(batches: Path, jpeg_copy: Path, out: Path) -> None:
    with tarfile.open(jpeg_copy) as tar:
        # split/class/file, whatever folder the copy's tree sits in
        copy = {"/".join(PurePosixPath(m.name).parts[-3:]): m for m in tar.getmembers() if m.isfile()}
        out.mkdir(parents=True, exist_ok=True)
        stats = {}
        with tarfile.open(out / "originals.tar", "w") as orig_tar, tarfile.open(out / "jpeg_copy.tar", "w") as jpeg_tar:
            for split, names in (("train", TRAIN_BATCHES), ("test", ("test_batch",))):
                seen = [0] * len(CLASSES)  # the copy's file number of each class's next image, in batch order
                values, per_class = [], [0] * len(CLASSES)
                for name in names:
                    images, labels = read_batch(batches / name)
                    for k, label in enumerate(labels):
                        index = seen[label]
                        seen[label] += 1
                        if k >= len(images):
                            continue  # past the stored images of a truncated batch: only counted
                        member = copy.get(f"{split}/{CLASSES[label]}/{index:04d}.jpg")
                        if member is None:
                            raise SystemExit(f"{jpeg_copy} lacks {split}/{CLASSES[label]}/{index:04d}.jpg")
                        data = tar.extractfile(member).read()
                        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                        value = psnr(decoded, images[k])
                        if value < MIN_PSNR:
                            raise SystemExit(f"{member.name} does not match image {k} of {name} (PSNR {value:.1f} dB "
                                             f"< {MIN_PSNR}): the copy is not numbered in batch order")
                        values.append(value)
                        per_class[label] += 1
                        png = io.BytesIO()
                        Image.fromarray(images[k]).save(png, "PNG")
                        stem = f"{split}/{CLASSES[label]}/{index:04d}"
                        _add(orig_tar, f"{stem}.png", png.getvalue())
                        _add(jpeg_tar, f"{stem}.jpg", data)
                stats[split] = {"images": len(values), "per_class": per_class,
                                "psnr_mean": round(float(np.mean(values)), 2), "psnr_min": round(float(np.min(values)), 2)}
                print(f"{split}: {len(values)} images, per class {per_class}; JPEG copy vs original PSNR "
                      f"mean {np.mean(values):.2f} dB (min {np.min(values):.2f})")
    (out / "pack.json").write_text(json.dumps(stats, indent=1) + "\n")


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def run(data: Path, n_max: int, seeds: list[int], config: str, out: Path | None, overrides: list[str]) -> None:
    out = out or data / "runs"
    longtail = Path(sys.executable).parent / "longtail"
    results = {}
    for seed in seeds:
        for source in ("originals", "jpeg_copy"):
            run_dir = out / f"seed{seed}" / source
            metrics_path = run_dir / "metrics.json"
            done = metrics_path.is_file() and json.loads(metrics_path.read_text()).get("finished")
            if not done:
                command = [str(longtail), "train", config, f"data_root={data / (source + '.tar')}", f"n_max={n_max}",
                           f"seed={seed}", "threads=1", f"output_dir={run_dir.parent}", f"name={source}", *overrides,
                           "--quiet", *(["--resume"] if (run_dir / "checkpoint.pt").is_file() else [])]
                print("$", " ".join(command), flush=True)
                if subprocess.run(command, cwd=REPO).returncode != 0:
                    raise SystemExit(f"the {source} run of seed {seed} failed (its error is above); finished runs are "
                                     "kept, and the same command continues from there")
            test = json.loads(metrics_path.read_text())["test"]
            results[seed, source] = {k: 100 * test[k] for k in ("mean_class", "many", "medium", "few")}
    settings = " ".join([f"n_max={n_max}", *overrides])
    print(f"\n{config} {settings}; test top-1 = mean per-class accuracy on the packed test images")
    print(f"{'seed':>4} {'originals':>10} {'JPEG copy':>10} {'JPEG - orig':>12}   many / medium / few (orig -> JPEG)")
    diffs = []
    for seed in seeds:
        o, j = results[seed, "originals"], results[seed, "jpeg_copy"]
        diffs.append(j["mean_class"] - o["mean_class"])
        groups = "  ".join(f"{o[g]:.1f} -> {j[g]:.1f}" if o[g] == o[g] else "-"  # nan: no class in the group
                           for g in ("many", "medium", "few"))
        print(f"{seed:>4} {o['mean_class']:>10.2f} {j['mean_class']:>10.2f} {diffs[-1]:>+12.2f}   {groups}")
    spread = f" (sd {np.std(diffs, ddof=1):.2f})" if len(diffs) > 1 else ""
    print(f"mean JPEG - originals: {np.mean(diffs):+.2f}{spread} over {len(diffs)} seed(s)")

    # which half of the cost is training and which is testing: each model on the other test set too
    print("\neach model on both test sets (mean per-class accuracy): trained on -> tested on originals / JPEG copy")
    for seed in seeds:
        row = []
        for source in ("originals", "jpeg_copy"):
            scores = [test_on(out / f"seed{seed}" / source, data / f"{tested}.tar") for tested in ("originals", "jpeg_copy")]
            row.append(f"{source}: {scores[0]:.2f} / {scores[1]:.2f}")
        print(f"{seed:>4}   " + "   ".join(row))


def test_on(run_dir: Path, data_root: Path) -> float:
    """Mean per-class accuracy (%) of a run's selected weights on the test images of ``data_root``."""
    import torch

    from longtail.engine import distributed, load_checkpoint, predict
    from longtail.evaluation import score_logits
    from longtail.workflows import build
    from longtail.workflows.run_files import load_run_config

    torch.set_num_threads(1)
    cfg = load_run_config(run_dir)
    cfg.data_root, cfg.device = str(data_root), "cpu"
    info = distributed.setup("cpu")
    data = build.build_data(cfg)
    model = build.build_model(cfg, data)
    model.load_state_dict(load_checkpoint(run_dir / "best.pt")["model"])
    logits, targets = predict(model, build.eval_loader(data.test, cfg, info), info.device)
    return 100 * score_logits(logits, targets, data.class_counts, cfg.many_threshold, cfg.few_threshold)["mean_class"]


def main() -> None:
    args = parse_args()
    if args.command == "pack":
        pack(args.batches, args.jpeg_copy, args.out)
    else:
        run(args.data, args.n_max, args.seeds, args.config, args.out, args.override)


if __name__ == "__main__":
    main()
