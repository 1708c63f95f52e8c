"""benchmarks/cifar10_jpeg_cost.py: ``pack`` reads CIFAR python batches, whole or truncated, matches each image
to its file in a JPEG copy and writes the same images twice (PNG originals, the copy's JPEG bytes); ``run`` trains
on both and prints the paired table. On generated batches in CIFAR's own pickle layout and a generated copy."""

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.runs import subprocess_env
from longtail.data.cifar_images import CIFAR10_CLASSES as CLASSES

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "cifar10_jpeg_cost.py"


def cifar_batch_bytes(labels: list[int], images: np.ndarray) -> bytes:
    """A CIFAR python batch as the dataset's files store it (a Python 2 pickle: a dict whose labels list comes
    before the pixel string, BINSTRING of 3072 bytes per image, CHW planes), cut after ``images``."""
    def key(text: str) -> bytes:
        return b"U" + bytes([len(text)]) + text.encode()
    out = bytearray(b"\x80\x02}q\x01(") + key("batch_label") + key("training batch")
    out += key("labels") + b"]q\x02(" + b"".join(b"K" + bytes([label]) for label in labels) + b"e"
    out += key("data") + b"T" + (len(labels) * 3072).to_bytes(4, "little")
    return bytes(out + images.transpose(0, 3, 1, 2).tobytes())


def smooth_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """Photo-like 32x32 images (low-frequency), which JPEG keeps near 30 dB as it does CIFAR's."""
    small = rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    return np.stack([np.asarray(Image.fromarray(s).resize((32, 32), Image.BILINEAR)) for s in small])


def jpeg_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=75)
    return buf.getvalue()


def make_sources(folder: Path, *, stored: int = 30, per_batch: int = 40, swap: bool = False) -> dict:
    """Five training batches and a test batch of ``per_batch`` labels, each file holding only its first
    ``stored`` images (a truncated copy), and a JPEG copy numbering every class's images in batch order."""
    rng = np.random.default_rng(0)
    batches, copy = folder / "batches", {}
    batches.mkdir(parents=True)
    truth = {}
    for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        seen = [0] * 10
        for name in names:
            labels = [int(x) for x in rng.permutation(np.arange(per_batch) % 10)]
            images = smooth_images(rng, per_batch)
            (batches / name).write_bytes(cifar_batch_bytes(labels, images[:stored]))
            for k, label in enumerate(labels):
                stem = f"{split}/{CLASSES[label]}/{seen[label]:04d}"
                seen[label] += 1
                copy[stem] = jpeg_bytes(images[k])
                if k < stored:
                    truth[stem] = images[k]
    if swap:  # a copy numbered in another order: two files of one class exchanged
        copy["train/bird/0000"], copy["train/bird/0001"] = copy["train/bird/0001"], copy["train/bird/0000"]
    with tarfile.open(folder / "copy.tar", "w") as tar:
        for stem, data in copy.items():
            info = tarfile.TarInfo(f"cifar10_jpeg/{stem}.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return {"truth": truth, "copy": copy}


def pack(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "pack", "--batches", str(folder / "batches"), "--jpeg-copy",
                           str(folder / "copy.tar"), "--out", str(folder / "pack")],
                          capture_output=True, text=True, timeout=120, env=subprocess_env())


def read_tar(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_pack_writes_the_stored_images_twice_under_the_copys_names(tmp_path):
    made = make_sources(tmp_path)
    proc = pack(tmp_path)
    assert proc.returncode == 0, proc.stderr
    originals, jpegs = read_tar(tmp_path / "pack" / "originals.tar"), read_tar(tmp_path / "pack" / "jpeg_copy.tar")
    # every stored image once, with the copy's file number; none of the labels past a truncated file's end
    assert sorted(originals) == sorted(f"{stem}.png" for stem in made["truth"])
    assert sorted(jpegs) == sorted(f"{stem}.jpg" for stem in made["truth"])
    for stem, image in made["truth"].items():
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(originals[f"{stem}.png"]))), image), stem  # lossless
        assert jpegs[f"{stem}.jpg"] == made["copy"][stem]  # the copy's own bytes, not a re-encoding
    stats = json.loads((tmp_path / "pack" / "pack.json").read_text())
    assert (stats["train"]["images"], stats["test"]["images"]) == (150, 30)
    assert sum(stats["train"]["per_class"]) == 150 and 25 < stats["train"]["psnr_mean"] < 60


def test_pack_refuses_a_copy_numbered_in_another_order(tmp_path):
    make_sources(tmp_path, swap=True)
    proc = pack(tmp_path)
    assert proc.returncode != 0
    assert "train/bird/0000.jpg does not match" in proc.stderr and "not numbered in batch order" in proc.stderr


@pytest.mark.slow
def test_run_trains_on_both_and_prints_the_paired_table(tmp_path):
    make_sources(tmp_path, stored=60, per_batch=60)
    assert pack(tmp_path).returncode == 0
    proc = subprocess.run([sys.executable, str(SCRIPT), "run", "--data", str(tmp_path / "pack"), "--n-max", "20",
                           "--seeds", "0", "--override", "imbalance_factor=10", "epochs=1", "warmup_epochs=0",
                           "batch_size=32", "eval_every=1"],
                          capture_output=True, text=True, timeout=600, env=subprocess_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = tmp_path / "pack" / "runs" / "seed0"
    accuracy = {}
    for source in ("originals", "jpeg_copy"):
        metrics = json.loads((runs / source / "metrics.json").read_text())
        assert metrics["finished"] and metrics["class_counts"][0] == 20
        accuracy[source] = 100 * metrics["test"]["mean_class"]
    paired, crossed = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] == ["0"]]
    assert [float(x) for x in paired[1:4]] == pytest.approx(
        [accuracy["originals"], accuracy["jpeg_copy"], accuracy["jpeg_copy"] - accuracy["originals"]], abs=0.006)
    # each model on both test sets: on its own test set, the figure its run reported
    assert crossed[1] == "originals:" and crossed[5] == "jpeg_copy:"
    assert float(crossed[2]) == pytest.approx(accuracy["originals"], abs=0.006)
    assert float(crossed[8]) == pytest.approx(accuracy["jpeg_copy"], abs=0.006)
    assert 0 <= float(crossed[4]) <= 100 and 0 <= float(crossed[6]) <= 100
